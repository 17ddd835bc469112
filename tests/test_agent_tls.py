"""The publisher against a broker that demands TLS and a password, as in a store."""

from __future__ import annotations

import getpass
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import MOSQUITTO, free_port, make_test_ca, wait_port

from storelens.contract import parse_envelope, topics
from storelens.contract.events import OccupancySnapshot
from storelens.edge.config import parse_config
from storelens.edge.outbox import Outbox
from storelens.edge.publish import Publisher

PASSWORD = "s3cret-box-password"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    make_test_ca(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "box-1", PASSWORD],
        check=True,
        capture_output=True,
    )
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user {getpass.getuser()}\npersistence false\nallow_anonymous false\n"
        f"password_file {tmp_path}/passwd\nlistener {port} 127.0.0.1\n"
        f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\n"
        f"keyfile {tmp_path}/server.key\n"
    )
    log = (tmp_path / "mosquitto.log").open("ab")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    wait_port(port)
    yield port, tmp_path
    proc.terminate()
    proc.wait(10)


def device(tmp_path: Path, port: int, **mqtt_extra) -> dict:
    return {
        "store": "s1",
        "device": "box-1",
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "username": "box-1",
            "tls": {"ca_file": str(tmp_path / "ca.crt")},
            **mqtt_extra,
        },
        "cameras": [{"id": "c", "source": "0"}],
        # No cloud here to send receipts: the broker's PUBACK confirms delivery.
        "outbox": {
            "path": str(tmp_path / f"outbox-{len(mqtt_extra)}.db"),
            "batch_interval_s": 0.1,
            "confirm": "broker",
        },
    }


def fill(ob: Outbox, n: int) -> None:
    ts = datetime.now(UTC)
    ob.put(
        [
            OccupancySnapshot(device="box-1", seq=ob.next_seq(), ts=ts, camera="c", total=i)
            for i in range(n)
        ]
    )


def test_tls_with_password_file_delivers(tls_broker: tuple[int, Path]) -> None:
    port, tmp = tls_broker
    (tmp / "mqtt-password").write_text(PASSWORD + "\n")
    cfg = parse_config(device(tmp, port, password_file=str(tmp / "mqtt-password")))
    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.username_pw_set("box-1", PASSWORD)
    sub.tls_set(ca_certs=str(tmp / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    sub.on_connect = lambda c, *_: c.subscribe(topics.events("s1", "box-1"), qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    assert subscribed.wait(10)
    ob = Outbox(cfg.outbox.path)
    fill(ob, 5)
    pub = Publisher(cfg, ob)
    pub.start()
    try:
        assert pub.wait_connected(10)
        assert pub.drain(10)
    finally:
        pub.stop()
        sub.loop_stop()
    events = [e for p in got for e in parse_envelope(p).events]
    assert sorted(e.total for e in events) == [0, 1, 2, 3, 4]


def test_wrong_password_keeps_events_in_the_outbox(
    tls_broker: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, tmp = tls_broker
    monkeypatch.setenv("BOX_MQTT_PASSWORD", "wrong")
    cfg = parse_config(device(tmp, port, password_env="BOX_MQTT_PASSWORD"))
    ob = Outbox(cfg.outbox.path)
    fill(ob, 3)
    pub = Publisher(cfg, ob)
    pub.start()
    try:
        assert not pub.wait_connected(2)
    finally:
        pub.stop()
    assert ob.depth == 3
