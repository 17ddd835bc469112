"""Hybrid recommendations: co-purchase similarity plus category affinity from in-store dwell
and purchases, filtered by stock and history, with best-seller fallbacks and human reasons."""

from storelens.cloud.personalization.recommend.model import (
    RecommendationModel,
    RecommendSettings,
    build_model,
)
from storelens.cloud.personalization.recommend.ranking import (
    Recommendation,
    ServingContext,
    recommend,
)
from storelens.cloud.personalization.recommend.service import RecommendationService

__all__ = [
    "Recommendation",
    "RecommendationModel",
    "RecommendationService",
    "RecommendSettings",
    "ServingContext",
    "build_model",
    "recommend",
]
