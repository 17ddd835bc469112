"""Card readers on a serial port (RS-232, USB CDC): one read per line or per STX/ETX frame."""

from __future__ import annotations

from pathlib import Path

from storelens.edge.cards.reader import MAX_READ_CHARS, CardReader, ReaderUnavailable

POLL_S = 0.5
# Readers end a read with CR and/or LF; RFID readers frame it with STX (0x02) ... ETX (0x03).
_TERMINATORS = b"\r\n\x02\x03"


class SerialCardReader(CardReader):
    def __init__(self, *args, device: str | Path, baudrate: int = 9600, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = str(device)
        self.baudrate = baudrate

    def _serve(self) -> None:
        import serial  # pyserial; lazy so the module imports on boxes without serial readers

        try:
            port = serial.Serial(self.device, self.baudrate, timeout=POLL_S)
        except (serial.SerialException, OSError) as exc:
            raise ReaderUnavailable(f"cannot open {self.device}: {exc}") from None
        with port:
            self._set_online(True)
            pending = bytearray()
            while not self.stopping:
                try:
                    chunk = port.read(max(1, port.in_waiting))
                except (serial.SerialException, OSError) as exc:
                    raise ReaderUnavailable(f"{self.device}: {exc}") from None
                for byte in chunk:
                    if byte in _TERMINATORS:
                        if pending:
                            self._accept(pending.decode("ascii", "replace"))
                            pending.clear()
                    elif len(pending) <= MAX_READ_CHARS:
                        pending.append(byte)
