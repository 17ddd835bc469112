"""The one interface every card reader driver implements.

A driver only turns its transport into text reads (`_serve` calls `_accept(raw)`); this base
class does the rest at the reader boundary: parse the card number, turn it into a keyed
pseudonym at once, drop repeated reads, and report swipes. The raw number lives only in local
variables here; it is never logged, stored or passed on.

Status: a driver that cannot open its device (USB unplugged, port busy) is marked offline with
the error and retried every ``retry_s``; one failing reader never stops the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from storelens.contract.events import ReaderStatus
from storelens.edge.cards.dedupe import SwipeDeduper
from storelens.edge.cards.formats import CardFormat, CardFormatError, parse_card
from storelens.pseudonym import PseudonymError, PseudonymKey

log = logging.getLogger(__name__)
MAX_READ_CHARS = 512  # longer "reads" are line noise or abuse; they are discarded


@dataclass(frozen=True)
class Swipe:
    """A card read, already pseudonymized."""

    reader: str
    member: str
    key_id: str
    at: float  # wall-clock seconds (time.time())
    staff: bool = False  # the card is a staff badge (decided on the raw number, here)


SwipeHandler = Callable[[Swipe], None]


class ReaderUnavailable(RuntimeError):
    """The reader's device cannot be used right now; the driver will retry."""


class CardReader(threading.Thread):
    """Base of all drivers: a daemon thread with retry, status, parsing and de-duplication."""

    def __init__(
        self,
        reader_id: str,
        key: PseudonymKey,
        on_swipe: SwipeHandler,
        *,
        fmt: CardFormat = "auto",
        dedupe_s: float = 3.0,
        retry_s: float = 2.0,
        staff_badge: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(name=f"reader-{reader_id}", daemon=True)
        self.reader_id = reader_id
        self.fmt: CardFormat = fmt
        self.retry_s = retry_s
        self._key = key
        self._on_swipe = on_swipe
        self._staff_badge = staff_badge
        self._dedupe = SwipeDeduper(dedupe_s)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._online = False
        self._error: str | None = "not started"
        self.swipes = 0
        self.unreadable = 0

    # -- for drivers ---------------------------------------------------------------------
    def _serve(self) -> None:
        """Open the device and call `_accept` per read until `stopping`; raise to retry."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _set_online(self, online: bool, error: str | None = None) -> None:
        with self._lock:
            changed = online != self._online
            self._online, self._error = online, error
        if changed:
            if online:
                log.info("card reader %s online", self.reader_id)
            elif self._stopping.is_set():
                log.info("card reader %s stopped", self.reader_id)
            else:
                log.warning("card reader %s offline: %s", self.reader_id, error)

    def _accept(self, raw: str) -> None:
        if len(raw) > MAX_READ_CHARS:
            self.unreadable += 1
            log.warning(
                "reader %s: read longer than %d chars ignored", self.reader_id, MAX_READ_CHARS
            )
            return
        if not raw.strip():
            return
        try:
            number = parse_card(raw, self.fmt)
            token = self._key.token(number)
        except (CardFormatError, PseudonymError) as exc:
            self.unreadable += 1
            log.warning("reader %s: unreadable card (%s)", self.reader_id, exc)
            return
        self._emit(token, self._is_staff(number))

    def _accept_number(self, number: str) -> None:
        """For drivers that read a card number directly (PC/SC UIDs): no text format."""
        try:
            token = self._key.token(number)
        except PseudonymError as exc:
            self.unreadable += 1
            log.warning("reader %s: unusable card id (%s)", self.reader_id, exc)
            return
        self._emit(token, self._is_staff(number))

    def _is_staff(self, number: str) -> bool:
        return bool(self._staff_badge and self._staff_badge(number))

    def _emit(self, token: str, staff: bool = False) -> None:
        if self._dedupe.is_repeat(token):
            return
        self.swipes += 1
        try:
            self._on_swipe(Swipe(self.reader_id, token, self._key.key_id, time.time(), staff))
        except Exception:  # a consumer bug must not kill the reader thread
            log.exception("reader %s: swipe handler failed", self.reader_id)

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._serve()
                if not self._stopping.is_set():
                    self._set_online(False, "device closed")
            except Exception as exc:  # any driver failure means: offline, retry later
                self._set_online(False, _describe(exc))
            self._stopping.wait(self.retry_s)
        self._set_online(False, "stopped")

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._interrupt()
        if self.is_alive():
            self.join(timeout)

    def _interrupt(self) -> None:
        """Drivers with blocking calls that ignore `stopping` override this to unblock them."""

    def status(self) -> ReaderStatus:
        with self._lock:
            return ReaderStatus(reader=self.reader_id, online=self._online, error=self._error)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
