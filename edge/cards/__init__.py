"""Member card readers: drivers behind one interface, parsers, pseudonyms at the boundary."""

from __future__ import annotations

from collections.abc import Callable

from storelens.edge.cards.formats import CardFormatError, parse_card
from storelens.edge.cards.reader import CardReader, ReaderUnavailable, Swipe, SwipeHandler
from storelens.edge.config import (
    PcscReader,
    ReaderConfig,
    SerialReader,
    StdinReader,
    TcpReader,
    WedgeReader,
)
from storelens.pseudonym import PseudonymKey


def build_reader(
    cfg: ReaderConfig,
    key: PseudonymKey,
    on_swipe: SwipeHandler,
    staff_badge: Callable[[str], bool] | None = None,
) -> CardReader:
    """The driver for one configured reader (not started); ``staff_badge`` tells staff
    badges by their raw number (at the reader, before the number becomes a pseudonym)."""
    common = {
        "fmt": cfg.format, "dedupe_s": cfg.dedupe_s, "retry_s": cfg.retry_s,
        "staff_badge": staff_badge,
    }  # fmt: skip
    if isinstance(cfg, TcpReader):
        from storelens.edge.cards.tcp import TcpCardReader

        return TcpCardReader(
            cfg.id, key, on_swipe, host=cfg.host, port=cfg.port, mode=cfg.mode, **common
        )
    if isinstance(cfg, SerialReader):
        from storelens.edge.cards.serial_port import SerialCardReader

        return SerialCardReader(
            cfg.id, key, on_swipe, device=cfg.device, baudrate=cfg.baudrate, **common
        )
    if isinstance(cfg, WedgeReader):
        from storelens.edge.cards.keyboard_wedge import WedgeCardReader

        return WedgeCardReader(cfg.id, key, on_swipe, device=cfg.device, grab=cfg.grab, **common)
    if isinstance(cfg, PcscReader):
        from storelens.edge.cards.pcsc import PcscCardReader

        return PcscCardReader(cfg.id, key, on_swipe, reader_name=cfg.reader_name, **common)
    if isinstance(cfg, StdinReader):
        from storelens.edge.cards.stdin import StdinCardReader

        return StdinCardReader(cfg.id, key, on_swipe, **common)
    raise TypeError(f"unknown reader type {type(cfg).__name__}")


__all__ = [
    "CardFormatError",
    "CardReader",
    "ReaderUnavailable",
    "Swipe",
    "SwipeHandler",
    "build_reader",
    "parse_card",
]
