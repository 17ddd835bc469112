"""Card reads typed or piped on standard input, one per line (demos and manual tests)."""

from __future__ import annotations

import select
import sys
from typing import TextIO

from storelens.edge.cards.reader import CardReader

POLL_S = 0.5


class StdinCardReader(CardReader):
    def __init__(self, *args, stream: TextIO | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stream = stream or sys.stdin

    def _serve(self) -> None:
        self._set_online(True)
        while not self.stopping:
            ready, _, _ = select.select([self._stream], [], [], POLL_S)
            if not ready:
                continue
            line = self._stream.readline()
            if not line:  # end of input: nothing more will come, stay offline
                self._set_online(False, "end of input")
                self._stopping.wait()
                return
            self._accept(line)
