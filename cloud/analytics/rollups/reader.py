"""`SqlRollups`: the charts' questions answered from the rollup tables (`rollups.sql`).

Every method takes an analytics `Scope` (stores, local days, local hours): its ``where`` and
``bucket`` SQL apply unchanged because rollup rows carry ``store`` and ``ts`` (the hour
bucket's start) like events do, and an hour bucket never straddles a local day or hour.
Hours marked dirty (events arrived since they were settled) are left out of the tables'
answer and computed from their raw events instead, with the same aggregation code.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, time
from typing import Any

from storelens.cloud.analytics.rollups import aggregate, chain
from storelens.cloud.db import Database

DAY_S = 86_400
HOUR_S = aggregate.HOUR_S
# A bucket is settled when no dirty UTC hour overlaps it: the mark at its start (whole-hour
# phase), or the two it straddles (:30 / :45 phases), all strictly within an hour of it.
_SETTLED = (
    " AND NOT EXISTS (SELECT 1 FROM rollup_dirty d WHERE d.store = {t}.store"
    " AND d.ts > {t}.ts - 3600 AND d.ts < {t}.ts + 3600)"
)


class SqlRollups:
    """One chart's reads (a new instance per chart: dirty hours are looked up once)."""

    def __init__(self, db: Database, *, compare: bool = False) -> None:
        self.db = db
        # Groups and dirty marks every plan of this chart reads: read once (`chain.Reads`);
        # ``compare``: the chart reads the previous period too (its rows read with the
        # period's).
        self.reads = chain.Reads(db, compare)
        self._plans: dict[tuple[Any, ...], chain.Plan | None] = {}

    # -- dirty hours ------------------------------------------------------------------
    def _dirty(self, scope: Any) -> aggregate.Deltas:
        """What the dirty hours in ``scope`` add up to, from their raw events."""
        cache = self.__dict__.setdefault("_dirty_cache", {})
        key = self._dirty_key(scope)
        if key not in cache:
            from storelens.cloud.analytics.rollups.settle import deltas_for, store_phases

            # Marks are UTC hours and may straddle the scope's edge by one: widen, then keep
            # the buckets inside the scope.
            lo = int(datetime.combine(scope.start, time(), UTC).timestamp()) - DAY_S
            hi = int(datetime.combine(scope.end, time(), UTC).timestamp()) + 2 * DAY_S
            wanted = set(scope.stores)
            marks = {(s, ts) for s, ts in self.reads.dirty(lo, hi)
                     if not wanted or s in wanted}  # fmt: skip
            if not marks:  # all settled (the usual case): no store or fitting-room lookups
                cache[key] = aggregate.Deltas()
                return cache[key]
            buckets = {(s, b) for s, b in aggregate.buckets_of(marks, store_phases(self.db))
                       if scope.contains(s, b)}  # fmt: skip
            cache[key] = deltas_for(self.db, buckets)
        return cache[key]

    def _plan(self, scope: Any, kinds: tuple[str, ...]) -> chain.Plan | None:
        """`chain.plan`, once per scope and kinds for this chart (counts and totals of one
        scope read the same day rows)."""
        key = (scope.start, scope.end, scope.stores, scope.hour_from, scope.hour_to,
               scope.raw, tuple(sorted(scope.offsets.items())), kinds)  # fmt: skip
        if key not in self._plans:
            self._plans[key] = chain.plan(self.db, scope, kinds, self.reads)
        return self._plans[key]

    def _rest_counts(self, plan: chain.Plan, seconds: int) -> list[dict[str, Any]]:
        """`counts` of the plan's store-days not read from the day rows, in one query."""
        joined = plan.joined_rest()
        if joined is None:
            return []
        scope, keep = joined
        return [r for r in self.counts(scope, seconds)
                if (r["store"], r["b"] // DAY_S * DAY_S) in keep]  # fmt: skip

    @staticmethod
    def _dirty_key(scope: Any) -> tuple[Any, ...]:
        return (scope.start, scope.end, scope.stores, scope.hour_from, scope.hour_to)

    def _rest(self, plan: chain.Plan) -> list[Any]:
        """The plan's per-store sub-scopes; when the plan saw no dirty hour near the scope,
        they are known to have none (no dirty-hours query per sub-scope)."""
        if plan.clean:
            cache = self.__dict__.setdefault("_dirty_cache", {})
            for sub in plan.rest:
                cache.setdefault(self._dirty_key(sub), aggregate.Deltas())
        return plan.rest

    @staticmethod
    def _local(scope: Any, store: str, hour: int, seconds: int) -> int:
        """The local bucket of ``seconds`` an hour falls in (as `Scope.bucket` in SQL)."""
        local = hour + int(scope.offsets.get(store, 0) or 0)
        return local // seconds * seconds

    # -- counts -----------------------------------------------------------------------
    def counts(self, scope: Any, seconds: int) -> list[dict[str, Any]]:
        """Per store and local bucket of ``seconds``: ``entrances`` and ``visits``."""
        plan = self._plan(scope, ("counts",)) if seconds == DAY_S else None
        if plan is not None:  # per day, chain-wide: the stores' day counts in the day rows
            out = [{"store": store, "b": value["d"], "entrances": e, "visits": v}
                   for value in plan.values.get("counts", [])
                   for store, (e, v) in value["s"].items() if e or v]  # fmt: skip
            return out + self._rest_counts(plan, seconds)
        bucket, bucket_params = scope.bucket(seconds)
        where, params = scope.where()
        rows = self.db.query(
            f"SELECT store, {bucket} AS b,"
            " SUM(CASE WHEN metric = 'entrances' THEN n ELSE 0 END) AS entrances,"
            " SUM(CASE WHEN metric = 'visits' THEN n ELSE 0 END) AS visits"
            f" FROM rollup_counts WHERE metric IN ('entrances', 'visits') AND {where}"
            + _SETTLED.format(t="rollup_counts")
            + " GROUP BY store, b",
            bucket_params + params,
        )
        out = {(r["store"], int(r["b"])): {"store": r["store"], "b": int(r["b"]),
               "entrances": int(r["entrances"]), "visits": int(r["visits"])}
               for r in rows}  # fmt: skip
        for (store, hour, metric), (n, _) in self._dirty(scope).counts.items():
            if metric not in ("entrances", "visits"):
                continue
            b = self._local(scope, store, hour, seconds)
            row = out.setdefault((store, b), {"store": store, "b": b, "entrances": 0,
                                              "visits": 0})  # fmt: skip
            row[metric] += int(n)
        return list(out.values())

    def ended_visits(self, scope: Any) -> dict[str, int]:
        """Finished visits per store over the scope (stores with none left out)."""
        if self._store_plan("built", scope) is not None:  # whole days: the store-day rows
            out: dict[str, int] = defaultdict(int)
            for (store, _), n in self.ended_by_day(scope).items():
                out[store] += n
            return dict(out)
        where, params = scope.where()
        out = defaultdict(int)
        for r in self.db.query(
            "SELECT store, SUM(n) AS n FROM rollup_counts"
            f" WHERE metric = 'visits_ended' AND {where}"
            + _SETTLED.format(t="rollup_counts")
            + " GROUP BY store",
            params,
        ):
            out[r["store"]] += int(r["n"])
        for (store, _, metric), (n, _) in self._dirty(scope).counts.items():
            if metric == "visits_ended":
                out[store] += int(n)
        return {s: n for s, n in out.items() if n}

    def ended_by_day(self, scope: Any) -> dict[tuple[str, int], int]:
        """(store, local day) -> finished visits (days with none left out)."""
        found = self._store_plan("built", scope)
        if found is None:
            return self._ended_by_day(scope)
        out = {(s, d): v[0] for s, d, v in found.values if v[0]}
        if found.rest is not None:
            rest = self._ended_by_day(found.rest)
            out.update({k: n for k, n in rest.items() if k in found.missing})
        return out

    def _ended_by_day(self, scope: Any) -> dict[tuple[str, int], int]:
        bucket, bucket_params = scope.bucket(DAY_S)
        where, params = scope.where()
        out: dict[tuple[str, int], int] = defaultdict(int)
        for r in self.db.query(
            f"SELECT store, {bucket} AS b, SUM(n) AS visits FROM rollup_counts"
            f" WHERE metric = 'visits_ended' AND {where}"
            + _SETTLED.format(t="rollup_counts")
            + " GROUP BY store, b",
            bucket_params + params,
        ):
            out[(r["store"], int(r["b"]))] += int(r["visits"])
        for (store, hour, metric), (n, _) in self._dirty(scope).counts.items():
            if metric == "visits_ended":
                out[(store, self._local(scope, store, hour, DAY_S))] += int(n)
        return {k: n for k, n in out.items() if n}

    def member_visits(self, scope: Any) -> list[dict[str, Any]]:
        """Per store and local day: finished ``visits``, ``member_visits``, distinct
        ``members``; ordered by day, then store."""
        found = self._store_plan("built", scope)
        if found is None:
            return self._member_visits(scope)
        out = [{"store": s, "b": d, "visits": v[0], "member_visits": v[1], "members": v[2]}
               for s, d, v in found.values if v[0]]  # fmt: skip
        if found.rest is not None:
            out += [r for r in self._member_visits(found.rest)
                    if (r["store"], r["b"]) in found.missing]  # fmt: skip
        out.sort(key=lambda r: (r["b"], r["store"]))
        return out

    def _member_visits(self, scope: Any) -> list[dict[str, Any]]:
        visits = self._ended_by_day(scope)
        dirty = self._dirty(scope).members
        touched = {(store, self._local(scope, store, hour, DAY_S)) for store, hour, _ in dirty}
        bucket, bucket_params = scope.bucket(DAY_S)
        where, params = scope.where()
        # Distinct members do not add up across hours, but do within a (store, day) of
        # settled hours: SQL counts them there (the chart's cost was one row per member).
        summed: dict[tuple[str, int], tuple[int, int]] = {}
        for r in self.db.query(
            f"SELECT store, {bucket} AS b, SUM(visits) AS visits, COUNT(DISTINCT member) AS n"
            f" FROM rollup_members WHERE {where}"
            + _SETTLED.format(t="rollup_members")
            + " GROUP BY store, b",
            bucket_params + params,
        ):
            summed[(r["store"], int(r["b"]))] = (int(r["visits"]), int(r["n"]))
        if touched:
            # Days with dirty hours: their members one by one, settled and dirty merged.
            sub = replace(scope, stores=tuple(sorted({s for s, _ in touched})))
            where, params = sub.where()
            linked: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
            for r in self.db.query(
                f"SELECT store, {bucket} AS b, member, SUM(visits) AS visits"
                f" FROM rollup_members WHERE {where}"
                + _SETTLED.format(t="rollup_members")
                + " GROUP BY store, b, member",
                bucket_params + params,
            ):
                if (r["store"], int(r["b"])) in touched:
                    per = linked[(r["store"], int(r["b"]))]
                    per[r["member"]] = per.get(r["member"], 0) + int(r["visits"])
            for (store, hour, member), n in dirty.items():
                per = linked[(store, self._local(scope, store, hour, DAY_S))]
                per[member] = per.get(member, 0) + n
            for key in touched:
                per = linked.get(key, {})
                summed[key] = (sum(per.values()), len(per))
        out = [
            {"store": store, "b": b, "visits": n,
             "member_visits": summed.get((store, b), (0, 0))[0],
             "members": summed.get((store, b), (0, 0))[1]}
            for (store, b), n in visits.items()
        ]  # fmt: skip
        out.sort(key=lambda r: (r["b"], r["store"]))
        return out

    # -- maps -------------------------------------------------------------------------
    def _maps(self, kind: str, scope: Any, store: str | None = None) -> list[Any]:
        from storelens.cloud.analytics.rollups.sql import map_values

        where, params = scope.where()
        if store is not None:
            where += " AND store = ?"
            params.append(store)
        values = [v for _, v in map_values(self.db, kind, where + _SETTLED.format(
            t="rollup_maps"), params)]  # fmt: skip
        values += self._dirty(scope).maps((kind,), store).values()
        return values

    def _keyed(self, kind: str, scope: Any) -> list[tuple[tuple[str, int], Any]]:
        """((store, hour), value) of every ``kind`` map in scope, settled or dirty."""
        from storelens.cloud.analytics.rollups.sql import map_values

        where, params = scope.where()
        out = map_values(self.db, kind, where + _SETTLED.format(t="rollup_maps"), params)
        out += [((s, h), v) for (s, h, _), v in self._dirty(scope).maps((kind,)).items()]
        return out

    def staff(self, scope: Any) -> dict[tuple[str, int], list[float]]:
        """(store, local day) -> lengths in seconds of the staff visits that ended then."""
        out: dict[tuple[str, int], list[float]] = defaultdict(list)
        for store, day, lengths in self._per_store_days("staff", scope):
            out[(store, day)] += lengths
        for (store, hour), lengths in self._per_store_hours("staff", scope):
            out[(store, self._local(scope, store, hour, DAY_S))] += lengths
        return dict(out)

    def checkout_parts(
        self, scope: Any
    ) -> tuple[list[tuple[str, int, Any]], list[tuple[str, int, dict[str, Any]]]]:
        """The checkout values in scope: packed store-days (`chain.pack_checkout`) where a
        whole-day scope has them, and (store, local hour of the day, value) of the other
        store-hours; a value: ``q`` queue snapshots [instants, sum, max] (if any), ``z``:
        zone + FLOW_SEP + device-given kind -> [stays, waits, service times]."""
        hours = [(store, self._local(scope, store, hour, HOUR_S) // HOUR_S % 24, value)
                 for (store, hour), value in self._per_store_hours("checkout", scope)]  # fmt: skip
        return self._per_store_days("checkout", scope), hours

    def _store_plan(self, kind: str, scope: Any) -> chain.StorePlan | None:
        plan = self.__dict__.setdefault("_store_plans", {})
        marks = self.__dict__.setdefault("_store_marks", {})
        if (kind, id(scope)) not in plan:  # a Scope holds a dict: keyed by identity
            if id(scope) not in marks:  # one read of the marks for every kind of the scope
                marks[id(scope)] = (scope, chain.store_marks(self.db, scope, self.reads))
            plan[(kind, id(scope))] = (scope, chain.plan_stores(self.db, scope, kind,
                                                                marks[id(scope)][1]))  # fmt: skip
        return plan[(kind, id(scope))][1]

    def _per_store_days(self, kind: str, scope: Any) -> list[tuple[str, int, Any]]:
        """(store, local day, value) of the store-day rows a whole-day scope reads."""
        found = self._store_plan(kind, scope)
        return [] if found is None else found.values

    def _per_store_hours(self, kind: str, scope: Any) -> list[tuple[tuple[str, int], Any]]:
        """((store, hour), value) of the store-hours not covered by `_per_store_days`."""
        found = self._store_plan(kind, scope)
        if found is None:
            return self._keyed(kind, scope)
        if found.rest is None:
            return []
        return [((store, hour), value) for (store, hour), value in self._keyed(kind, found.rest)
                if (store, self._local(scope, store, hour, DAY_S)) in found.missing]  # fmt: skip

    def tryons(
        self, scope: Any, named: set[tuple[str, str]]
    ) -> tuple[list[tuple[str, int, dict[str, Any]]], list[tuple[str, int, list[Any]]]]:
        """The fitting-room sessions in scope, as store-day sums (`chain.tryon_day`) where
        a whole-day scope has them, and as (store, local day, [visit ID, zone, kind, member?,
        seconds, visit end]) entries for the other store-days. ``named``: the (store, zone)
        pairs the settings call fitting rooms now; a sum that took a zone as one by name
        which is no longer named makes the whole scope read entries."""
        days = self._per_store_days("tryons", scope)
        if any((store, zone) not in named for store, _, value in days for zone in value["z"]):
            days, hours = [], self._keyed("tryons", scope)
        else:
            hours = self._per_store_hours("tryons", scope)
        entries = []
        for (store, hour), found in hours:
            day = self._local(scope, store, hour, DAY_S)
            entries += [(store, day, entry) for entry in found]
        return days, entries

    def _summed(self, kind: str, scope: Any) -> list[Any]:
        """The ``kind`` values of a scope summed over stores: a chain-wide, whole-day scope
        reads the day rows of its time zones (`chain`), and per store only the group-days
        not built or dirty; any other scope reads per store."""
        plan = chain.plan(self.db, scope, (kind,), self.reads)
        if plan is None:
            return self._maps(kind, scope)
        values = list(plan.values.get(kind, []))
        for sub in self._rest(plan):
            values += self._maps(kind, sub)
        return values

    def dwell(self, scope: Any) -> dict[str, aggregate.DwellHistogram]:
        """zone -> visits per whole second of dwell, with the total and extremes."""
        return aggregate.sum_dwell(self._summed("dwell", scope))

    def flows(self, scope: Any) -> dict[str, int]:
        """``from<FLOW_SEP>to`` -> moves."""
        merged: dict[str, int] = {}
        for value in self._summed("flows", scope):
            aggregate.merge_counter(merged, value)
        return merged

    def paths(self, scope: Any, top: int) -> tuple[list[tuple[str, int]], int]:
        """The ``top`` zone sequences (joined by ``PATH_SEP``) with the most visits, ties by
        sequence, and the visits of all sequences."""
        from storelens.cloud.analytics.rollups.sql import path_names

        return chain.top_paths(self._summed("paths", scope), top,
                               lambda ids: path_names(self.db, ids))  # fmt: skip

    def totals(self, scope: Any, seconds: int) -> dict[int, dict[str, int]]:
        """Local bucket of ``seconds`` -> entrances, visits and visitors summed over the
        scope's stores, with footfall's door rule (a store's visitors are its entrances
        when it counted any in the period, else its visits)."""
        plan = self._plan(scope, ("counts",))
        if plan is None:
            rows = self.counts(scope, seconds)
            days: list[Any] = []
        else:
            days = plan.values.get("counts", [])
            rows = self._rest_counts(plan, seconds)
        door = {r["store"] for r in rows if r["entrances"]}
        for value in days:
            door.update(value["door"])
        out: dict[int, dict[str, int]] = {}

        def add(b: int, entrances: int, visits: int) -> dict[str, int]:
            cell = out.setdefault(b, {"entrances": 0, "visits": 0, "visitors": 0})
            cell["entrances"] += entrances
            cell["visits"] += visits
            cell["visitors"] += entrances
            return cell

        for r in rows:
            cell = add(int(r["b"]), int(r["entrances"]), int(r["visits"]))
            if r["store"] not in door:
                cell["visitors"] += int(r["visits"])
        for value in days:
            day = value["d"]
            for h, e, v in value["h"]:
                add((day + h * HOUR_S) // seconds * seconds, e, v)
            for store, hours in value["doorless"].items():
                if store not in door:
                    for h, v in hours:
                        out[(day + h * HOUR_S) // seconds * seconds]["visitors"] += v
        return out

    def heat(self, scope: Any, store: str) -> aggregate.Heat:
        """[samples, [[cx, cy, seconds], ...]] of one store's floor (0.5 m cells)."""
        one = replace(scope, stores=(store,))
        if self._store_plan("heat", one) is None:  # hour filters: per store-hour
            return chain.sum_heat([], self._maps("heat", scope, store))
        days = [value for _, _, value in self._per_store_days("heat", one)]
        return chain.sum_heat(days, [value for _, value in self._per_store_hours("heat", one)])
