"""Realistic in-store traffic for seeded stores: visits, zone dwell, door crossings, floor
paths, occupancy, card swipes and device status, as contract events.

The core seed creates stores, members and sales but no camera data; analytics and in-store
recommendations need some. Events are built with the wire-contract models and written with the
same row mapping and insert path as MQTT ingest (`events.event_row` + `events.store_events`),
so what the dashboards read is exactly what a real device would have produced. Deterministic
for a given seed. Members who opted out of tracking are never linked, like on a real device.

The store's POS sales of the seeded days come from its visits: each sale is the till stay that
ends a visit (after its zones and any try-on), the member's visit for a member's sale (their
card swiped at the till), an anonymous one otherwise; the other visitors browse and leave
without paying. The sales are then attached to their visits the way the cloud does it
(`storelens.cloud.commerce.visit_sales`), so try-on to purchase and entry to checkout have numbers.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storelens.cloud.db import Database
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import events as event_store
from storelens.contract.events import (
    EVENT_TYPES,
    CameraStatus,
    DeviceStatus,
    ReaderStatus,
)

CAMERA = "cam1"
READER = "till1"
ENTRANCE_LINE = "entrance"
FLOOR_W_M, FLOOR_H_M = 24.0, 14.0
DOOR_XY = (1.0, FLOOR_H_M / 2)
WALK_M_PER_S = 0.9
# Relative arrivals per opening hour: late-morning and after-work peaks.
HOURLY_SHAPE = {9: 0.5, 10: 0.8, 11: 1.0, 12: 1.5, 13: 1.4, 14: 0.9, 15: 0.8, 16: 1.0,
                17: 1.6, 18: 1.7, 19: 1.2, 20: 0.6}  # fmt: skip
DEFAULT_ZONES = ("entrance_area", "shoes", "handbags", "menswear", "womenswear", "accessories")
# Every seeded store has fitting rooms at the back and tills by the door (contract 1.2 kinds).
FITTING_ROOMS, TILLS = "fitting_rooms", "tills"
FITTING_XY = (FLOOR_W_M - 2.0, 3.0)
TILLS_XY = (3.0, FLOOR_H_M - 2.0)


@dataclass(frozen=True)
class TrafficProfile:
    """``visitors_per_day`` None: derived per store from its recent POS sales and
    ``conversion``, so seeded conversion rates look like a real store's."""

    visitors_per_day: int | None = None
    conversion: float = 0.3
    member_share: float = 0.25
    weekend_factor: float = 1.35
    occupancy_every_s: int = 900


def _zone_centres(zones: list[str]) -> dict[str, tuple[float, float]]:
    """Zones laid out in two aisles along the floor, door on the left wall."""
    top = zones[::2]
    bottom = zones[1::2]
    centres = {}
    for row, y in ((top, 3.5), (bottom, FLOOR_H_M - 3.5)):
        for i, zone in enumerate(row):
            centres[zone] = (5.0 + i * (FLOOR_W_M - 7.0) / max(len(row), 1), y)
    return centres


def _event_id(rng: random.Random, ts: float) -> uuid.UUID:
    # UUIDv7 of the event's own time (not now), so seeded history stays time-ordered.
    value = (int(ts * 1000) & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    return uuid.UUID(int=value)


@dataclass
class _Visit:
    start: float
    end: float
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class Purchase:
    """A seeded POS sale the store's traffic must contain the visit of."""

    sale_id: str
    ts: float
    member: tuple[str, str] | None  # (token, key_id); None: anonymous (or opted out)


def _visit(
    rng: random.Random,
    start: float,
    zones: list[str],
    weights: list[float],
    centres: dict[str, tuple[float, float]],
    member: tuple[str, str] | None,
    pays_at: float | None = None,
) -> _Visit:
    """One visit from the door through its zones (and fitting rooms) and back. With
    ``pays_at`` it ends at the tills, paying at that time (the whole visit is placed so); a
    visit without it leaves without paying."""
    visit_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    person = {"camera": CAMERA, "visit_id": str(visit_id)}
    linked = {"member": member[0], "key_id": member[1]} if member else {}
    out: list[dict[str, Any]] = [
        {
            "type": "line_crossing",
            "ts": start,
            **person,
            "line": ENTRANCE_LINE,
            "direction": "in",
            "entrance": True,
        },
        {"type": "visit_started", "ts": start + 1.0, **person},
    ]
    # Members shop more: they come for something.
    n_zones = min(len(zones), max(1, int(rng.expovariate(1 / (2.6 if member else 1.8)))))
    chosen: list[str] = []
    while len(chosen) < n_zones:
        z = rng.choices(zones, weights)[0]
        if not chosen or chosen[-1] != z:
            chosen.append(z)
    t, (x, y) = start + 1.0, DOOR_XY
    path = [[round(x, 2), round(y, 2), 0.0]]
    for zone in chosen:
        cx, cy = centres[zone]
        t += math.dist((x, y), (cx, cy)) / WALK_M_PER_S
        entered = t
        dwell = min(1500.0, rng.lognormvariate(math.log(45 if member else 30), 0.9))
        # Points spread over the stay, so each carries an equal share of the dwell time.
        n_points = min(6, int(dwell // 15) + 1)
        for k in range(n_points):
            px, py = cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.2, 1.2)
            at = entered - start + dwell * k / n_points
            path.append([round(px, 2), round(py, 2), round(at, 1)])
        t = entered + dwell
        x, y = cx, cy
        out.append({"type": "zone_visit", "ts": t, **person, **linked, "zone": zone,
                    "entered_at": entered, "exited_at": t, "dwell_s": round(dwell, 1)})  # fmt: skip
    # Try-ons and checkout from their own random stream, so the rest of the history (and
    # what other tests expect of it) does not depend on them.
    extra = random.Random(visit_id.int)
    stays: list[tuple[str, tuple[float, float], float, dict[str, Any]]] = []
    if extra.random() < (0.45 if member else 0.3):
        tryon = min(1200.0, extra.lognormvariate(math.log(180), 0.6))
        stays.append((FITTING_ROOMS, FITTING_XY, tryon, {"kind": "fitting_room"}))
    paid_after = None  # seconds after the visit's start the sale is rung up
    if pays_at is not None:
        queue = round(min(900.0, extra.lognormvariate(math.log(50), 0.8)), 1)
        service = round(min(600.0, extra.lognormvariate(math.log(70), 0.4)), 1)
        stays.append((TILLS, TILLS_XY, queue + service,
                      {"kind": "checkout", "queue_s": queue, "service_s": service}))  # fmt: skip
    for zone, (cx, cy), dwell, fields in stays:
        t += math.dist((x, y), (cx, cy)) / WALK_M_PER_S
        entered = t
        if "service_s" in fields:  # paid at the end of the service, card swiped meanwhile
            paid_after = entered + fields["queue_s"] + 0.8 * fields["service_s"] - start
        path.append([round(cx, 2), round(cy, 2), round(entered - start, 1)])
        t = entered + round(dwell, 1)
        x, y = cx, cy
        chosen.append(zone)
        out.append({"type": "zone_visit", "ts": t, **person, **linked, "zone": zone,
                    "entered_at": entered, "exited_at": t, "dwell_s": round(dwell, 1),
                    **fields})  # fmt: skip
    if member and paid_after is not None:
        swipe_at = start + paid_after - extra.uniform(5, 20)
        out.append({"type": "card_swipe", "ts": swipe_at, "reader": READER, "member": member[0],
                    "key_id": member[1], "camera": CAMERA, "visit_id": str(visit_id)})  # fmt: skip
    elif member:  # buys nothing, but shows their card at the till's reader (points, offers)
        swipe_at = t + rng.uniform(20, 90)
        out.append({"type": "card_swipe", "ts": swipe_at, "reader": READER, "member": member[0],
                    "key_id": member[1], "camera": CAMERA, "visit_id": str(visit_id)})  # fmt: skip
        t = swipe_at
    t += math.dist((x, y), DOOR_XY) / WALK_M_PER_S
    path.append([DOOR_XY[0], DOOR_XY[1], round(t - start, 1)])
    out.append(
        {
            "type": "line_crossing",
            "ts": t,
            **person,
            "line": ENTRANCE_LINE,
            "direction": "out",
            "entrance": True,
        }
    )
    out.append({"type": "visit_ended", "ts": t + 0.5, **person, **linked, "started_at": start + 1.0,
                "duration_s": round(t - start, 1), "path": path, "zones": chosen})  # fmt: skip
    if pays_at is None or paid_after is None:
        return _Visit(start, t, out)
    shift = pays_at - (start + paid_after)  # the visit, placed so it pays at ``pays_at``
    for e in out:
        for key in ("ts", "entered_at", "exited_at", "started_at"):
            if key in e:
                e[key] += shift
    return _Visit(start + shift, t + shift, out)


STAFF_SHIFTS = ((8.5, 14.0), (13.5, 21.0))  # local hours: two clerks a day, badged at the door


def _staff_shifts(day: date, tz: ZoneInfo, until: float) -> list[dict[str, Any]]:
    """Staff visits (contract 1.2 staff flag), from their own random stream: they stay out of
    every shopper chart and show in the staff chart."""
    rng = random.Random(f"staff:{day.isoformat()}")
    out: list[dict[str, Any]] = []
    for begin, end in STAFF_SHIFTS:
        start = datetime.combine(day, time(), tz).timestamp() + begin * 3600 + rng.uniform(0, 600)
        stop = datetime.combine(day, time(), tz).timestamp() + end * 3600 + rng.uniform(0, 600)
        if stop >= until:
            continue
        person = {"camera": CAMERA, "visit_id": str(uuid.UUID(int=rng.getrandbits(128), version=4))}
        out.append({"type": "visit_started", "ts": start, **person})
        out.append({"type": "visit_ended", "ts": stop, **person, "started_at": start,
                    "duration_s": round(stop - start, 1), "path": [], "zones": [],
                    "staff": True})  # fmt: skip
    return out


def _day_events(rng: random.Random, day: date, tz: ZoneInfo, zones: list[str], weights: list[float],
                centres: dict[str, tuple[float, float]], members: list[tuple[str, str]],
                profile: TrafficProfile, until: float,
                purchases: Sequence[Purchase] = ()) -> list[dict[str, Any]]:  # fmt: skip
    factor = profile.weekend_factor if day.weekday() >= 5 else 1.0
    scale = (
        (profile.visitors_per_day or 140)
        * factor
        * rng.uniform(0.85, 1.15)
        / sum(HOURLY_SHAPE.values())
    )
    visits: list[_Visit] = []
    for hour, shape in HOURLY_SHAPE.items():
        opening = datetime.combine(day, time(hour), tz).timestamp()
        for _ in range(int(rng.gauss(scale * shape, math.sqrt(scale * shape)) + 0.5)):
            start = opening + rng.uniform(0, 3600)
            if start >= until:
                continue
            member = (
                rng.choice(members) if members and rng.random() < profile.member_share else None
            )
            visit = _visit(rng, start, zones, weights, centres, member)
            if visit.end < until:
                visits.append(visit)
    for sale in purchases:
        # Its own random stream: the browsing visits above stay what they were.
        visit = _visit(random.Random(f"sale:{sale.sale_id}"), sale.ts - 600.0, zones, weights,
                       centres, sale.member, pays_at=sale.ts)  # fmt: skip
        if visit.end < until:
            visits.append(visit)
    out = [e for v in visits for e in v.events]
    out += _staff_shifts(day, tz, until)
    first = datetime.combine(day, time(min(HOURLY_SHAPE)), tz).timestamp()
    last = min(until, datetime.combine(day, time(max(HOURLY_SHAPE) + 1), tz).timestamp())
    for at in range(int(first), int(last), profile.occupancy_every_s):
        inside = [v for v in visits if v.start <= at < v.end]
        if inside:
            per_zone: dict[str, int] = {}
            queue = 0
            for v in inside:
                current = [
                    e
                    for e in v.events
                    if e["type"] == "zone_visit" and e["entered_at"] <= at < e["ts"]
                ]
                for e in current:
                    per_zone[e["zone"]] = per_zone.get(e["zone"], 0) + 1
                    queue += e.get("queue_s") is not None and at < e["entered_at"] + e["queue_s"]
            snapshot = {"ts": float(at), "camera": CAMERA, "total": len(inside), "zones": per_zone,
                        "queues": {TILLS: queue}}  # fmt: skip
            out.append({"type": "occupancy", **snapshot})
    return out


def default_device(store: str) -> str:
    return f"{store}-edge1"


def generate(store: dict[str, Any], members: list[tuple[str, str]], start: date, days: int,
             seed: int = 7, profile: TrafficProfile = TrafficProfile(),
             until: float | None = None, device: str | None = None,
             purchases: Sequence[Purchase] = ()) -> Iterator[Any]:  # fmt: skip
    """Contract events of one store (one device, one camera, one till reader) over ``days``
    local days from ``start``, none later than ``until`` (default now): browsing visitors
    (``profile``) and the visit of each of ``purchases``, ending at the till as it pays."""
    rng = random.Random(f"{seed}:{store['id']}")
    tz = ZoneInfo(store.get("timezone") or "UTC")
    zones = sorted(store.get("zones") or DEFAULT_ZONES)
    weights = [rng.uniform(0.4, 1.6) for _ in zones]
    centres = _zone_centres(zones)
    device = device or default_device(store["id"])
    until = datetime.now(UTC).timestamp() if until is None else until
    by_day: dict[date, list[Purchase]] = {}
    for sale in purchases:
        by_day.setdefault(datetime.fromtimestamp(sale.ts, tz).date(), []).append(sale)
    seq = 0
    for d in range(days):
        day = start + timedelta(days=d)
        day_events = _day_events(rng, day, tz, zones, weights, centres, members, profile, until,
                                 by_day.get(day, []))  # fmt: skip
        day_events.sort(key=lambda e: e["ts"])
        for e in day_events:
            for key in ("ts", "entered_at", "exited_at", "started_at"):
                if key in e:
                    e[key] = datetime.fromtimestamp(e[key], UTC)
            yield EVENT_TYPES[e["type"]].model_validate(
                {**e, "device": device, "seq": seq, "id": _event_id(rng, e["ts"].timestamp())}
            )
            seq += 1


def seed_instore(db: Database, *, days: int = 28, end: date | None = None, seed: int = 7,
                 profile: TrafficProfile = TrafficProfile(), until: float | None = None,
                 batch: int = 5000, devices: Mapping[str, str] | None = None,
                 settle: bool = True) -> dict[str, int]:  # fmt: skip
    """Generate and store traffic for every store in the database; returns events per store.
    With ``settle``, the rollups of the seeded hours are computed at once (as ingest workers
    would settle them within minutes).

    Each store's traffic comes from one device: ``devices[store]`` when given (a store whose
    real device is already registered, so its history and its live data share one device and
    the health table shows no phantom box), else ``<store>-edge1``. Registers that device if
    needed and records a recent status (one store shows a camera down, so the device health
    table has something to say).
    """
    from storelens.cloud.commerce import members as member_registry
    from storelens.cloud.commerce import stores as store_registry

    now = datetime.now(UTC).timestamp()
    until = now if until is None else until
    end = end or datetime.fromtimestamp(until, UTC).date()
    start = end - timedelta(days=days - 1)
    opted_out = member_registry.opted_out_tokens(db)
    trackable = [
        (r["token"], r["key_id"])
        # By token, not id: enroll draws ids at random, tokens follow the card and key, so the
        # same members get the same visits on every seeding (and the sales the same links).
        for r in db.query("SELECT token, key_id FROM members ORDER BY token")
        if r["token"] not in opted_out
    ]
    counts: dict[str, int] = {}
    window_start = datetime.combine(start, time(), UTC).timestamp()
    devices = devices or {}
    tokens = {
        r["id"]: (r["token"], r["key_id"])
        for r in db.query("SELECT id, token, key_id FROM members")
        if r["token"] not in opted_out
    }
    for i, store in enumerate(store_registry.list_stores(db, limit=10_000)):
        device = devices.get(store["id"]) or default_device(store["id"])
        purchases = [
            Purchase(r["id"], float(r["ts"]), tokens.get(r["member_id"]))
            for r in db.query(
                "SELECT id, ts, member_id FROM pos_sales WHERE store = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts, id",
                (store["id"], window_start, until),
            )
        ]
        if profile.visitors_per_day is None:
            # Browsers beside the buyers, so buyers / visitors is the profile's conversion.
            sold = len(purchases)
            per_day = sold / days * (1 / profile.conversion - 1) if sold else 140
            store_profile = replace(profile, visitors_per_day=int(min(2000, max(20, per_day))))
        else:
            store_profile = profile
        if not db.scalar(
            "SELECT COUNT(*) FROM devices WHERE store = ? AND device = ? AND registered = 1",
            (store["id"], device),
        ):
            device_registry.register_device(db, store["id"], device, "seeded camera box")
        rows: list[dict[str, Any]] = []
        total = 0
        for event in generate(store, trackable, start, days, seed, store_profile, until, device,
                              purchases):  # fmt: skip
            rows.append(
                event_store.event_row(
                    store["id"], event, event.ts.timestamp(), getattr(event, "member", None)
                )
            )
            if len(rows) >= batch:
                total += event_store.store_events(db, rows)
                rows = []
        total += event_store.store_events(db, rows)
        counts[store["id"]] = total
        status = DeviceStatus(
            device=device,
            seq=0,
            ts=datetime.fromtimestamp(now - 20, UTC),  # health is about now
            uptime_s=days * 86400.0,
            cameras=[
                CameraStatus(
                    camera=CAMERA, online=i != 1, fps=9.6 if i != 1 else 0.0, inference_ms=7.9
                )
            ],
            readers=[ReaderStatus(reader=READER, online=True)],
            outbox_depth=0 if i != 1 else 412,
            lost_events=0,
        )
        # As if heard when it was sent: health counts from the receipt time.
        device_registry.apply_status(db, store["id"], [status], status.ts.timestamp())
    # Attach the sales to their visits as the service would (it links only recent sales).
    from storelens.cloud.commerce import visit_sales

    visit_sales.link_pending(db, since=window_start, now=max(now, until + visit_sales.SETTLE_S))
    if settle:
        from storelens.cloud.analytics.rollups.settle import settle_all

        settle_all(db)
    return counts
