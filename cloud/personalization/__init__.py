"""Personalization: recommendations, offers and coupons, engagement scoring and its plans,
propensity, checkout with coupons, interactions other systems report, and hand-off webhooks."""
