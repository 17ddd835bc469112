"""Token-bucket rate limits per key (client address, user, member), as a FastAPI dependency.

Guards brute-forcing logins and coupon codes. Written here rather than taken from a library
because it is small and in-process: slowapi/limits want decorators on the route and a storage
backend. Limits are per API process; with N replicas behind a balancer a key gets at most N
times the budget (docs/scaling.md), still enough to make guessing useless.
"""

from __future__ import annotations

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
    # Behind a proxy the API must run with uvicorn --forwarded-allow-ips so this is the
    # real client, not the balancer (docs/scaling.md).
    return request.client.host if request.client else "unknown"


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
        wait = self.bucket(request.app).acquire(self.key(request))
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail=f"too many {self.name} attempts; retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )


# The limits the API wires in. Module-level so every router shares one bucket per limit.
LOGIN_LIMIT = RateLimit("login", capacity=10, per_minute=10)
COUPON_REDEEM_LIMIT = RateLimit("coupon redemption", capacity=20, per_minute=30)
