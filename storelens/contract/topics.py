"""MQTT topic layout, version 1.

storelens/v1/{store}/{device}/events        batches of events (QoS 1)
storelens/v1/{store}/{device}/status        periodic device status (QoS 1)
storelens/v1/{store}/{device}/availability  retained "online"/"offline" (last will)
storelens/v1/{store}/{device}/cmd           commands to the device (retained opt-out list)
storelens/v1/{store}/{device}/ack           the cloud's receipts: batches durably stored
storelens/v1/{store}/pos/{kind}             pushes to the store's POS devices
"""

from __future__ import annotations

from typing import NamedTuple

ROOT = "storelens/v1"
EVENTS_ALL = f"{ROOT}/+/+/events"
STATUS_ALL = f"{ROOT}/+/+/status"
AVAILABILITY_ALL = f"{ROOT}/+/+/availability"
DEFAULT_SHARE_GROUP = "ingest"
ONLINE = b"online"
OFFLINE = b"offline"
DEVICE_KINDS = ("events", "status", "availability", "cmd")


def events(store: str, device: str) -> str:
    return f"{ROOT}/{store}/{device}/events"


def status(store: str, device: str) -> str:
    return f"{ROOT}/{store}/{device}/status"


def availability(store: str, device: str) -> str:
    return f"{ROOT}/{store}/{device}/availability"


def cmd(store: str, device: str) -> str:
    return f"{ROOT}/{store}/{device}/cmd"


def ack(store: str, device: str) -> str:
    return f"{ROOT}/{store}/{device}/ack"


def pos(store: str, kind: str) -> str:
    return f"{ROOT}/{store}/pos/{kind}"


def shared(topic_filter: str, group: str = DEFAULT_SHARE_GROUP) -> str:
    """A shared subscription: the broker gives each message to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


class DeviceTopic(NamedTuple):
    store: str
    device: str
    kind: str


def parse(topic: str) -> DeviceTopic | None:
    """Split a device topic; None for anything that is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT or parts[4] not in DEVICE_KINDS:
        return None
    if parts[3] == "pos":
        return None
    return DeviceTopic(parts[2], parts[3], parts[4])
