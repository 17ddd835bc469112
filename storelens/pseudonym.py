"""Keyed pseudonyms for member card numbers, shared by devices and the cloud.

A card number becomes ``HMAC-SHA256(key, normalized number)`` in hex. The device and the cloud
hold the same key (identified by ``key_id`` so keys can rotate); the raw number is never
stored, logged or sent. Without the key a token cannot be reversed or recomputed from a
guessed number.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

_SEPARATORS = re.compile(r"[\s\-_.:]")
_CARD = re.compile(r"^[0-9A-Z]{4,32}$")
MIN_KEY_BYTES = 16


class PseudonymError(ValueError):
    pass


def normalize_card(number: str) -> str:
    """Canonical form: separators removed, upper case, leading zeros kept (they are data)."""
    norm = _SEPARATORS.sub("", number).upper()
    if not _CARD.match(norm):
        raise PseudonymError("card number must be 4-32 letters or digits")
    return norm


@dataclass(frozen=True)
class PseudonymKey:
    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise PseudonymError(f"key {self.key_id!r} is shorter than {MIN_KEY_BYTES} bytes")

    def token(self, card_number: str) -> str:
        return hmac.new(
            self.secret, normalize_card(card_number).encode(), hashlib.sha256
        ).hexdigest()

    def __repr__(self) -> str:  # never print the secret
        return f"PseudonymKey(key_id={self.key_id!r})"


def load_key(
    key_id: str, *, path: str | Path | None = None, env: str | None = None
) -> PseudonymKey:
    """Read a key from a file (raw bytes, or hex text) or an environment variable (hex)."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise PseudonymError(f"key file {p} does not exist")
        data = p.read_bytes().strip()
        try:
            secret = bytes.fromhex(data.decode())
        except (UnicodeDecodeError, ValueError):
            secret = data
        return PseudonymKey(key_id, secret)
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise PseudonymError(f"environment variable {env} is not set")
        try:
            return PseudonymKey(key_id, bytes.fromhex(value.strip()))
        except ValueError:
            raise PseudonymError(f"environment variable {env} is not hex") from None
    raise PseudonymError("a key needs a file or an environment variable")


def generate_key_file(path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(os.urandom(32).hex() + "\n")
    p.chmod(0o600)
    return p
