"""Cloud receipts: the device keeps events until the cloud says they are stored.

A real Mosquitto without persistence stands in for the failures receipts exist for: an
envelope the broker acknowledged (PUBACK) while no consumer was subscribed is gone, as after
a broker restart (Mosquitto keeps no shared subscriptions) or with an ingest worker that died
holding it. With ``confirm: cloud`` the device sends it again until a receipt arrives.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from conftest import Broker, wait_for

from storelens.contract import LineCrossing, parse_envelope, topics
from storelens.contract.commands import Ack
from storelens.edge.config import CameraConfig, DeviceConfig, MqttConfig, OutboxConfig
from storelens.edge.outbox import Outbox
from storelens.edge.publish import Publisher

STORE, DEVICE = "s-r", "box-r"


class Cloud:
    """Records every event it receives and, if ``receipts``, acknowledges each envelope."""

    def __init__(self, port: int, *, receipts: bool = True) -> None:
        self.receipts = receipts
        self.events: list[str] = []
        self.envelopes = 0
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topics.EVENTS_ALL, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        envelope = parse_envelope(msg.payload)
        with self.lock:
            self.events += [str(e.id) for e in envelope.events]
            self.envelopes += 1
        if self.receipts:
            receipt = Ack(batch_ids=[envelope.batch_id]).model_dump_json()
            client.publish(topics.ack(STORE, DEVICE), receipt, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def device(tmp_path: Path, port: int, **outbox: object) -> tuple[Outbox, Publisher]:
    config = DeviceConfig(
        store=STORE,
        device=DEVICE,
        mqtt=MqttConfig(port=port, reconnect_min_s=0.1, reconnect_max_s=1.0),
        cameras=[CameraConfig(id="door", source="0")],
        outbox=OutboxConfig(path=tmp_path / "outbox.db", batch_interval_s=0.1,
                            batch_max_events=10, **outbox),
    )  # fmt: skip
    ob = Outbox(config.outbox.path)
    return ob, Publisher(config, ob)


def produce(ob: Outbox, n: int) -> set[str]:
    events = [
        LineCrossing(device=DEVICE, seq=ob.next_seq(), ts=datetime.now(UTC), camera="door",
                     visit_id=uuid.uuid4(), line="entrance", direction="in")
        for _ in range(n)
    ]  # fmt: skip
    ob.put(events)
    return {str(e.id) for e in events}


def test_envelopes_the_broker_lost_are_sent_again_until_the_cloud_confirms(
    broker: Broker, tmp_path: Path
) -> None:
    ob, pub = device(tmp_path, broker.port, ack_timeout_s=0.5)
    pub.start()
    try:
        assert pub.wait_connected(10)
        lost = produce(ob, 25)  # no consumer yet: the broker PUBACKs and drops them
        wait_for(lambda: ob.pending() == 0 and pub.sent_messages >= 3)
        assert ob.depth == 25  # PUBACKed, but not confirmed: still on the device
        wait_for(lambda: pub.resent_envelopes >= 3)  # no receipt in time: sent again
        cloud = Cloud(broker.port)
        try:
            later = produce(ob, 15)
            wait_for(lambda: ob.depth == 0, timeout=30)
            with cloud.lock:
                received = set(cloud.events)
            assert lost | later <= received  # nothing lost; duplicates are the cloud's to absorb
            assert pub.receipts > 0
        finally:
            cloud.close()
    finally:
        pub.stop()
        ob.close()


def test_without_receipts_events_stay_and_the_resend_timeout_backs_off(
    broker: Broker, tmp_path: Path
) -> None:
    cloud = Cloud(broker.port, receipts=False)  # stores nothing: e.g. its database is down
    ob, pub = device(tmp_path, broker.port, ack_timeout_s=0.3, inflight_max=2)
    pub.start()
    try:
        produce(ob, 50)
        wait_for(lambda: pub.resent_envelopes >= 6, timeout=30)
        assert ob.depth == 50  # nothing leaves the device unconfirmed
        # at most inflight_max envelopes wait for a receipt: the rest stays pending on disk
        assert ob.pending() >= 50 - 2 * 10
        assert pub._backoff > 1.0  # the timeout doubled while nothing was confirmed
    finally:
        pub.stop()
        cloud.close()
        ob.close()


def test_broker_confirmation_deletes_on_puback(broker: Broker, tmp_path: Path) -> None:
    cloud = Cloud(broker.port, receipts=False)
    ob, pub = device(tmp_path, broker.port, confirm="broker")
    pub.start()
    try:
        ids = produce(ob, 30)
        wait_for(lambda: ob.depth == 0)
        wait_for(lambda: set(cloud.events) >= ids)
        assert pub.resent_envelopes == 0
    finally:
        pub.stop()
        cloud.close()
        ob.close()


def test_a_malformed_or_foreign_receipt_is_ignored(broker: Broker, tmp_path: Path) -> None:
    ob, pub = device(tmp_path, broker.port, ack_timeout_s=60)
    pub.start()
    try:
        assert pub.wait_connected(10)
        produce(ob, 5)
        wait_for(lambda: ob.pending() == 0)
        raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        for payload in (b"{not json", b'{"type":"ack","batch_ids":["nope"]}',
                        Ack(batch_ids=[uuid.uuid4()]).model_dump_json().encode()):  # fmt: skip
            raw.publish(topics.ack(STORE, DEVICE), payload, qos=1).wait_for_publish(5)
        wait_for(lambda: pub.receipts == 1)  # only the well-formed one counts
        assert ob.depth == 5 and pub._thread is not None and pub._thread.is_alive()
        raw.disconnect()
        raw.loop_stop()
    finally:
        pub.stop()
        ob.close()
