"""The deployed Mosquitto config, run for real: credentials, per-device ACLs and TLS.

The files under deploy/mosquitto are copied to a temp dir with container paths and ports
rewritten, service and device credentials are made with `storelens provision`, and the real
broker binary is started with them. Clients speak MQTT 5 so the broker's refusals come back
as reason codes instead of silent drops.
"""

from __future__ import annotations

import getpass
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import MOSQUITTO, REPO, free_port, make_test_ca, wait_port
from paho.mqtt.reasoncodes import ReasonCode

from storelens.cli.provision import provision_device, provision_service
from storelens.contract import topics

DEPLOY = REPO / "deploy" / "mosquitto"
NOT_AUTHORIZED = 0x87


@dataclass
class DeployedBroker:
    port: int
    tls_port: int | None
    root: Path
    passwords: dict[str, str]
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def deploy_config(root: Path, port: int, tls_port: int | None) -> Path:
    """The deploy config with container paths mapped into ``root``."""
    for sub in ("auth", "data", "conf.d", "certs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    text = (DEPLOY / "mosquitto.conf").read_text()
    text = (
        text.replace("/mosquitto/auth/", f"{root}/auth/")
        .replace("/mosquitto/data/", f"{root}/data/")
        .replace("/mosquitto/config/conf.d", f"{root}/conf.d")
        .replace("listener 1883", f"listener {port} 127.0.0.1")
    )
    assert f"listener {port} 127.0.0.1" in text, "deploy config lost its plain listener"
    # Run as root, Mosquitto switches to the `mosquitto` user, who cannot read our 0600
    # temp files; in the container the provision service writes them for uid 1883.
    text += f"\nuser {getpass.getuser()}\n"
    conf = root / "mosquitto.conf"
    conf.write_text(text)
    shutil.copy(DEPLOY / "acl", root / "auth" / "acl")
    if tls_port is not None:
        tls = (DEPLOY / "tls.conf").read_text()
        tls = tls.replace("/mosquitto/certs/", f"{root}/certs/")
        tls = tls.replace("listener 8883", f"listener {tls_port} 127.0.0.1")
        (root / "conf.d" / "tls.conf").write_text(tls)
    return conf


def start(root: Path, conf: Path, ports: list[int]) -> subprocess.Popen:
    log = (root / "mosquitto.log").open("ab")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    try:
        for p in ports:
            wait_port(p)
    except TimeoutError:
        proc.kill()
        raise AssertionError((root / "mosquitto.log").read_text()) from None
    return proc


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[DeployedBroker]:
    port, tls_port = free_port(), free_port()
    conf = deploy_config(tmp_path, port, tls_port)
    make_test_ca(tmp_path / "certs")
    passwd, acl = tmp_path / "auth" / "passwd", tmp_path / "auth" / "acl"
    out = tmp_path / "provisioned"
    passwords = {}
    for name in ("ingest", "api"):
        provision_service(name, out, passwd_file=passwd)
        passwords[name] = (out / f"{name}.mqtt-password").read_text().strip()
    for store, device in (("store-a", "box-1"), ("store-b", "box-2")):
        result = provision_device(store, device, out, passwd_file=passwd, acl_file=acl)
        passwords[result.username] = result.password
    broker = DeployedBroker(port, tls_port, tmp_path, passwords)
    broker.proc = start(tmp_path, conf, [port, tls_port])
    yield broker
    broker.stop()


@dataclass
class Client:
    """A blocking MQTT 5 client: waits for each acknowledgement and returns its reason code."""

    paho: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acks: dict[int, ReasonCode | list[ReasonCode]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _ack(self, mid: int, code: ReasonCode | list[ReasonCode]) -> None:
        with self.cond:
            self.acks[mid] = code
            self.cond.notify_all()

    def _wait(self, mid: int) -> ReasonCode | list[ReasonCode]:
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.acks, 5), "no acknowledgement"
            return self.acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.paho.publish(topic, payload, qos=1)
        code = self._wait(info.mid)
        assert isinstance(code, ReasonCode)
        return code.value

    def subscribe(self, topic: str) -> int:
        _rc, mid = self.paho.subscribe(topic, qos=1)
        codes = self._wait(mid)
        assert isinstance(codes, list)
        return codes[0].value

    def wait_message(self, topic: str, timeout: float = 3.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: any(t == topic for t, _ in self.received), timeout)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def connect(
    port: int, username: str | None, password: str | None, *, tls_ca: Path | None = None
) -> tuple[Client | None, int]:
    """Returns (client, 0) when accepted, else (None, CONNACK reason code)."""
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client = Client(paho)
    if username is not None:
        paho.username_pw_set(username, password)
    if tls_ca is not None:
        paho.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)
    connected = threading.Event()
    result: dict[str, int] = {}

    def on_connect(_c, _u, _f, reason: ReasonCode, _p) -> None:
        result["rc"] = reason.value
        connected.set()

    def on_message(_c, _u, msg: mqtt.MQTTMessage) -> None:
        with client.cond:
            client.received.append((msg.topic, msg.payload))
            client.cond.notify_all()

    paho.on_connect = on_connect
    paho.on_message = on_message
    paho.on_publish = lambda _c, _u, mid, reason, _p: client._ack(mid, reason)
    paho.on_subscribe = lambda _c, _u, mid, reasons, _p: client._ack(mid, reasons)
    paho.connect("127.0.0.1", port)
    paho.loop_start()
    if not connected.wait(5):
        paho.loop_stop()
        return None, -1
    if result["rc"] != 0:
        paho.loop_stop()
        return None, result["rc"]
    return client, 0


def test_only_provisioned_credentials_connect(deployed: DeployedBroker) -> None:
    assert connect(deployed.port, None, None)[1] != 0
    assert connect(deployed.port, "box-1@store-a", "wrong")[1] != 0
    assert connect(deployed.port, "box-1@store-b", deployed.passwords["box-1@store-a"])[1] != 0
    client, rc = connect(deployed.port, "box-1@store-a", deployed.passwords["box-1@store-a"])
    assert rc == 0 and client is not None
    client.close()


def test_device_acls_confine_each_device(deployed: DeployedBroker) -> None:
    ingest, _ = connect(deployed.port, "ingest", deployed.passwords["ingest"])
    api, _ = connect(deployed.port, "api", deployed.passwords["api"])
    box1, _ = connect(deployed.port, "box-1@store-a", deployed.passwords["box-1@store-a"])
    box2, _ = connect(deployed.port, "box-2@store-b", deployed.passwords["box-2@store-b"])
    assert ingest and api and box1 and box2
    try:
        # Ingest reads every device's events through the shared subscription.
        assert ingest.subscribe(topics.shared(topics.EVENTS_ALL)) < 0x80
        assert ingest.subscribe(topics.STATUS_ALL) < 0x80
        own = topics.events("store-a", "box-1")
        assert box1.publish(own) == 0
        assert box1.publish(topics.status("store-a", "box-1")) == 0
        assert ingest.wait_message(own)
        assert box2.publish(topics.events("store-b", "box-2")) == 0
        assert ingest.wait_message(topics.events("store-b", "box-2"))

        # A device cannot publish as another device, another store, or on a command topic.
        for topic in (
            topics.events("store-b", "box-2"),
            topics.events("store-a", "box-2"),
            topics.events("store-b", "box-1"),
            topics.cmd("store-a", "box-1"),
            topics.pos("store-a", "offers"),
        ):
            assert box1.publish(topic) == NOT_AUTHORIZED, topic
        time.sleep(0.2)
        assert not any(t == topics.events("store-a", "box-2") for t, _ in ingest.received)

        # A device reads only its own command topic. Mosquitto's ACL file grants any
        # SUBSCRIBE and enforces `read` per message on delivery, so prove what arrives.
        for topic in (
            topics.cmd("store-b", "box-2"),
            topics.EVENTS_ALL,
            topics.shared(topics.EVENTS_ALL),
            "#",
            topics.cmd("store-a", "box-1"),
        ):
            assert box1.subscribe(topic) in (0, 1, NOT_AUTHORIZED), topic
        assert box2.publish(topics.events("store-b", "box-2"), b"other-store") == 0
        assert api.publish(topics.cmd("store-b", "box-2"), b"not-for-box-1") == 0
        assert api.publish(topics.cmd("store-a", "box-1"), b'{"type":"optout_list"}') == 0
        assert box1.wait_message(topics.cmd("store-a", "box-1"))
        time.sleep(0.3)
        # (overlapping subscriptions may deliver the one allowed message more than once)
        assert {t for t, _ in box1.received} == {topics.cmd("store-a", "box-1")}

        # Services: ingest cannot pose as a device.
        assert ingest.publish(topics.events("store-a", "box-1")) == NOT_AUTHORIZED
    finally:
        for c in (ingest, api, box1, box2):
            c.close()


def test_the_deployed_acl_lets_ingest_relay_pos_pushes_to_the_api(
    deployed: DeployedBroker,
) -> None:
    # docker-compose runs ingest and the API as separate processes: a member alert scoring
    # raises while ingesting travels ingest -> broker -> API -> the till's SSE stream
    # (tests/test_push_across_processes.py runs that path on an open broker). Here the
    # deployed ACL must carry it: ingest writes POS topics, the API reads them (the topic
    # filter the API's relay subscribes to, `push.POS_ALL`), and a device reads none.
    from storelens.cloud.push import POS_ALL

    ingest, _ = connect(deployed.port, "ingest", deployed.passwords["ingest"])
    api, _ = connect(deployed.port, "api", deployed.passwords["api"])
    box1, _ = connect(deployed.port, "box-1@store-a", deployed.passwords["box-1@store-a"])
    assert ingest and api and box1
    try:
        assert api.subscribe(POS_ALL) < 0x80
        box1.subscribe(POS_ALL)
        alert = topics.pos("store-a", "member_alert")
        assert ingest.publish(alert, b'{"kind":"member_alert"}') == 0
        assert api.wait_message(alert)
        time.sleep(0.3)
        assert box1.received == []
    finally:
        for c in (ingest, api, box1):
            c.close()


def test_tls_listener_with_test_ca(deployed: DeployedBroker) -> None:
    assert deployed.tls_port is not None
    ca = deployed.root / "certs" / "ca.crt"
    box1, rc = connect(
        deployed.tls_port, "box-1@store-a", deployed.passwords["box-1@store-a"], tls_ca=ca
    )
    assert rc == 0 and box1 is not None
    assert box1.publish(topics.events("store-a", "box-1")) < 0x80  # 0x10: no subscribers yet
    assert box1.publish(topics.events("store-b", "box-2")) == NOT_AUTHORIZED
    box1.close()

    # A client that trusts another CA refuses the server's certificate.
    other = deployed.root / "other-ca"
    other.mkdir()
    make_test_ca(other)
    with pytest.raises(ssl.SSLError):
        connect(deployed.tls_port, "box-1@store-a", "x", tls_ca=other / "ca.crt")


def test_device_config_from_provisioning_loads(tmp_path: Path) -> None:
    from storelens.edge.config import load_config

    result = provision_device(
        "store-9",
        "box-7",
        tmp_path,
        mqtt_port=8883,
        ca_file=tmp_path / "ca.crt",
        cameras=[("door", "rtsp://10.0.0.5/1"), ("aisle", "1")],
    )
    cfg = load_config(result.config_file)
    assert cfg.mqtt.username == "box-7@store-9"
    assert cfg.mqtt.password_file == result.password_file
    assert cfg.mqtt.tls is not None and cfg.mqtt.port == 8883
    assert [c.id for c in cfg.cameras] == ["door", "aisle"]
    assert result.password not in result.config_file.read_text()
    assert result.password_file.stat().st_mode & 0o077 == 0


def test_reprovisioning_rotates_instead_of_duplicating(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    shutil.copy(DEPLOY / "acl", acl)
    first = provision_device("s1", "d1", tmp_path / "o", passwd_file=passwd, acl_file=acl)
    provision_device("s1", "d2", tmp_path / "o", passwd_file=passwd, acl_file=acl)
    second = provision_device("s1", "d1", tmp_path / "o", passwd_file=passwd, acl_file=acl)
    assert first.password != second.password
    lines = passwd.read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["d2@s1", "d1@s1"]
    text = acl.read_text()
    assert text.count("user d1@s1") == 1 and text.count("user d2@s1") == 1
    assert text.count("user ingest") == 1


@pytest.mark.parametrize(("store", "device"), [("a b", "d"), ("s", "x/y"), ("s", "+"), ("", "d")])
def test_bad_identifiers_are_refused(tmp_path: Path, store: str, device: str) -> None:
    from storelens.cli.provision import ProvisionError

    with pytest.raises(ProvisionError):
        provision_device(store, device, tmp_path)
    assert not any(tmp_path.iterdir())


def test_provisioning_registers_the_device_in_the_cloud(tmp_path: Path, db_url: str) -> None:
    from storelens.cloud.db import connect
    from storelens.cloud.ingest.device_registry import registered_devices

    provision_device("store-5", "box-3", tmp_path / "o", db_url=db_url)
    db = connect(db_url)
    try:
        assert ("store-5", "box-3") in registered_devices(db)
    finally:
        db.close()
