"""What `storelens demo` promises, step by step, and the check that each step happened.

Each step has a minimum and the run time after which it is due. The minimums are honest
floors for the sample video played in real time with the demo's schedule (first swipe at 8 s,
then one every 15 s; the online order at 20 s), not tuned to one run: a 90 s headless run
must meet all of them, a run stopped earlier is held only to the steps already due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    key: str  # the summary field
    what: str  # the step, as a newcomer reads it
    minimum: int
    due_s: float  # required only once the demo has run this long
    hint: str  # where to look when it did not happen


STEPS = (
    # People cross the sample video from its first seconds; the agent batches each second.
    Step("events_ingested", "events stored in the cloud", 10, 30, "see edge.log"),
    Step("footfall_in", "footfall (entrance crossings in)", 1, 30, "see edge.log"),
    Step("zone_visits", "zone visits with dwell", 1, 30, "see edge.log"),
    # The agent reports its status every 10 s (the demo's device config).
    Step("device_statuses", "device status reports received", 1, 25, "see edge.log"),
    Step("swipes_sent", "member cards swiped at the reader", 1, 12, "card reader"),
    # A swipe links only when a tracked person stands in the reader's zone at that moment;
    # in the sample video about one swipe in four finds someone there, so a 60 s run (four
    # swipes) can count on one, not more.
    Step("swipes_linked", "swipes linked to the person at the reader", 1, 60, "fusion"),
    Step("recommendations_served", "POS recommendations served", 1, 12, "POS API"),
    # The demo's cards are members with marketing consent outside the holdout, and the seed
    # has offer templates for everyone: the first POS call already has offers.
    Step("offers_served", "POS offers proposed", 1, 12, "POS API"),
    Step("orders_placed", "online order placed through the webhook", 1, 30, "orders API"),
    Step("fulfillment_tasks", "ship-from-store task created for the order", 1, 30, "routing"),
    Step("tasks_pushed", "task pushed to the store's POS", 1, 30, "POS push stream"),
)
# Every run, however short: nothing rejected or lost, and nothing stored that was not sent.
MUST_BE_ZERO = (("dead_letters", "events rejected by the cloud"),
                ("outbox_lost", "events the device dropped"))  # fmt: skip


def problems(summary: Mapping[str, Any], ran_s: float) -> list[str]:
    """What the demo promised and did not do, each with where to look; empty when all is
    well. (The errors the demo met on the way are its reasons and are printed before.)"""
    out = []
    for step in STEPS:
        value = summary.get(step.key, 0)
        if ran_s >= step.due_s and value < step.minimum:
            out.append(
                f"{step.what}: {value} after {ran_s:.0f} s, needs at least {step.minimum} "
                f"({step.hint})"
            )
    for key, what in MUST_BE_ZERO:
        if summary.get(key, 0):
            out.append(f"{what}: {summary[key]} (see /api/v1/dead-letters and edge.log)")
    if summary.get("events_ingested", 0) > summary.get("events_published", 0):
        out.append(
            f"the cloud stored {summary['events_ingested']} events but the device published "
            f"only {summary['events_published']}"
        )
    return out
