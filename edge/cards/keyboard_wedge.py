"""Keyboard-wedge readers (USB HID "keyboards" that type the card and press Enter).

The device is read through Linux input events (`evdev`) and grabbed, so swipes never type into
whatever program has the focus. Key events are decoded here with a US layout, which is what
wedge readers emit regardless of the host's keyboard layout.
"""

from __future__ import annotations

import select
from pathlib import Path

from storelens.edge.cards.reader import MAX_READ_CHARS, CardReader, ReaderUnavailable

POLL_S = 0.5
_SHIFT_KEYS = {"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"}
_ENTER_KEYS = {"KEY_ENTER", "KEY_KPENTER"}
# key name -> (plain, shifted); the characters card readers send
_KEYS: dict[str, tuple[str, str]] = {
    **{f"KEY_{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    **{f"KEY_KP{d}": (d, d) for d in "0123456789"},
    **{f"KEY_{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    "KEY_SEMICOLON": (";", ":"),
    "KEY_EQUAL": ("=", "+"),
    "KEY_SLASH": ("/", "?"),
    "KEY_MINUS": ("-", "_"),
    "KEY_KPMINUS": ("-", "-"),
    "KEY_SPACE": (" ", " "),
    "KEY_COMMA": (",", "<"),
    "KEY_DOT": (".", ">"),
}
KEY_DOWN, KEY_UP, KEY_HOLD = 1, 0, 2


class KeystrokeDecoder:
    """Turns (key name, value) input events into completed reads (text before Enter)."""

    def __init__(self) -> None:
        self._shift = 0
        self._chars: list[str] = []

    def feed(self, key: str, value: int) -> str | None:
        if key in _SHIFT_KEYS:
            self._shift = max(
                0, self._shift + (1 if value == KEY_DOWN else -1 if value == KEY_UP else 0)
            )
            return None
        if value != KEY_DOWN:
            return None
        if key in _ENTER_KEYS:
            text, self._chars = "".join(self._chars), []
            return text
        pair = _KEYS.get(key)
        if pair is not None and len(self._chars) <= MAX_READ_CHARS:
            self._chars.append(pair[1] if self._shift else pair[0])
        return None


class WedgeCardReader(CardReader):
    def __init__(self, *args, device: str | Path, grab: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = str(device)
        self.grab = grab

    def _serve(self) -> None:
        try:
            import evdev
        except ImportError:
            raise ReaderUnavailable("the evdev package is not installed (edge extra)") from None
        try:
            dev = evdev.InputDevice(self.device)
        except OSError as exc:
            raise ReaderUnavailable(f"cannot open {self.device}: {exc.strerror}") from None
        try:
            if self.grab:
                dev.grab()
            self._set_online(True)
            decoder = KeystrokeDecoder()
            while not self.stopping:
                ready, _, _ = select.select([dev.fd], [], [], POLL_S)
                if not ready:
                    continue
                for event in dev.read():  # OSError (ENODEV) when unplugged -> retry
                    if event.type != evdev.ecodes.EV_KEY:
                        continue
                    name = evdev.ecodes.KEY.get(event.code)
                    if isinstance(name, list):
                        name = name[0]
                    text = decoder.feed(name or "", event.value)
                    if text is not None:
                        self._accept(text)
        finally:
            dev.close()
