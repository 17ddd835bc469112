"""PC/SC smart-card readers (contactless member cards): the card's UID is the card number.

Needs the optional `pcsc` extra (pyscard and a running pcscd); imported lazily so boxes
without smart-card readers do not need it.
"""

from __future__ import annotations

import contextlib

from storelens.edge.cards.reader import CardReader, ReaderUnavailable

POLL_S = 0.3
# PC/SC part 3 pseudo-APDU "Get Data: UID", answered by every PC/SC 2.01 contactless reader.
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]


class PcscCardReader(CardReader):
    def __init__(self, *args, reader_name: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reader_name = reader_name

    def _serve(self) -> None:
        try:
            from smartcard.Exceptions import CardConnectionException, NoCardException
            from smartcard.System import readers
        except ImportError:
            raise ReaderUnavailable(
                "pyscard is not installed (pip install 'storelens[pcsc]')"
            ) from None
        try:
            found = [r for r in readers() if self.reader_name is None or self.reader_name in str(r)]
        except Exception as exc:  # pcscd down raises EstablishContextException and friends
            raise ReaderUnavailable(f"PC/SC unavailable: {exc}") from None
        if not found:
            raise ReaderUnavailable(f"no PC/SC reader matching {self.reader_name!r}")
        device = found[0]
        self._set_online(True)
        present: str | None = None  # a card resting on the reader is reported once
        while not self.stopping:
            conn = device.createConnection()
            try:
                conn.connect()
                data, sw1, sw2 = conn.transmit(GET_UID)
                uid = bytes(data).hex().upper() if (sw1, sw2) == (0x90, 0x00) else None
            except NoCardException:
                uid, present = None, None
            except CardConnectionException as exc:
                if device not in readers():
                    raise ReaderUnavailable(f"reader {device} disappeared") from None
                uid = None
                if present is None:
                    self._set_online(True, f"card not readable: {exc}")
            finally:
                with contextlib.suppress(Exception):  # the card may already be gone
                    conn.disconnect()
            if uid and uid != present:
                present = uid
                self._accept_number(uid)
            self._stopping.wait(POLL_S)
