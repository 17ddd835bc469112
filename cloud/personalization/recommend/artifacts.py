"""Built recommendation models, stored in the database: a builder process (`storelens cloud
recommend build`) writes them, the API only loads the newest.

A model is a pickle of `RecommendationModel` (numpy, scipy and scikit-learn objects), zlib
compressed. Only storelens's own builder writes this table, so loading it trusts the database
as much as every other read does. The newest `KEEP` models stay (a rollback is one DELETE).
"""

from __future__ import annotations

import json
import pickle
import time
import zlib
from dataclasses import dataclass

from storelens.cloud.db import Database, migrations
from storelens.cloud.personalization.recommend.model import RecommendationModel

MIGRATIONS = migrations(
    "recommend_models",
    [
        """
        CREATE TABLE recommend_models (
            id {ID},
            built_at {REAL} NOT NULL,
            stored_at {REAL} NOT NULL,
            info TEXT NOT NULL,
            data {BLOB} NOT NULL
        )
        """
    ],
)

KEEP = 3


@dataclass(frozen=True)
class StoredModel:
    id: int
    model: RecommendationModel


def save(db: Database, model: RecommendationModel, *, keep: int = KEEP) -> int:
    """Store ``model`` as the newest; returns its ID. Older ones beyond ``keep`` go."""
    data = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 3)
    info = json.dumps(
        {
            "items": len(model.catalog.skus),
            "members": len(model.member_index),
            "learned": model.personal is not None,
            "bytes": len(data),
        }
    )
    with db.transaction():
        # RETURNING, not max(id) afterwards: another builder's row may have committed since.
        newest = int(
            db.scalar(
                "INSERT INTO recommend_models (built_at, stored_at, info, data)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (model.built_at, time.time(), info, data),
            )
        )
        db.execute(
            "DELETE FROM recommend_models WHERE id < (SELECT min(id) FROM"
            " (SELECT id FROM recommend_models ORDER BY id DESC LIMIT ?) AS newest)",
            (keep,),
        )
    return newest


def latest_id(db: Database) -> int | None:
    """The newest stored model's ID (one cheap query: the API polls it)."""
    value = db.scalar("SELECT max(id) FROM recommend_models")
    return int(value) if value is not None else None


def load_latest(db: Database) -> StoredModel | None:
    """The newest stored model, or None when no builder has stored one yet."""
    row = db.query_one("SELECT id, data FROM recommend_models ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    model = pickle.loads(zlib.decompress(bytes(row["data"])))  # noqa: S301 - written by our builder
    return StoredModel(int(row["id"]), model)
