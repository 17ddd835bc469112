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


async def _worker(host: str, port: int, header_block: bytes, jobs: asyncio.Queue,
                  latencies: list[float], errors: list[int]) -> None:  # fmt: skip
    """One keep-alive connection answering jobs in turn.

    A minimal HTTP/1.1 client, written here because httpx spends more CPU per request than
    the endpoint under test: on 2 shared cores the load generator would be the bottleneck.
    It needs only what uvicorn answers: a status line, headers, a Content-Length body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            job = await jobs.get()
            if job is None:
                return
            path, scheduled = job
            writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + header_block)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if status == 200:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors.append(status)
    finally:
        writer.close()


async def _drive(base: str, paths: list[str], headers: dict[str, str], rate: float,
                 seconds: float, *, connections: int = 32) -> dict[str, float]:  # fmt: skip
    """Send ``rate`` requests per second for ``seconds`` over ``connections`` keep-alive
    connections. Latency counts from each request's scheduled time, so time spent waiting
    for a free connection is charged too (no coordinated omission)."""
    host, port = base.removeprefix("http://").split(":")
    header_block = f"Host: {host}\r\n".encode()
    for name, value in headers.items():
        header_block += f"{name}: {value}\r\n".encode()
    header_block += b"\r\n"
    jobs: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors: list[int] = []
    workers = [
        asyncio.create_task(_worker(host, int(port), header_block, jobs, latencies, errors))
        for _ in range(connections)
    ]
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait((paths[i % len(paths)], scheduled))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "rps": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "requests": n,
    }


def run(*, rate: float = 200.0, seconds: float = 20.0, members: int = 3000, seed: int = 42,
        workers: int = 2) -> dict[str, Any]:  # fmt: skip
    """``workers`` uvicorn processes (one per core is the deployment advice: the service is
    CPU-bound Python, one process uses one core)."""
    import httpx

    from storelens.cloud.commerce import till
    from storelens.cloud.db import connect
    from storelens.tools.seed import chain as seed_data

    with tempfile.TemporaryDirectory(prefix="storelens-apibench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = connect(url)
        seeded = seed_data.seed(db, seed=seed, members=members)
        store, token = sorted(seeded.credentials["pos_tokens"].items())[0]
        member_ids = [r["id"] for r in db.query("SELECT id FROM members ORDER BY id")]
        # A POS acts only for members at its till: every member has swiped there (the bench
        # measures recommendations, not 3000 lookups through the lookup rate limit).
        device = db.scalar(
            "SELECT subject FROM auth_tokens WHERE kind = 'pos' AND store = ?", (store,)
        )
        for member_id in member_ids:
            till.arrived(db, store, device, member_id)
        # As deployed: the builder stores the model, the API workers load it.
        from storelens.cloud.personalization.recommend import RecommendationService

        RecommendationService(db, role="build", store=True).rebuild()
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
            "--workers", str(workers),
        ]  # fmt: skip
        server = subprocess.Popen(cmd, env=env)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            # Ready means every worker has loaded the model: the status is answered by
            # whichever worker accepts the connection, so it must say ready many times in a row.
            deadline = time.monotonic() + 180
            ready_in_a_row = 0
            while ready_in_a_row < 10 * workers:
                try:
                    r = httpx.get(f"{base}/api/v1/pos/status", headers=headers, timeout=2)
                    ok = r.status_code == 200 and r.json()["recommendations_ready"]
                except httpx.HTTPError:
                    ok = False
                ready_in_a_row = ready_in_a_row + 1 if ok else 0
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the API server did not become ready")
                time.sleep(0.05 if ok else 0.5)
            paths = [f"/api/v1/pos/members/{m}/recommendations" for m in member_ids]
            # Warm-up: every worker builds its model, connections open, caches fill.
            for path in paths[: 2 * workers]:
                httpx.get(base + path, headers=headers, timeout=120).raise_for_status()
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
        "workers": workers,
    }
