"""Routing benchmark: orders routed per second over a synthetic chain, sequentially and from
several threads at once, and a check that concurrent routing never oversold a unit.

The chain is seeded deterministically (stores scattered around Paris, a catalog of SKUs with
uneven stock) so runs compare; what varies is the machine and the storage backend.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

from storelens.cloud.db import Database, connect
from storelens.cloud.fulfillment import router
from storelens.tools.scenario import seed_network


def _chain(n_stores: int, n_skus: int, seed: int) -> tuple[list[dict], dict, list[dict]]:
    rng = random.Random(seed)
    stores = [
        {"id": f"s{i:04d}", "name": f"Store {i}", "lat": 48.85 + rng.uniform(-1.5, 1.5),
         "lon": 2.35 + rng.uniform(-2.0, 2.0), "fulfillment_capacity": 10_000,
         "acceptance_deadline_min": 120, "priority": rng.randint(0, 3)}
        for i in range(n_stores)
    ]  # fmt: skip
    skus = [f"SKU-{k:05d}" for k in range(n_skus)]
    stock = {
        s["id"]: {sku: (rng.randint(0, 12), rng.randint(0, 2), f"A{k % 40}")
                  for k, sku in enumerate(skus) if rng.random() < 0.6}
        for s in stores
    }  # fmt: skip
    products = [{"sku": sku, "name": sku, "category": "bench", "price": 10.0} for sku in skus]
    return stores, stock, products


def _orders(n: int, n_skus: int, seed: int, prefix: str) -> list[router.OrderToRoute]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lines = {f"SKU-{rng.randrange(n_skus):05d}": rng.randint(1, 3)
                 for _ in range(rng.randint(1, 4))}  # fmt: skip
        dest = (48.85 + rng.uniform(-1.5, 1.5), 2.35 + rng.uniform(-2.0, 2.0))
        out.append(router.OrderToRoute(f"{prefix}{i}", lines, destination=dest))
    return out


def _oversold(db: Database) -> int:
    """Rows where promises exceed what could be promised (on hand less safety stock)."""
    return int(
        db.scalar(
            "SELECT count(*) FROM inventory WHERE reserved > 0"
            " AND on_hand - reserved - safety_stock < 0"
        )
        or 0
    )


def run_bench(db_url: str, *, stores: int = 100, skus: int = 500, orders: int = 400,
              threads: int = 4, seed: int = 7) -> dict[str, Any]:  # fmt: skip
    db = connect(db_url)
    try:
        chain_stores, stock, products = _chain(stores, skus, seed)
        seed_network(db, stores=chain_stores, stock=stock, products=products)
        # Sequential: per-order latency.
        latencies, outcomes = [], {"placed": 0, "split": 0, "manual": 0}
        start = time.perf_counter()
        for order in _orders(orders, skus, seed + 1, "seq-"):
            t0 = time.perf_counter()
            out = router.submit_order(db, order)
            latencies.append(time.perf_counter() - t0)
            if out.manual_queue_id is not None:
                outcomes["manual"] += 1
            else:
                outcomes["placed"] += 1
                outcomes["split"] += len(out.task_ids) > 1
        sequential_s = time.perf_counter() - start
        # Concurrent: every thread with its own connection, all competing for the same stock.
        batches = [_orders(orders // threads, skus, seed + 2 + t, f"t{t}-") for t in range(threads)]
        errors: list[str] = []

        def worker(batch: list[router.OrderToRoute]) -> None:
            try:
                for order in batch:
                    router.submit_order(db, order)
            except Exception as exc:  # reported in the result, not swallowed
                errors.append(repr(exc))

        pool = [threading.Thread(target=worker, args=(b,)) for b in batches]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        concurrent_s = time.perf_counter() - start
        ms = sorted(x * 1000 for x in latencies)
        return {
            "backend": db.dialect,
            "stores": stores,
            "skus": skus,
            "sequential": {
                "orders": orders,
                "orders_per_s": round(orders / sequential_s, 1),
                "latency_ms_p50": round(statistics.median(ms), 2),
                "latency_ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
                **outcomes,
            },
            "concurrent": {
                "threads": threads,
                "orders": sum(len(b) for b in batches),
                "orders_per_s": round(sum(len(b) for b in batches) / concurrent_s, 1),
                "errors": errors[:5],
            },
            "oversold_rows": _oversold(db),
        }
    finally:
        db.close()
