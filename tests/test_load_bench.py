"""The load bench: simulated stores speak the real contract, and a small ramp loses nothing."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from storelens.contract import parse_envelope
from storelens.tools.bench.load import LoadConfig, SimulatedStore, run_load_bench


def test_simulated_batches_satisfy_the_contract() -> None:
    store = SimulatedStore(3, random.Random(1))
    seqs: list[int] = []
    for i in range(50):
        out = store.tick(time.monotonic() + 10 + i, datetime.now(UTC), 3.0, 1.0)
        if out is None:
            continue
        payload, n = out
        env = parse_envelope(payload)
        assert (env.store, env.device, len(env.events)) == ("store-00003", "box-1", n)
        seqs += [e.seq for e in env.events]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free per device, like the outbox
    assert len(seqs) > 50


def test_small_ramp_holds_and_loses_nothing() -> None:
    result = run_load_bench(
        LoadConfig(stores=60, steps=2, step_s=3, events_per_store_s=2.0, publishers=1,
                   connections_per_publisher=2),
        log=lambda _line: None,
    )  # fmt: skip
    assert result.max_stores == 60
    assert result.lost == 0 and result.dead_letters == 0
    assert result.published > 100 and result.stored == result.published
    assert 0 < result.lag_p99_s < 5
    assert [s.stores for s in result.steps] == [30, 60]
