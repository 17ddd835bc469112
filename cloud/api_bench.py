"""Latency of the POS recommendations endpoint under load, against a seeded SQLite chain.

The API runs in a uvicorn subprocess (as deployed: one process, no access log); an asyncio
client sends requests open-loop at a fixed rate (a request every 1/rate seconds whether or not
earlier ones have answered, so a slow server cannot slow the offered load down), to the
recommendations endpoint first and then, in the same run, to /healthz for the framework's own
floor. Latency is measured from each request's send to its full response.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _drive(base: str, paths: list[str], headers: dict[str, str], rate: float,
                 seconds: float) -> dict[str, float]:  # fmt: skip
    import httpx

    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=30) as client:  # fmt: skip

        async def one(path: str) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                await r.aread()
                if r.status_code != 200:
                    errors += 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "rps": round(len(latencies) / elapsed, 1),
        "errors": errors,
        "requests": n,
    }


def run(*, rate: float = 200.0, seconds: float = 20.0, members: int = 3000,
        seed: int = 42) -> dict[str, Any]:  # fmt: skip
    import httpx
    from storelens.cloud import seed as seed_data
    from storelens.cloud.store import connect

    with tempfile.TemporaryDirectory(prefix="storelens-apibench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = connect(url)
        seeded = seed_data.seed(db, seed=seed, members=members)
        store, token = sorted(seeded.credentials["pos_tokens"].items())[0]
        member_ids = [r["id"] for r in db.query("SELECT id FROM members ORDER BY id")]
        db.close()
        random.Random(seed).shuffle(member_ids)
        port = _free_port()
        env = dict(
            os.environ,
            STORELENS_DB_URL=url,
            STORELENS_PSEUDONYM_KEY=seeded.credentials["pseudonym_key"]["hex"],
        )
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", "storelens.cloud.api.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        server = subprocess.Popen(cmd, env=env)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the API server did not start")
                time.sleep(0.2)
            paths = [f"/api/v1/pos/members/{m}/recommendations" for m in member_ids]
            # Warm-up: builds the model once, opens connections, fills caches.
            warm = httpx.get(base + paths[0], headers=headers, timeout=120)
            warm.raise_for_status()
            asyncio.run(_drive(base, paths[1:200], headers, rate / 2, 3.0))
            recs = asyncio.run(_drive(base, paths, headers, rate, seconds))
            health = asyncio.run(_drive(base, ["/healthz"], headers, rate, seconds))
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    return {
        "p50_ms": recs["p50_ms"],
        "p99_ms": recs["p99_ms"],
        "rps": recs["rps"],
        "healthz_p50_ms": health["p50_ms"],
        "healthz_p99_ms": health["p99_ms"],
        "healthz_rps": health["rps"],
        "offered_rps": rate,
        "seconds": seconds,
        "errors": recs["errors"] + health["errors"],
        "store": store,
        "members": members,
        "backend": "sqlite",
    }
