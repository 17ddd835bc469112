"""`storelens bench cameras`: how many live 10 fps cameras one box serves in real time.

Every camera plays the same video looped and paced at 10 fps, exactly like a live stream:
a frame not taken before the next one arrives is dropped (the agent's feeds never queue).
For a camera count N the whole agent runs (feeds, shared detection on every frame or on
every k-th frame of each camera with ``detect_every``, tracking and zones on every frame,
card fusion, SQLite outbox; no MQTT) for a warm-up, then is measured.
N is real time when, over the measured window, at least 97% of the frames the cameras
delivered were processed and the 95th percentile of frame age at processing stays under two
frame periods, i.e. no backlog builds up. The search doubles N until it fails, then bisects.

CPU per camera is the agent process's CPU time (all threads) per wall second divided by N,
in cores, at the largest real-time N.
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storelens.edge.config import CameraConfig, DeviceConfig, load_config

CAMERA_FPS = 10.0
WARMUP_S = 2.0
MIN_PROCESSED = 0.97
MAX_LAG_PERIODS = 2.0
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "firmware_config" / "sample.yaml"


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _device(base: DeviceConfig, video: str, n: int, outbox: Path) -> DeviceConfig:
    template: CameraConfig = base.cameras[0]
    cams = [
        template.model_copy(
            update={
                "id": f"cam{i + 1:02d}",
                "source": video,
                "source_fps": CAMERA_FPS,
                "fps": None,
                "loop": True,
                "realtime": True,
            }
        )
        for i in range(n)
    ]
    return base.model_copy(
        update={
            "cameras": cams,
            "readers": [],
            "privacy": None,
            "outbox": base.outbox.model_copy(update={"path": outbox}),
            "status_interval_s": 5.0,
        }
    )


class _Clock:
    """Wall time spent inside the callables it wraps: the bench times the agent's parts
    (detection, the pipelines) from outside, so the agent carries no bench-only counters."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


class _TimedDetector:
    """The detector, with its `detect_many` timed (everything else passed through)."""

    def __init__(self, inner: Any, clock: _Clock) -> None:
        self._inner = inner
        self.frames = 0  # frames that went through the detector (stride, motion gate)
        timed = clock.wrap(inner.detect_many)

        def detect_many(frames: list) -> Any:
            self.frames += len(frames)
            return timed(frames)

        self.detect_many = detect_many

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def measure(base: DeviceConfig, video: str, n: int, detector, seconds: float) -> dict:
    """Run the agent with ``n`` cameras; numbers over the window after the warm-up."""
    from storelens.edge.agent import Agent

    detecting, processing = _Clock(), _Clock()

    lags: list[float] = []
    measuring = threading.Event()
    finished = 0  # frames the agent finished, counted here rather than by the agent

    def on_frame(camera: str, ts: datetime) -> None:
        nonlocal finished
        finished += 1
        if measuring.is_set():
            lags.append(time.time() - ts.timestamp())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _device(base, video, n, Path(tmp) / "outbox.db")
        timed = _TimedDetector(detector, detecting)
        agent = Agent(cfg, publish=False, detector=timed, on_frame=on_frame, drain_s=0)
        runner = threading.Thread(target=agent.run, name="bench-agent", daemon=True)
        runner.start()
        deadline = time.monotonic() + 60
        while len(agent.feeds) < n and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the agent builds its pipelines in its own thread
        time.sleep(WARMUP_S)
        frames0 = finished
        # What the agent spends per frame after detection: each camera's pipeline and the
        # fusion of the cameras (store visits), timed from here on.
        for pipe in agent.pipelines.values():
            pipe.process = processing.wrap(pipe.process)
        if agent.store_visits is not None:
            agent.store_visits.push = processing.wrap(agent.store_visits.push)
        detect0, process0 = detecting.seconds, processing.seconds
        detected0 = timed.frames
        delivered0 = sum(f.frames for f in agent.feeds)
        cpu0, wall0 = _cpu_seconds(), time.monotonic()
        measuring.set()
        time.sleep(seconds)
        measuring.clear()
        wall = time.monotonic() - wall0
        cpu = _cpu_seconds() - cpu0
        processed = finished - frames0
        detected = timed.frames - detected0
        detect_s, process_s = detecting.seconds - detect0, processing.seconds - process0
        delivered = sum(f.frames for f in agent.feeds) - delivered0
        offline = [f.camera.id for f in agent.feeds if not f.online]
        agent.request_stop()
        runner.join(30)
    lags.sort()
    p95 = lags[int(0.95 * (len(lags) - 1))] if lags else float("inf")
    ratio = processed / delivered if delivered else 0.0
    return {
        "cameras": n,
        "fps_per_camera": round(processed / wall / n, 2),
        "processed_ratio": round(ratio, 3),
        "detected_ratio": round(detected / processed, 3) if processed else None,
        "lag_p95_ms": round(p95 * 1000, 1),
        "cpu_cores": round(cpu / wall, 3),
        "cpu_ms_per_frame": round(cpu / processed * 1000, 2) if processed else None,
        # Detection wall time per processed frame (not per detected frame: the cost a frame
        # carries on average, stride included).
        "detect_ms_per_frame": round(detect_s / processed * 1000, 2) if processed else None,
        "pipeline_ms_per_frame": round(process_s / processed * 1000, 2) if processed else None,
        "loop_busy": round((detect_s + process_s) / wall, 3),
        "realtime": bool(
            not offline
            and ratio >= MIN_PROCESSED
            and p95 < MAX_LAG_PERIODS / CAMERA_FPS
            and processed / wall / n >= CAMERA_FPS * MIN_PROCESSED
        ),
    }


def largest_passing(ok: Callable[[int], bool], upper: int) -> int:
    """Largest n in 1..upper with ok(n), assuming ok is monotone: doubling, then bisection."""
    best, n = 0, 1
    while n <= upper and ok(n):
        best, n = n, n * 2
    fail = min(n, upper + 1)
    while fail - best > 1:
        mid = (best + fail) // 2
        if ok(mid):
            best = mid
        else:
            fail = mid
    return best


def run_camera_bench(
    video: str,
    config: Path | None,
    *,
    seconds: float = 8.0,
    max_cameras: int = 32,
    threads: int | None = None,
    parallel: int | None = None,
    detect_every: int | None = None,
) -> dict:
    from storelens.assets import resolve
    from storelens.edge.detect import Detector

    base = load_config(config or DEFAULT_CONFIG)
    if detect_every is not None:
        cams = [c.with_detect_every(detect_every) for c in base.cameras]
        base = base.model_copy(update={"cameras": cams})
    every = base.cameras[0].detect_every
    video_path = str(resolve(video))
    overrides = {k: v for k, v in (("threads", threads), ("parallel", parallel)) if v}
    m = base.model.model_copy(update=overrides)
    detector = Detector.from_config(m)
    trials: dict[int, dict] = {}

    def ok(n: int) -> bool:
        if n not in trials:
            trials[n] = measure(base, video_path, n, detector, seconds)
        return trials[n]["realtime"]

    best = largest_passing(ok, max_cameras)
    # CPU per camera at the largest real-time count (or at one camera when none kept up).
    at = best or min(trials)
    return {
        "max_realtime_cameras": best,
        "cpu_per_camera": round(trials[at]["cpu_cores"] / at, 3),
        "cpu_per_camera_at_cameras": at,
        "camera_fps": CAMERA_FPS,
        "detect_every": every,
        "detection": (
            "every frame of every camera (no stride)"
            if every == 1
            else f"every {every}th frame of each camera, staggered across cameras; frames in "
            "between tracked by prediction"
        )
        + "; batched when the model allows",
        "batched": bool(getattr(detector, "dynamic_batch", False)),
        "model": m.path,
        "threads": m.threads,
        "parallel": m.parallel,
        "cpu_count": os.cpu_count(),
        # Other work on the machine during the bench (1/5/15 min): numbers above are
        # only comparable between runs with similar load.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "measured_s_per_trial": seconds,
        "trials": [trials[k] for k in sorted(trials)],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
