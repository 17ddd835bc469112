"""Card reads as text lines over TCP: network readers, serial-to-Ethernet bridges, simulators.

``listen`` mode accepts any number of clients, one read per line; ``connect`` mode dials a
reader that is itself a TCP server and reconnects when the connection drops.
"""

from __future__ import annotations

import socket
import socketserver
import threading

from storelens.edge.cards.reader import MAX_READ_CHARS, CardReader, ReaderUnavailable

POLL_S = 0.5


class TcpCardReader(CardReader):
    def __init__(self, *args, host: str, port: int, mode: str = "listen", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host, self.port, self.mode = host, port, mode
        self._server: socketserver.ThreadingTCPServer | None = None
        self.bound_port: int | None = None  # the actual port, useful with port 0

    def _serve(self) -> None:
        if self.mode == "connect":
            self._serve_client()
        else:
            self._serve_listener()

    def _serve_listener(self) -> None:
        reader = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 300  # idle clients are dropped; readers reconnect

            def handle(self) -> None:
                overlong = False
                while not reader.stopping:
                    line = self.rfile.readline(MAX_READ_CHARS + 2)
                    if not line:
                        return
                    if not line.endswith(b"\n"):
                        overlong = True  # discard up to the next newline
                        continue
                    if overlong:
                        overlong = False
                        reader.unreadable += 1
                        continue
                    reader._accept(line.decode("ascii", "replace"))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        try:
            server = socketserver.ThreadingTCPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise ReaderUnavailable(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        server.daemon_threads = True
        self._server = server
        self.bound_port = server.server_address[1]
        self._set_online(True)
        try:
            if not self.stopping:
                server.serve_forever(poll_interval=POLL_S)
        finally:
            server.server_close()
            self._server = None

    def _serve_client(self) -> None:
        try:
            conn = socket.create_connection((self.host, self.port), timeout=5)
        except OSError as exc:
            raise ReaderUnavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        with conn:
            conn.settimeout(POLL_S)
            self._set_online(True)
            pending = b""
            while not self.stopping:
                try:
                    chunk = conn.recv(1024)
                except TimeoutError:
                    continue
                if not chunk:
                    raise ReaderUnavailable("connection closed by the reader")
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._accept(line.decode("ascii", "replace"))
                if len(pending) > MAX_READ_CHARS:
                    pending = b""  # no newline in sight: line noise

    def _interrupt(self) -> None:
        server = self._server
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()
