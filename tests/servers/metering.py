"""Server-side evidence for pool tests: how many client connections were open
at once, and which Message-IDs arrived how often.

A connection counts as open while the server's socket is ESTABLISHED: once
the client has closed its end the kernel moves it to CLOSE_WAIT at once (on
loopback the FIN is delivered during the client's close()), even if the
server thread has not noticed yet.  So sampling at every accept is exact:
it is the only moment the number can grow.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from typing import Any

from servers.scripted import Conn, Handler
from servers.smtpd import AiosmtpdServer

_TCP_ESTABLISHED = 1
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def established(sock: Any) -> bool:
    """True while the peer has not closed its end (Linux TCP_INFO state)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except (OSError, ValueError, AttributeError):
        return False
    return bool(info) and info[0] == _TCP_ESTABLISHED


def message_id(content: bytes) -> str | None:
    """The Message-ID header of stored content, if any."""
    match = _MESSAGE_ID.search(content)
    return match.group(1).decode("ascii", "replace") if match else None


class ConnectionMeter:
    """Counts connections in total and the most open at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.peak = 0
        self._socks: list[Any] = []

    def opened(self, sock: Any) -> None:
        with self.lock:
            self.total += 1
            self._socks = [s for s in self._socks if established(s)]
            self._socks.append(sock)
            self.peak = max(self.peak, len(self._socks))


class MeteredAiosmtpd(AiosmtpdServer):
    """``AiosmtpdServer`` that also measures concurrent connections (``meter``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meter = ConnectionMeter()

    def _factory(self) -> Any:
        protocol = super()._factory()
        original = protocol.connection_made
        meter = self.meter

        counted: list[bool] = []

        def connection_made(transport: Any) -> None:
            if not counted:  # aiosmtpd calls it again after STARTTLS
                counted.append(True)
                meter.opened(transport.get_extra_info("socket"))
            original(transport)

        protocol.connection_made = connection_made
        return protocol

    def message_ids(self) -> Counter[str | None]:
        return Counter(message_id(m.content) for m in self.messages)


def metered(handler: Handler, meter: ConnectionMeter) -> Handler:
    """Wrap a scripted-server handler so that *meter* sees each connection."""

    def run(conn: Conn) -> None:
        meter.opened(conn.sock)
        handler(conn)

    return run
