"""A private MQTT broker on a free loopback port, for the demo and the load bench.

Mosquitto first, started from its binary with a throwaway config: the cloud's ingest workers
speak MQTT 5 with shared subscriptions and persistent sessions. Without Mosquitto the demo
falls back to amqtt inside the process (`storelens.tools.brokers.embedded`, MQTT 3.1.1, one ingest
worker); `open_broker` picks, and each broker says which protocol the ingest must speak.
Nothing is installed or left running: the broker belongs to the caller and stops with it.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal, Protocol


class BrokerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SBIN = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in _SBIN if Path(p).exists()), None)
    if found is None:
        raise BrokerUnavailable(
            "needs the Mosquitto broker binary (Debian/Ubuntu: apt install mosquitto; "
            "macOS: brew install mosquitto); it is only run privately, not as a service"
        )
    return found


class LocalBroker:
    """``with LocalBroker(workdir) as broker: ...``; ``stop()`` then ``start()`` is a restart."""

    protocol = "5"  # what `Settings.mqtt_protocol` must be for ingest workers on this broker
    name = "Mosquitto (MQTT 5)"

    def __init__(
        self, workdir: Path, port: int | None = None, *, persistence: bool = False
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.persistence = persistence
        self.proc: subprocess.Popen | None = None
        self.binary = mosquitto_binary()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",  # loopback only, private to this process tree
            # Started by root, Mosquitto would switch to the `mosquitto` user, who cannot
            # write the persistence file into our directory.
            f"user {getpass.getuser()}",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        else:
            lines.append("persistence false")
        conf.write_text("\n".join(lines) + "\n")
        log = (self.workdir / "mosquitto.log").open("ab")
        # Own session: a Ctrl-C in the terminal reaches the owner, which stops the broker
        # last, after the clients have drained; not the broker first.
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        tail = (self.workdir / "mosquitto.log").read_text()[-2000:]
        raise BrokerUnavailable(f"mosquitto did not start on port {self.port}:\n{tail}")

    def wait_subscribed(self, client_id: str, topic_filter: str, timeout: float = 30.0) -> None:
        """Block until the broker has logged ``client_id`` subscribing to ``topic_filter``."""
        log = self.workdir / "mosquitto.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in log.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[1] == client_id and parts[-1] == topic_filter:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{client_id} did not subscribe to {topic_filter}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrivateBroker(Protocol):
    """What the demo needs of either broker."""

    protocol: str
    name: str
    port: int

    @property
    def host(self) -> str: ...

    def start(self, timeout: float = 10.0) -> None: ...

    def stop(self) -> None: ...


BrokerKind = Literal["auto", "mosquitto", "amqtt"]


def open_broker(kind: BrokerKind, workdir: Path) -> PrivateBroker:
    """The broker to start (not started yet): ``auto`` = Mosquitto when its binary is
    installed, else the embedded amqtt."""
    if kind not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"unknown broker {kind!r}: auto, mosquitto or amqtt")
    if kind != "amqtt":
        try:
            return LocalBroker(workdir)
        except BrokerUnavailable:
            if kind == "mosquitto":
                raise
    try:
        from storelens.tools.brokers.embedded import EmbeddedBroker
    except ImportError as exc:
        raise BrokerUnavailable(
            f"needs an MQTT broker: install Mosquitto, or amqtt (pip install amqtt): {exc}"
        ) from None
    return EmbeddedBroker(workdir)
