"""Token-bucket rate limits per key (client address, bearer token, member).

Guards brute-forcing logins (per client address), member lookups (per token) and coupon
codes (per token and per member, counted only on requests that try a coupon). Written here
rather than taken from a library because it is small and in-process: slowapi/limits want
decorators on the route and a storage backend. Limits are per API process; with N replicas
behind a balancer a key gets at most N times the budget (docs/scaling.md), still enough to
make guessing useless.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """``capacity`` requests at once, refilled at ``rate`` per second, per key.

    Memory is bounded: at most ``max_keys`` buckets, least recently used evicted first (an
    evicted key starts full again, which only ever errs towards letting a request through).
    """

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("capacity must be >= 1 and rate > 0")
        self.capacity = capacity
        self.rate = rate
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; returns 0 when allowed, else seconds until it would be."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(self.capacity, now)
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.stamp) * self.rate)
                bucket.stamp = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._buckets.clear()
            else:
                self._buckets.pop(key, None)


def client_address(request: Request) -> str:
    # The peer address. `cloud serve` believes X-Forwarded-For only from the proxies in
    # STORELENS_TRUSTED_PROXIES (docs/scaling.md), so a client cannot name its own address.
    return request.client.host if request.client else "unknown"


def bearer_key(request: Request) -> str:
    """The caller's bearer token (hashed, so buckets never hold a usable token); the client
    address for a request without one. Behind one NAT every till keeps its own budget."""
    header = request.headers.get("authorization", "")
    if not header:
        return "addr:" + client_address(request)
    return "token:" + hashlib.sha256(header.encode()).hexdigest()[:32]


class RateLimit:
    """A FastAPI dependency: ``Depends(RateLimit("login", capacity=5, per_minute=5))``.

    Raises 429 with ``Retry-After`` when the key's bucket is empty. ``key`` picks what is
    limited; by default the client address. Buckets live on the application (``app.state``),
    so each app instance, e.g. one per test, starts with full buckets.
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int,
        per_minute: float,
        key: Callable[[Request], str] = client_address,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or per_minute <= 0:
            raise ValueError("capacity must be >= 1 and per_minute > 0")
        self.name = name
        self.key = key
        self.capacity = capacity
        self.rate = per_minute / 60.0
        self.clock = clock
        self._lock = threading.Lock()

    def bucket(self, app: object) -> TokenBucket:
        state = app.state  # type: ignore[attr-defined]
        with self._lock:
            buckets = getattr(state, "rate_limits", None)
            if buckets is None:
                buckets = state.rate_limits = {}
            if self.name not in buckets:
                buckets[self.name] = TokenBucket(self.capacity, self.rate, clock=self.clock)
            return buckets[self.name]

    def __call__(self, request: Request) -> None:
        self.take(request, self.key(request))

    def take(self, request: Request, *keys: str, cost: float = 1.0) -> None:
        """Charge ``cost`` to every key (e.g. the token and the member); 429 when any is out."""
        bucket = self.bucket(request.app)
        wait = max((bucket.acquire(key, cost) for key in keys), default=0.0)
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail=f"too many {self.name} attempts; retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )


# The limits the API wires in. Module-level so every router shares one bucket per limit.
LOGIN_LIMIT = RateLimit("login", capacity=10, per_minute=10)
# A till identifies a member every minute or so; 20 at once covers a queue, not a sweep.
MEMBER_LOOKUP_LIMIT = RateLimit("member lookup", capacity=20, per_minute=20, key=bearer_key)
# Charged per coupon code tried, to the caller's token and to the member it is tried for:
# `coupon_attempt`. Plain checkouts are never charged.
COUPON_LIMIT = RateLimit("coupon", capacity=20, per_minute=30, key=bearer_key)


def coupon_attempt(request: Request, member_id: str | None, codes: int) -> None:
    """Charge ``codes`` coupon attempts to the caller's token and to the member."""
    if codes <= 0:
        return
    keys = [bearer_key(request)] + ([f"member:{member_id}"] if member_id else [])
    COUPON_LIMIT.take(request, *keys, cost=float(codes))
