"""`SqlRollups`: the charts' questions answered from the rollup tables (`rollups.sql`).

Every method takes an analytics `Scope` (stores, local days, local hours): its ``where`` and
``bucket`` SQL apply unchanged because rollup rows carry ``store`` and ``ts`` (the hour
bucket's start) like events do, and an hour bucket never straddles a local day or hour.
"""

from __future__ import annotations

from typing import Any

from storelens.cloud.rollups import aggregate
from storelens.cloud.store import Database

DAY_S = 86_400


class SqlRollups:
    def __init__(self, db: Database) -> None:
        self.db = db

    def counts(self, scope: Any, seconds: int) -> list[dict[str, Any]]:
        """Per store and local bucket of ``seconds``: ``entrances`` and ``visits``."""
        bucket, bucket_params = scope.bucket(seconds)
        where, params = scope.where()
        return self.db.query(
            f"SELECT store, {bucket} AS b,"
            " SUM(CASE WHEN metric = 'entrances' THEN n ELSE 0 END) AS entrances,"
            " SUM(CASE WHEN metric = 'visits' THEN n ELSE 0 END) AS visits"
            f" FROM rollup_counts WHERE metric IN ('entrances', 'visits') AND {where}"
            " GROUP BY store, b",
            bucket_params + params,
        )

    def member_visits(self, scope: Any) -> list[dict[str, Any]]:
        """Per store and local day: finished ``visits``, ``member_visits``, distinct
        ``members``; ordered by day, then store."""
        bucket, bucket_params = scope.bucket(DAY_S)
        where, params = scope.where()
        visits = self.db.query(
            f"SELECT store, {bucket} AS b, SUM(n) AS visits FROM rollup_counts"
            f" WHERE metric = 'visits_ended' AND {where} GROUP BY store, b",
            bucket_params + params,
        )
        linked = {
            (r["store"], int(r["b"])): r
            for r in self.db.query(
                f"SELECT store, {bucket} AS b, SUM(visits) AS member_visits,"
                " COUNT(DISTINCT member) AS members"
                f" FROM rollup_members WHERE {where} GROUP BY store, b",
                bucket_params + params,
            )
        }
        out = []
        for r in visits:
            key = (r["store"], int(r["b"]))
            m = linked.get(key, {})
            out.append({"store": key[0], "b": key[1], "visits": int(r["visits"]),
                        "member_visits": int(m.get("member_visits") or 0),
                        "members": int(m.get("members") or 0)})  # fmt: skip
        out.sort(key=lambda r: (r["b"], r["store"]))
        return out

    def _maps(self, kind: str, scope: Any, store: str | None = None) -> list[Any]:
        from storelens.cloud.rollups.sql import map_values

        where, params = scope.where()
        if store is not None:
            where += " AND store = ?"
            params.append(store)
        if kind not in aggregate.SHAPE_KINDS:
            return map_values(self.db, kind, where, params)
        # Visit shapes of hours not settled yet come from the raw events (`settle`).
        dirty = {
            (r["store"], int(r["ts"]))
            for r in self.db.query(f"SELECT store, ts FROM rollup_dirty WHERE {where}", params)
        }
        values = [v for key, v in map_values(self.db, kind, where, params, keyed=True)
                  if key not in dirty]  # fmt: skip
        if dirty:
            from storelens.cloud.rollups.settle import hour_shapes

            for s, hour in sorted(dirty):
                value = hour_shapes(self.db, s, hour).get(kind)
                if value is not None:
                    values.append(value)
        return values

    def dwell(self, scope: Any) -> dict[str, dict[int, list[float]]]:
        """zone -> whole second of dwell -> [visits, total seconds, min, max]."""
        merged: dict[str, dict[int, list[float]]] = {}
        for value in self._maps("dwell", scope):
            aggregate.merge_dwell(merged, value)
        return merged

    def flows(self, scope: Any) -> dict[str, int]:
        """``from<FLOW_SEP>to`` -> moves."""
        merged: dict[str, int] = {}
        for value in self._maps("flows", scope):
            aggregate.merge_counter(merged, value)
        return merged

    def paths(self, scope: Any) -> dict[str, int]:
        """Zone sequence (joined by ``PATH_SEP``) -> visits."""
        merged: dict[str, int] = {}
        for value in self._maps("paths", scope):
            aggregate.merge_counter(merged, value)
        return merged

    def heat(self, scope: Any, store: str) -> aggregate.Heat:
        """[samples, [[cx, cy, seconds], ...]] of one store's floor (0.5 m cells)."""
        cells: dict[tuple[int, int], float] = {}
        samples = 0
        for n, items in self._maps("heat", scope, store):
            samples += n
            for x, y, s in items:
                cells[(x, y)] = cells.get((x, y), 0.0) + s
        return [samples, [[x, y, s] for (x, y), s in sorted(cells.items())]]
