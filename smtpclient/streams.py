"""A ``Transport`` for objects that behave like sockets but are not ``socket.socket``.

``smtpclient.compat`` takes whatever ``_get_socket`` returns, as smtplib
does: test suites hand it mock sockets (CPython's ``test.mock_socket``, whose
``fileno()`` is 0) and proxy libraries hand it their own socket classes.
``Transport`` polls descriptors and sets kernel timeouts, which such objects
do not support; ``StreamTransport`` uses only ``settimeout``, ``sendall``,
``recv`` and ``close``, each blocking call bounded by what is left of its
deadline, and puts the object's own timeout back afterwards.
``transport_for`` picks the right one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from smtpclient.errors import ServerDisconnected
from smtpclient.protocol.state import Stage
from smtpclient.timeouts import Deadline
from smtpclient.tls import TLSInfo, tls_info
from smtpclient.transport import RECV_SIZE, Transport

__all__ = ["StreamTransport", "transport_for"]


def transport_for(sock: Any, host: str) -> Transport:
    """A ``Transport`` for a real socket, else a ``StreamTransport``."""
    if isinstance(sock, socket.socket):
        return Transport(sock, host)
    return StreamTransport(sock, host)


class StreamTransport(Transport):
    """``Transport`` on a socket-like object: no poll, no kernel timeouts.

    It cannot tell whether bytes are waiting without reading, so
    ``readable()`` is always False (unsolicited data is still found when it
    arrives together with a reply).  Its ``__init__`` does not call
    ``Transport``'s: there is no descriptor to arm.
    """

    def __init__(self, sock: Any, host: str) -> None:
        self.sock = sock
        self.host = host
        self.tls: TLSInfo | None = None
        self.peer = _peer(sock)
        self.local_address = None

    def _bounded(self, deadline: Deadline) -> Any:
        """The socket, with its timeout set to what is left of *deadline*;
        returns the timeout to restore."""
        sock = self._require()
        before = sock.gettimeout()
        sock.settimeout(deadline.remaining())
        return before

    def _restore(self, before: Any) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(before)

    def sendall(self, data: bytes | memoryview, deadline: Deadline) -> None:
        """Write all of *data* before *deadline*.

        Raises:
            ServerDisconnected, SMTPTimeoutError: the connection is closed.
        """
        sock = self._require()
        try:
            before = self._bounded(deadline)
            try:
                sock.sendall(bytes(data))
            finally:
                self._restore(before)
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)

    def recv(self, deadline: Deadline) -> bytes:
        """Read what is available (at least one byte) before *deadline*.

        Raises:
            ServerDisconnected: the server closed the connection.
            SMTPTimeoutError: nothing arrived in time.
        """
        sock = self._require()
        try:
            before = self._bounded(deadline)
            try:
                data: bytes = sock.recv(RECV_SIZE)
            finally:
                self._restore(before)
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)
        if not data:
            raise ServerDisconnected(
                "the server closed the connection", stage=deadline.stage, host=self.host
            )
        return data

    def readable(self) -> bool:
        """Always False: a socket-like object cannot be polled."""
        return False

    def read_now(self, stage: Stage) -> bytes | None:
        """Always None (nothing can be read without waiting)."""
        self._require()
        return None

    def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, deadline: Deadline
    ) -> TLSInfo:
        """Wrap the object in TLS with *context* and finish the handshake.

        Raises:
            CertificateVerifyError, TLSError, SMTPTimeoutError: the
                connection is closed.
        """
        sock = self._require()
        try:
            sock.settimeout(deadline.remaining())
            wrapped: Any = context.wrap_socket(sock, server_hostname=server_hostname)
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)
        self.sock = wrapped
        verified = context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        if isinstance(wrapped, ssl.SSLSocket):
            self.tls = tls_info(wrapped, verified=verified, server_hostname=server_hostname)
        else:
            self.tls = TLSInfo("unknown", "unknown", verified, server_hostname=server_hostname)
        return self.tls

    def close(self) -> None:
        """Close the object; safe to call any number of times."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _peer(sock: Any) -> str:
    try:
        return str(sock.getpeername())
    except (AttributeError, OSError):
        return "?"
