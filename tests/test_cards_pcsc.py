"""PC/SC readers end to end: a private pcscd with vsmartcard's virtual reader driver (vpcd)
on a free port, and a virtual contactless card, written here, that answers the PC/SC "Get
Data: UID" pseudo-APDU the way a PC/SC 2.01 reader does for the card on it.

Skipped where pyscard, pcscd or vpcd are missing (`.ci/run` installs them), or where another
pcscd already runs (pcscd has one fixed socket per machine).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_for

from storelens.edge.cards import Swipe, build_reader
from storelens.edge.config import PcscReader
from storelens.pseudonym import PseudonymKey

VPCD = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PID_FILE = Path("/run/pcscd/pcscd.pid")
READER = "Storelens Test PCD"  # vpcd names its two slots "<name> 00 00" and "<name> 00 01"
KEY = PseudonymKey("k1", b"k" * 32)
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # a contactless storage card
OK, NOT_SUPPORTED = b"\x90\x00", b"\x6d\x00"


def _pcscd_running() -> bool:
    try:
        os.kill(int(PID_FILE.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def vpcd_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    pytest.importorskip("smartcard", reason="pyscard is not installed (the pcsc extra)")
    if shutil.which("pcscd") is None or not VPCD.exists():
        pytest.skip("pcscd or vsmartcard-vpcd is not installed")
    if _pcscd_running():
        pytest.skip("a pcscd already runs on this machine")
    from smartcard.System import readers

    port = free_port()
    conf = tmp_path_factory.mktemp("pcsc")
    (conf / "vpcd").write_text(
        f'FRIENDLYNAME "{READER}"\nDEVICENAME /dev/null:0x{port:X}\n'
        f"LIBPATH {VPCD}\nCHANNELID 0x{port:X}\n"
    )
    log = (conf / "pcscd.log").open("w")
    proc = subprocess.Popen(
        ["pcscd", "--foreground", "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )

    def ours() -> bool:
        with contextlib.suppress(Exception):  # not up yet
            return any(str(r).startswith(READER) for r in readers())
        return False

    try:
        wait_for(ours, timeout=15)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class VirtualCard:
    """A card on the reader while connected to vpcd (vsmartcard's protocol: 2-byte big-endian
    length, then a one-byte control code or a command APDU)."""

    def __init__(self, port: int, uid: bytes, *, answer: bytes = OK) -> None:
        self.uid, self.answer = uid, answer
        self.sock = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(data)) + data)

    def _serve(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            while True:
                msg = self._recv(struct.unpack(">H", self._recv(2))[0])
                if len(msg) == 1:  # 0 off, 1 on, 2 reset: no answer; 4: the ATR
                    if msg == b"\x04":
                        self._send(ATR)
                    continue
                if msg[:2] == b"\xff\xca" and self.answer == OK:
                    self._send(self.uid + OK)
                else:
                    self._send(NOT_SUPPORTED)

    def __enter__(self) -> VirtualCard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _reader(name: str, put, dedupe_s: float = 0.0):
    cfg = PcscReader(type="pcsc", id="door", reader_name=name, dedupe_s=dedupe_s, retry_s=0.2)
    return build_reader(cfg, KEY, put)


def test_pcsc_reader_reads_each_tap_once_as_a_pseudonym(
    vpcd_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    swipes: queue.Queue[Swipe] = queue.Queue()
    reader = _reader(f"{READER} 00 00", swipes.put)
    reader.start()
    try:
        wait_for(lambda: reader.status().online, timeout=10)
        with VirtualCard(vpcd_port, bytes.fromhex("04A1B2C3")):
            first = swipes.get(timeout=10)
            assert first.member == KEY.token("04A1B2C3")
            assert (first.reader, first.key_id) == ("door", "k1")
            time.sleep(1.0)  # resting on the reader: several polls, one swipe
            assert swipes.empty()
        with VirtualCard(vpcd_port, bytes.fromhex("04D5E6F7A8B9C0")):
            assert swipes.get(timeout=10).member == KEY.token("04D5E6F7A8B9C0")
        with VirtualCard(vpcd_port, bytes.fromhex("04A1B2C3")):  # the first card, tapped again
            assert swipes.get(timeout=10).member == first.member
    finally:
        reader.stop()
    assert reader.swipes == 3
    for uid in ("04A1B2C3", "04D5E6F7A8B9C0"):
        assert uid not in caplog.text.upper()  # the raw number is never logged


def test_pcsc_card_without_a_uid_is_no_swipe(vpcd_port: int) -> None:
    swipes: queue.Queue[Swipe] = queue.Queue()
    reader = _reader(f"{READER} 00 00", swipes.put)
    reader.start()
    try:
        wait_for(lambda: reader.status().online, timeout=10)
        with VirtualCard(vpcd_port, b"", answer=NOT_SUPPORTED):
            time.sleep(1.0)
            assert swipes.empty()
            assert reader.status().online  # a card it cannot read does not take it down
    finally:
        reader.stop()


def test_pcsc_missing_reader_is_offline_with_the_reason(vpcd_port: int) -> None:
    reader = _reader("No Such Reader", lambda swipe: None)
    reader.start()
    try:
        wait_for(lambda: "no PC/SC reader matching" in (reader.status().error or ""), timeout=5)
        assert not reader.status().online
    finally:
        reader.stop()
