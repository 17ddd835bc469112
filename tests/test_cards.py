"""Card parsers on valid and malformed reads, de-duplication, and readers over real transports."""

from __future__ import annotations

import logging
import os
import queue
import socket
import time
import tty

import pytest

from storelens.edge.cards import build_reader
from storelens.edge.cards.dedupe import SwipeDeduper
from storelens.edge.cards.formats import (
    CardFormatError,
    encode_wiegand26,
    parse_card,
    parse_digits,
    parse_track2,
    parse_wiegand26,
)
from storelens.edge.cards.keyboard_wedge import KEY_DOWN, KEY_UP, KeystrokeDecoder
from storelens.edge.cards.reader import Swipe
from storelens.edge.cards.serial_port import SerialCardReader
from storelens.edge.cards.tcp import TcpCardReader
from storelens.edge.config import TcpReader
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", b"0123456789abcdef0123456789abcdef")
CARD = "6012345678901234"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("1234567890", "1234567890"),
        ("  1234 5678-90\r\n", "1234567890"),
        ("0042", "0042"),
    ],
)
def test_digits_valid(raw: str, want: str) -> None:
    assert parse_digits(raw) == want


@pytest.mark.parametrize("raw", ["", "123", "12a45", "1" * 33, ";123?", "-1234"])
def test_digits_malformed(raw: str) -> None:
    with pytest.raises(CardFormatError):
        parse_digits(raw)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (f";{CARD}=29121010000?", CARD),
        (f";{CARD}?", CARD),
        (f";{CARD}=2912?X", CARD),  # LRC character after the end sentinel
        (f"%B{CARD}^DOE/JANE^2912101?;{CARD}=2912101?", CARD),
    ],
)
def test_track2_valid(raw: str, want: str) -> None:
    assert parse_track2(raw) == want


@pytest.mark.parametrize(
    "raw",
    [
        f"{CARD}=2912?",  # no start sentinel
        f";{CARD}=2912",  # no end sentinel
        ";12A4=2912?",  # letters in the PAN
        ";123?",  # too short
        ";" + "1" * 20 + "?",  # PAN longer than 19
        ";E?",  # reader error code
        "%B1234^DOE/JANE^2912?",  # track 1 only
        f";{CARD}=29?12?",
    ],
)
def test_track2_malformed(raw: str) -> None:
    with pytest.raises(CardFormatError) as err:
        parse_track2(raw)
    assert CARD not in str(err.value)  # errors never echo card data


def test_wiegand26_roundtrip_and_hex() -> None:
    bits = encode_wiegand26(123, 45678)
    assert len(bits) == 26
    assert parse_wiegand26(bits) == "12345678"
    assert parse_wiegand26(hex(int(bits, 2))) == "12345678"
    assert parse_wiegand26(encode_wiegand26(0, 1)) == "00000001"


@pytest.mark.parametrize(
    "raw",
    [
        "1" * 25,
        "0" * 27,
        "0x4000000",  # 27 bits
        "01020101010101010101010101",
        "hello",
    ],
)
def test_wiegand26_malformed(raw: str) -> None:
    with pytest.raises(CardFormatError):
        parse_wiegand26(raw)


def test_wiegand26_parity_errors() -> None:
    good = encode_wiegand26(12, 3456)
    flip_first = ("1" if good[0] == "0" else "0") + good[1:]
    flip_last = good[:-1] + ("1" if good[-1] == "0" else "0")
    flip_data = good[:5] + ("1" if good[5] == "0" else "0") + good[6:]
    for bad in (flip_first, flip_last, flip_data):
        with pytest.raises(CardFormatError, match="parity"):
            parse_wiegand26(bad)


def test_auto_format_detection() -> None:
    assert parse_card(f";{CARD}=2912?") == CARD
    assert parse_card(encode_wiegand26(1, 2)) == "00100002"
    assert parse_card("00123456") == "00123456"
    assert parse_card("1234", "digits") == "1234"
    with pytest.raises(CardFormatError):
        parse_card("   ")
    with pytest.raises(CardFormatError):
        parse_card(f";{CARD}=2912?", "digits")


def test_deduper_window() -> None:
    now = [0.0]
    d = SwipeDeduper(3.0, clock=lambda: now[0])
    assert not d.is_repeat("a")
    now[0] = 1.0
    assert d.is_repeat("a")
    assert not d.is_repeat("b")
    now[0] = 3.5
    assert not d.is_repeat("a")  # window passed: a new swipe


def test_keystroke_decoder_track2_with_shift() -> None:
    dec = KeystrokeDecoder()
    out = []

    def type_char(key: str, shift: bool = False) -> None:
        if shift:
            dec.feed("KEY_LEFTSHIFT", KEY_DOWN)
        for value in (KEY_DOWN, KEY_UP):
            r = dec.feed(key, value)
            if r is not None:
                out.append(r)
        if shift:
            dec.feed("KEY_LEFTSHIFT", KEY_UP)

    type_char("KEY_SEMICOLON")
    for d in "1234567890":
        type_char(f"KEY_{d}")
    type_char("KEY_EQUAL")
    type_char("KEY_KP2")
    type_char("KEY_SLASH", shift=True)
    type_char("KEY_ENTER")
    assert out == [";1234567890=2?"]
    assert parse_card(out[0]) == "1234567890"


def _collector() -> tuple[queue.Queue[Swipe], object]:
    q: queue.Queue[Swipe] = queue.Queue()
    return q, q.put


def test_serial_reader_through_pty(caplog: pytest.LogCaptureFixture) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    swipes, put = _collector()
    reader = SerialCardReader("till-1", KEY, put, device=path, dedupe_s=5.0, retry_s=0.2)
    caplog.set_level(logging.DEBUG)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while not reader.status().online and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.status().online
        os.write(master, f";{CARD}=2912101?\r\n".encode())
        os.write(master, f";{CARD}=2912101?\r\n".encode())  # duplicate read
        os.write(master, b";garbage\r\n")
        os.write(master, b"\x02" + b"00123456" + b"\x03")  # STX/ETX framed read
        first = swipes.get(timeout=5)
        second = swipes.get(timeout=5)
        assert first.member == KEY.token(CARD)
        assert first.key_id == "k1" and first.reader == "till-1"
        assert second.member == KEY.token("00123456")
        time.sleep(0.3)
        assert swipes.empty()  # the duplicate counted once
        assert reader.unreadable == 1
    finally:
        reader.stop()
        os.close(master)
        os.close(slave)
    assert CARD not in caplog.text  # never logged, not even when unreadable
    assert "00123456" not in caplog.text


def test_serial_reader_missing_device_reports_offline_and_recovers(tmp_path) -> None:
    link = tmp_path / "ttyCARD"
    swipes, put = _collector()
    reader = SerialCardReader("door", KEY, put, device=link, retry_s=0.1)
    reader.start()
    try:
        time.sleep(0.3)
        status = reader.status()
        assert not status.online and status.error and "cannot open" in status.error
        master, slave = os.openpty()  # the device is "plugged in"
        tty.setraw(slave)
        link.symlink_to(os.ttyname(slave))
        deadline = time.monotonic() + 5
        while not reader.status().online and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.status().online and reader.status().error is None
        os.write(master, b"99887766\n")
        assert swipes.get(timeout=5).member == KEY.token("99887766")
    finally:
        reader.stop()
    os.close(master)
    os.close(slave)


def test_tcp_reader_listen_and_build_from_config() -> None:
    cfg = TcpReader(type="tcp", id="sim", port=0, format="digits", dedupe_s=0)
    swipes, put = _collector()
    reader = build_reader(cfg, KEY, put)
    assert isinstance(reader, TcpCardReader)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while reader.bound_port is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", reader.bound_port)) as s:
            s.sendall(b"12345678\nnot-a-card\n" + b"9" * 2000 + b"\n87654321\n")
        got = [swipes.get(timeout=5).member for _ in range(2)]
        assert got == [KEY.token("12345678"), KEY.token("87654321")]
        assert reader.unreadable >= 2
    finally:
        reader.stop()
    assert not reader.status().online


def test_tcp_reader_connect_mode_retries_until_reader_listens() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    swipes, put = _collector()
    reader = TcpCardReader(
        "door", KEY, put, host="127.0.0.1", port=port, mode="connect", retry_s=0.1
    )
    reader.start()
    try:
        time.sleep(0.3)
        assert not reader.status().online  # nobody listens yet
        srv.listen()
        conn, _ = srv.accept()
        conn.sendall(b"55556666\r\n")
        assert swipes.get(timeout=5).member == KEY.token("55556666")
        conn.close()
    finally:
        reader.stop()
        srv.close()


class FakeInputDevice:
    """Stands in for evdev.InputDevice: a pipe makes it selectable, events are queued."""

    EV_KEY = 1
    KEYS = ["KEY_ENTER", "KEY_LEFTSHIFT", "KEY_SEMICOLON", "KEY_EQUAL", "KEY_SLASH"] + [
        f"KEY_{d}" for d in "0123456789"
    ]
    plugged = True
    opened: list[FakeInputDevice] = []

    def __init__(self, path: str) -> None:
        if not FakeInputDevice.plugged:
            raise OSError(2, "No such file or directory")
        self.path = path
        self.fd, self._w = os.pipe()
        self.grabbed = False
        self.pending: list = []
        FakeInputDevice.opened.append(self)

    def type_text(self, text: str) -> None:
        from types import SimpleNamespace

        names = {
            ";": "KEY_SEMICOLON",
            "=": "KEY_EQUAL",
            "?": ("KEY_SLASH", True),
            "\n": "KEY_ENTER",
        }
        for ch in text:
            key = names.get(ch, f"KEY_{ch}")
            shift = isinstance(key, tuple)
            name = key[0] if shift else key
            code = self.KEYS.index(name)
            seq = [(code, 1), (code, 0)]
            if shift:
                s = self.KEYS.index("KEY_LEFTSHIFT")
                seq = [(s, 1), *seq, (s, 0)]
            self.pending += [SimpleNamespace(type=self.EV_KEY, code=c, value=v) for c, v in seq]
        os.write(self._w, b"x")

    def unplug(self) -> None:
        FakeInputDevice.plugged = False
        os.write(self._w, b"x")

    def grab(self) -> None:
        self.grabbed = True

    def read(self):
        os.read(self.fd, 1)
        if not FakeInputDevice.plugged:
            raise OSError(19, "No such device")
        events, self.pending = self.pending, []
        return events

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._w)


def test_wedge_reader_grabs_decodes_and_survives_unplug(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from types import SimpleNamespace

    from storelens.edge.cards.keyboard_wedge import WedgeCardReader

    fake = SimpleNamespace(
        InputDevice=FakeInputDevice,
        ecodes=SimpleNamespace(
            EV_KEY=FakeInputDevice.EV_KEY, KEY=dict(enumerate(FakeInputDevice.KEYS))
        ),
    )
    monkeypatch.setitem(sys.modules, "evdev", fake)
    FakeInputDevice.plugged, FakeInputDevice.opened = True, []
    swipes, put = _collector()
    reader = WedgeCardReader("wedge", KEY, put, device="/dev/input/by-id/reader", retry_s=0.1)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while not reader.status().online and time.monotonic() < deadline:
            time.sleep(0.02)
        dev = FakeInputDevice.opened[0]
        assert dev.grabbed  # swipes never type into other programs
        dev.type_text(f";{CARD}=2912?\n")
        assert swipes.get(timeout=5).member == KEY.token(CARD)
        dev.unplug()
        deadline = time.monotonic() + 5
        while reader.status().online and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not reader.status().online  # reported, and retried
        FakeInputDevice.plugged = True
        deadline = time.monotonic() + 5
        while len(FakeInputDevice.opened) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        FakeInputDevice.opened[-1].type_text("12345678\n")
        assert swipes.get(timeout=5).member == KEY.token("12345678")
    finally:
        reader.stop()


def test_swipe_command_reaches_a_tcp_reader() -> None:
    from typer.testing import CliRunner

    from storelens.cli import app

    swipes, put = _collector()
    reader = TcpCardReader("sim", KEY, put, host="127.0.0.1", port=0)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while reader.bound_port is None and time.monotonic() < deadline:
            time.sleep(0.02)
        result = CliRunner().invoke(
            app, ["edge", "swipe", f";{CARD}=2912?", "--port", str(reader.bound_port)]
        )
        assert result.exit_code == 0, result.output
        assert swipes.get(timeout=5).member == KEY.token(CARD)
    finally:
        reader.stop()
