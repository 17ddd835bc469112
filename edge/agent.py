"""The device agent: N cameras, shared inference, card readers, outbox and MQTT.

Threads: one per camera feed (decode), one per card reader, paho's network thread and the
publisher's sender; everything that touches tracking state runs on the one inference loop
(the caller's thread), so pipelines need no locks and sequence numbers are handed out in
order. Each loop turn takes the newest frame of every camera that has one, detects people in
those on their camera's detection stride (``detect_every``, staggered across cameras) with one
batched call when the model has a dynamic batch (else one call per frame, ``model.parallel``
side by side), runs each camera's pipeline on every frame, links pending card swipes, and
stores the turn's events in the outbox in one transaction.

Failures stay local: a camera that fails is reopened with back-off, a reader is retried, an
exception in one camera's pipeline is logged and that frame skipped. SIGTERM (or SIGINT)
stops the feeds, closes open visits, and gives the publisher `drain_s` seconds to deliver
the outbox before announcing ``offline``; whatever is left stays in the outbox for next time.
"""

from __future__ import annotations

import itertools
import logging
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from storelens.contract.commands import OptOutList
from storelens.contract.events import CameraStatus, DeviceStatus
from storelens.edge.cards import CardReader, Swipe, build_reader
from storelens.edge.config import DeviceConfig
from storelens.edge.fusion.store_visits import FusedView
from storelens.edge.fusion.swipes import CardFusion, OptOutRegistry
from storelens.edge.outbox import Outbox
from storelens.edge.sources.camera_feed import CameraFeed
from storelens.pseudonym import PseudonymKey, load_key

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.05


class AgentError(RuntimeError):
    """A configuration the agent cannot start with (model, key, outbox path)."""


def optout_path(outbox_path: Path) -> Path:
    return outbox_path.with_name(outbox_path.stem + ".optout.json")


class Agent:
    def __init__(
        self,
        config: DeviceConfig,
        *,
        publish: bool = True,
        max_frames: int | None = None,
        drain_s: float = 10.0,
        detector=None,
        on_frame: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self.config = config
        self.publish = publish
        self.max_frames = max_frames
        self.drain_s = drain_s
        self._detector = detector
        self._on_frame = on_frame  # benches measure frame lag here
        self._gates: dict = {}
        self._strides: dict = {}
        self._last_detections: dict = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._swipes: queue.SimpleQueue[Swipe] = queue.SimpleQueue()
        self._optout_updates: queue.SimpleQueue[OptOutList] = queue.SimpleQueue()
        self.started = time.monotonic()
        self.key = self._load_key()
        try:
            self.outbox = Outbox(
                config.outbox.path,
                max_bytes=config.outbox.max_bytes,
                max_age_s=config.outbox.max_age_s,
            )
        except Exception as exc:
            raise AgentError(f"outbox {config.outbox.path}: {exc}") from None
        self.optouts = OptOutRegistry(optout_path(Path(config.outbox.path)))
        self.fusion = CardFusion(
            config.device,
            config.readers,
            self.optouts,
            require_optout_list=bool(config.privacy and config.privacy.require_optout_list),
            staff_readers=config.staff.readers if config.staff else (),
        )
        self.pipelines: dict = {}
        self.store_visits = None  # fuses the cameras when the config has store_visits
        self.feeds: list[CameraFeed] = []
        self.readers: list[CardReader] = []
        self.publisher = None
        self.frames = 0  # frames processed, every camera
        self.unstored = 0  # events the outbox could not write (disk errors)

    def _load_key(self) -> PseudonymKey | None:
        p = self.config.privacy
        if p is None:
            return None
        try:
            return load_key(p.key_id, path=p.key_file, env=p.key_env)
        except ValueError as exc:
            raise AgentError(f"privacy key: {exc}") from None

    # -- set-up ----------------------------------------------------------------------------
    def _build(self) -> None:
        # Cheap checks first: a bad password or TLS setting fails before the model loads.
        if self.publish:
            from storelens.edge.publish import Publisher

            try:
                self.publisher = Publisher(self.config, self.outbox, on_command=self._on_command)
            except (OSError, ValueError) as exc:  # TLS files, password file/env, bad settings
                raise AgentError(f"mqtt: {exc}") from None
        if self._detector is None:
            from storelens.edge.detect import Detector

            m = self.config.model
            try:
                self._detector = Detector.from_config(m)
            except Exception as exc:
                raise AgentError(f"model: {exc}") from None
        from storelens.edge.camera.pipeline import CameraPipeline
        from storelens.edge.detect.stride import DetectStride

        attire = bool(self.config.privacy and self.config.privacy.attire)
        next_seq = self.outbox.next_seq
        if self.config.store_visits is not None:
            from storelens.edge.fusion.store_visits import StoreVisits

            self.store_visits = StoreVisits(self.config, self.outbox.next_seq)
            next_seq = itertools.count().__next__  # the fusion renumbers every event
        for index, cam in enumerate(self.config.cameras):
            # Phase = camera index: cameras with a stride take turns at the detector.
            self._strides[cam.id] = DetectStride(cam.detect_every, phase=index)
            self.pipelines[cam.id] = CameraPipeline(
                cam,
                self.config.tracker,
                device=self.config.device,
                next_seq=next_seq,
                attire=attire,
                staff_signal=self.config.staff_signal,
                learn_staff_zones=bool(self.config.staff and self.config.staff.learn_from_zones),
            )
            self.feeds.append(CameraFeed(cam, self._ready, max_frames=self.max_frames))
            if cam.motion_gate:
                from storelens.edge.detect.motion import MotionGate

                self._gates[cam.id] = MotionGate()
        if self.key is not None:
            for rcfg in self.config.readers:
                badge = self.config.staff.is_badge if self.config.staff else None
                self.readers.append(build_reader(rcfg, self.key, self._swipes.put, badge))

    def _on_command(self, command: object) -> None:
        """On paho's thread: record the command; the loop applies it to tracking state."""
        if isinstance(command, OptOutList):
            self.optouts.update(command)
            self._optout_updates.put(command)

    def _apply_optouts(self) -> None:
        """Visits linked before their member opted out lose the link at once."""
        while True:
            try:
                update = self._optout_updates.get_nowait()
            except queue.Empty:
                return
            tokens = set(update.tokens)
            for cam_id, pipe in self.pipelines.items():
                cleared = pipe.forget_members(tokens, update.key_id)
                if cleared:
                    log.info("camera %s: %d visit(s) unlinked after opt-out", cam_id, cleared)
            if self.store_visits is not None:
                cleared = self.store_visits.forget_members(tokens, update.key_id)
                if cleared:
                    log.info("%d store visit(s) unlinked after opt-out", cleared)

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._ready.set()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (or every file source ended); returns the outbox depth left."""
        self._build()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        if self.publisher is not None:
            self.publisher.start()
        for reader in self.readers:
            reader.start()
        for feed in self.feeds:
            feed.start()
        status_every = self.config.status_interval_s
        next_status = time.monotonic()
        log.info(
            "agent %s/%s running %d camera(s)",
            self.config.store,
            self.config.device,
            len(self.feeds),
        )
        try:
            while not self._stop.is_set():
                self._ready.clear()
                events = self._infer_once()
                if events is None:
                    if all(f.exhausted for f in self.feeds):
                        log.info("every camera source ended")
                        break
                    self._ready.wait(IDLE_WAIT_S)
                    events = []
                self._apply_optouts()
                events += self._resolve_swipes()
                self._store(events)
                if time.monotonic() >= next_status:
                    self._store([self.status(self.outbox.next_seq())], kind="status")
                    next_status = time.monotonic() + status_every
        finally:
            left = self._shutdown()
        return left

    def _store(self, events: list, kind: str = "events") -> None:
        try:
            self.outbox.put(events, kind=kind)
        except (sqlite3.Error, OSError):
            # Disk full or failing: the agent keeps running so it recovers when space frees;
            # these events are lost and the log says how many.
            self.unstored += len(events)
            log.exception("outbox write failed: %d event(s) lost", len(events))

    def _infer_once(self) -> list | None:
        batch = [(feed, item) for feed in self.feeds if (item := feed.take()) is not None]
        if not batch:
            return None
        # Frames off a camera's detection stride get none (the tracker predicts); on the
        # stride, motion-gated cameras whose view did not change reuse their last detections.
        due = {i for i, (feed, _) in enumerate(batch) if self._strides[feed.camera.id].due()}
        todo = [
            i
            for i, (feed, (frame, ts)) in enumerate(batch)
            if i in due
            and (
                (gate := self._gates.get(feed.camera.id)) is None
                or gate.needs_detection(frame, ts.timestamp())
                or feed.camera.id not in self._last_detections
            )
        ]
        if todo:
            t0 = time.perf_counter()
            try:
                found = self._detector.detect_many([batch[i][1][0] for i in todo])
            except Exception:
                log.exception("detection failed on %d frame(s); skipped", len(todo))
                return []
            per_frame_ms = (time.perf_counter() - t0) * 1000 / len(todo)
            for i, dets in zip(todo, found, strict=True):
                cam_id = batch[i][0].camera.id
                self._last_detections[cam_id] = dets
                self.pipelines[cam_id].stats.note_inference(per_frame_ms)
        events: list = []
        for i, (feed, (frame, ts)) in enumerate(batch):
            pipe = self.pipelines[feed.camera.id]
            dets = self._last_detections.get(feed.camera.id) if i in due else None
            if feed.dropped > pipe.stats.dropped_frames:
                pipe.stats.note_dropped(feed.dropped - pipe.stats.dropped_frames)
            try:
                found = pipe.process(frame, ts, dets)
                if self.store_visits is not None:  # by frame time, through its reorder buffer
                    found = self.store_visits.push(
                        feed.camera.id, ts.timestamp(), found, pipe.sightings(), frame
                    )
                events += found
            except Exception:
                log.exception("camera %s: pipeline failed on a frame; skipped", feed.camera.id)
            self.frames += 1
            if self._on_frame is not None:
                self._on_frame(feed.camera.id, ts)
        return events

    def _resolve_swipes(self) -> list:
        events = []
        while True:
            try:
                swipe = self._swipes.get_nowait()
            except queue.Empty:
                return events
            try:
                if self.store_visits is None:
                    event = self.fusion.resolve(swipe, self.pipelines, self.outbox.next_seq)
                else:
                    views = {c: FusedView(p, self.store_visits) for c, p in self.pipelines.items()}
                    event = self.fusion.resolve(swipe, views, self.outbox.next_seq)
                    event = self.store_visits.swipe(event) if event is not None else None
                if event is not None:  # None: a staff badge, which marks a visit and no more
                    events.append(event)
            except Exception:
                log.exception("reader %s: swipe could not be processed", swipe.reader)

    def status(self, seq: int = 0) -> DeviceStatus:
        """Health now; the loop passes a real sequence number, inspection uses 0."""
        cameras = []
        for feed in self.feeds:
            pipe = self.pipelines[feed.camera.id]
            if feed.online:
                cameras.append(pipe.stats.status(online=True))
            else:
                s = pipe.stats
                cameras.append(
                    CameraStatus(
                        camera=feed.camera.id,
                        online=False,
                        fps=0.0,
                        inference_ms=round(s.inference_ms, 2),
                        dropped_frames=s.dropped_frames,
                    )
                )
        return DeviceStatus(
            device=self.config.device,
            seq=seq,
            ts=datetime.now(UTC),
            uptime_s=round(time.monotonic() - self.started, 1),
            cameras=cameras,
            readers=[r.status() for r in self.readers],
            outbox_depth=self.outbox.depth,
            outbox_bytes=self.outbox.size_bytes,
            lost_events=self.outbox.lost,
            outbox_age_s=self.outbox.oldest_age_s(),
            ambiguous_handoffs=(
                self.store_visits.ambiguous_handoffs if self.store_visits is not None else None
            ),
        )

    def _shutdown(self) -> int:
        for feed in self.feeds:
            feed.stop()
        for reader in self.readers:
            reader.stop()
        events: list = []
        # Frames still waiting are dropped; swipes still waiting are linked to who is in view.
        events += self._resolve_swipes()
        if self.store_visits is not None:
            try:
                events += self.store_visits.drain()  # frames still waiting for other cameras
            except Exception:
                log.exception("store visits: could not fuse the buffered frames")
        for cam_id, pipe in self.pipelines.items():
            try:
                closed = pipe.flush()
                if self.store_visits is not None:
                    closed = self.store_visits.route(cam_id, closed)
                events += closed
            except Exception:
                log.exception("camera %s: could not close its visits", cam_id)
        if self.store_visits is not None:
            try:
                events += self.store_visits.flush()
            except Exception:
                log.exception("store visits: could not close them")
        self.outbox.put(events)
        self.outbox.put([self.status(self.outbox.next_seq())], kind="status")
        if self.publisher is not None:
            if not self.publisher.drain(self.drain_s):
                log.warning("%d event(s) stay in the outbox for the next start", self.outbox.depth)
            self.publisher.stop()
        left = self.outbox.depth
        self.outbox.close()
        log.info("agent stopped")
        return left
