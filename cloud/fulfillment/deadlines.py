"""Deadlines: tasks a store did not accept in time are re-routed; pickups the customer did
not collect in time expire (stock back on the shelf, order cancelled or re-offered).

`sweep(db, now=...)` does one pass and is what tests call; `DeadlineSweeper` runs it in a
background thread for the API process. Each overdue task moves through the normal workflow,
so a clerk accepting at the last second and the sweeper racing it resolve like any two
clerks: one wins, the other's move is a conflict and is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from storelens.cloud.db import Database
from storelens.cloud.fulfillment import workflow
from storelens.cloud.fulfillment.rules import DEFAULT_CONFIG, RoutingConfig
from storelens.cloud.fulfillment.states import Action, TaskState

log = logging.getLogger(__name__)

SWEEPER = "deadline-sweeper"


@dataclass
class SweepReport:
    timed_out: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    rerouted_to: list[str] = field(default_factory=list)
    manual_queue_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # moved by someone else meanwhile


def sweep(
    db: Database, *, now: float | None = None, config: RoutingConfig = DEFAULT_CONFIG,
    limit: int = 500,
) -> SweepReport:  # fmt: skip
    now = time.time() if now is None else now
    report = SweepReport()
    overdue = db.query(
        "SELECT id, state, accept_by, pickup_by FROM fulfillment_tasks"
        " WHERE (state = ? AND accept_by < ?) OR (state = ? AND pickup_by < ?)"
        " ORDER BY created_at LIMIT ?",
        (TaskState.brokered.value, now, TaskState.ready_for_pickup.value, now, limit),
    )
    for task in overdue:
        brokered = task["state"] == TaskState.brokered.value
        action = Action.time_out if brokered else Action.expire
        deadline = task["accept_by"] if brokered else task["pickup_by"]
        reason = (
            "not accepted before the acceptance deadline"
            if brokered
            else "not collected before the pickup deadline"
        )
        req = workflow.Request(
            action, actor=SWEEPER, reason=reason, request_id=f"{action.value}@{deadline}"
        )
        try:
            result = workflow.apply(db, task["id"], req, config=config, now=now)
        except (workflow.TransitionConflict, workflow.TaskNotFound) as exc:
            log.info("deadline sweep skipped task %s: %s", task["id"], exc)
            report.skipped.append(task["id"])
            continue
        if result.replayed:
            continue
        (report.timed_out if brokered else report.expired).append(task["id"])
        report.rerouted_to += result.rerouted_to
        if result.manual_queue_id is not None:
            report.manual_queue_ids.append(result.manual_queue_id)
    return report


class DeadlineSweeper:
    """Calls `sweep` every ``interval_s`` seconds in a daemon thread until `stop()`.

    Several API replicas may each run one: the workflow's conditional updates make the
    replicas' passes over the same task collapse into one move.
    """

    def __init__(self, db: Database, *, interval_s: float = 30.0,
                 config: RoutingConfig = DEFAULT_CONFIG) -> None:  # fmt: skip
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.db, self.interval_s, self.config = db, interval_s, config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="deadline-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = sweep(self.db, config=self.config)
                if report.timed_out or report.expired:
                    log.info("deadline sweep: %d re-routed, %d pickups expired",
                             len(report.timed_out), len(report.expired))  # fmt: skip
            except Exception:  # a database hiccup must not end the sweeper
                log.exception("deadline sweep failed; retrying in %.0f s", self.interval_s)
            self._stop.wait(self.interval_s)
