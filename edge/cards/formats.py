"""Card number formats as readers deliver them: plain digits, magstripe track 2, Wiegand-26.

Error messages never contain the input: a malformed read may still hold a real card number.
"""

from __future__ import annotations

import re
from typing import Literal

CardFormat = Literal["digits", "track2", "wiegand26", "auto"]

_DIGITS = re.compile(r"^[0-9][0-9 \-]*$")
# ISO/IEC 7813 track 2: start sentinel ';', PAN up to 19 digits, optional '=' and
# expiry/service/discretionary data, end sentinel '?', then an optional LRC character.
_TRACK2 = re.compile(r"^;(?P<pan>[0-9]{1,19})(?:=[0-9=]*)?\?.?$")
_BITS26 = re.compile(r"^[01]{26}$")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]{1,7}$")
MIN_DIGITS = 4
MAX_DIGITS = 32


class CardFormatError(ValueError):
    """A read that is not a card number in the expected format (message holds no card data)."""


def parse_digits(raw: str) -> str:
    text = raw.strip()
    if not _DIGITS.match(text):
        raise CardFormatError("digits: contains characters other than digits, spaces or dashes")
    number = text.replace(" ", "").replace("-", "")
    if not MIN_DIGITS <= len(number) <= MAX_DIGITS:
        raise CardFormatError(f"digits: needs {MIN_DIGITS}-{MAX_DIGITS} digits, got {len(number)}")
    return number


def parse_track2(raw: str) -> str:
    """The primary account number of a track 2 read, e.g. ``;6012345678901234=2912101?``.

    A combined track 1 + track 2 read (``%B...^...?;...?``) is accepted: track 2 is used.
    """
    text = raw.strip()
    if text.startswith("%"):
        start = text.find(";")
        if start < 0:
            raise CardFormatError("track2: a track 1 read without track 2")
        text = text[start:]
    if text in {"E", ";E?", "%E?", "+E?"}:
        raise CardFormatError("track2: the reader reported a read error")
    if not text.startswith(";"):
        raise CardFormatError("track2: missing start sentinel ';'")
    if "?" not in text:
        raise CardFormatError("track2: missing end sentinel '?'")
    m = _TRACK2.match(text)
    if m is None:
        raise CardFormatError("track2: not a valid track 2 layout")
    pan = m.group("pan")
    if len(pan) < MIN_DIGITS:
        raise CardFormatError(f"track2: account number shorter than {MIN_DIGITS} digits")
    return pan


def parse_wiegand26(raw: str) -> str:
    """Facility and card number of a Wiegand-26 frame as ``FFFCCCCC`` (zero-padded decimal).

    Input is the frame as 26 ``0``/``1`` characters or as hex (``0x...``), as Wiegand-to-serial
    converters print it. Layout: even parity over bits 1-12, 8-bit facility, 16-bit card,
    odd parity over bits 13-24.
    """
    text = raw.strip()
    if _BITS26.match(text):
        value = int(text, 2)
    elif _HEX.match(text):
        value = int(text, 16)
        if value >= 1 << 26:
            raise CardFormatError("wiegand26: value wider than 26 bits")
    else:
        raise CardFormatError("wiegand26: expected 26 bits or 0x-prefixed hex")
    bits = f"{value:026b}"
    if bits[:13].count("1") % 2 != 0:
        raise CardFormatError("wiegand26: even parity check failed")
    if bits[13:].count("1") % 2 != 1:
        raise CardFormatError("wiegand26: odd parity check failed")
    facility = int(bits[1:9], 2)
    card = int(bits[9:25], 2)
    return f"{facility:03d}{card:05d}"


def encode_wiegand26(facility: int, card: int) -> str:
    """The 26-bit frame for a facility and card number (simulators and tests)."""
    if not (0 <= facility < 256 and 0 <= card < 65536):
        raise ValueError("facility must fit 8 bits and card 16 bits")
    body = f"{facility:08b}{card:016b}"
    even = "1" if body[:12].count("1") % 2 else "0"
    odd = "0" if body[12:].count("1") % 2 else "1"
    return even + body + odd


def parse_card(raw: str, fmt: CardFormat = "auto") -> str:
    """The card number in ``raw``; ``auto`` recognises the format by its shape."""
    if fmt == "digits":
        return parse_digits(raw)
    if fmt == "track2":
        return parse_track2(raw)
    if fmt == "wiegand26":
        return parse_wiegand26(raw)
    text = raw.strip()
    if not text:
        raise CardFormatError("empty read")
    if text[0] in ";%+" or text == "E":
        return parse_track2(text)
    # 26 binary digits are read as a Wiegand frame; configure `digits` for such card numbers.
    if _BITS26.match(text) or _HEX.match(text):
        return parse_wiegand26(text)
    return parse_digits(text)
