"""The blocking socket, with a deadline on every wait.

All blocking socket calls of the library are here, and every OS or TLS error
is translated into the library's errors in one place (``_translate``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from smtpclient.errors import (
    CertificateVerifyError,
    ConnectError,
    ServerDisconnected,
    SMTPClientError,
    SMTPTimeoutError,
    TLSError,
)
from smtpclient.protocol.state import Stage
from smtpclient.sockets import (
    Address,
    ack_at_once,
    format_sockaddr,
    local_ip,
    open_socket,
    peer_name,
    peer_port,
    resolve,
)
from smtpclient.timeouts import Deadline
from smtpclient.tls import TLSInfo, tls_info
from smtpclient.tlsresume import Offer, resumable, sessions

__all__ = ["Address", "Transport", "resolve"]

log = logging.getLogger(__name__)

RECV_SIZE = 65536
# Plain sockets on Linux wait in the kernel (SO_RCVTIMEO/SO_SNDTIMEO, a
# struct timeval of two native longs): one system call per read instead of
# poll() + recv().  The option is set again only when what is left of a
# deadline falls below it by more than this (seconds): a shorter kernel
# timeout than the deadline costs one extra wake-up, never a late one.
_KERNEL_TIMEOUTS = sys.platform.startswith("linux") and hasattr(socket, "MSG_DONTWAIT")
_TIMEOUT_SLACK = 0.001
_TIMEVAL = struct.Struct("@ll")


def _translate(exc: BaseException, stage: Stage, host: str) -> SMTPClientError:
    """Map an OS/TLS exception to the library's error for *stage*."""
    if isinstance(exc, SMTPClientError):
        return exc
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return SMTPTimeoutError(f"timed out at stage {stage}", stage=stage, host=host)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateVerifyError(
            f"certificate verification failed: {exc.verify_message or exc}", stage=stage, host=host
        )
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error: {exc.reason or exc}", stage=stage, host=host)
    if stage in (Stage.CONNECT, Stage.DNS):
        return ConnectError(f"could not connect: {exc}", stage=stage, host=host)
    return ServerDisconnected(f"connection lost: {exc}", stage=stage, host=host)


def _set_timeout(sock: socket.socket, option: int, seconds: float) -> float:
    """Set SO_RCVTIMEO or SO_SNDTIMEO to *seconds* (rounded up to a
    microsecond, never 0, which would mean "wait for ever"); return it."""
    whole = int(seconds)
    micro = max(math.ceil((seconds - whole) * 1_000_000), 0 if whole else 1)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    sock.setsockopt(socket.SOL_SOCKET, option, _TIMEVAL.pack(whole, micro))
    return whole + micro / 1_000_000


def _kernel_timeouts(sock: socket.socket) -> bool:
    """Make *sock* blocking with kernel timeouts, if this platform has them
    in the layout we pack (checked by reading the option back)."""
    if not _KERNEL_TIMEOUTS:
        return False
    try:
        sock.setblocking(True)
        _set_timeout(sock, socket.SO_RCVTIMEO, 1.5)
        readback = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.size)
        if readback == _TIMEVAL.pack(1, 500_000):
            return True
    except OSError:
        pass
    sock.setblocking(False)
    return False


class Transport:
    """A connected stream socket (TCP or Unix), optionally wrapped in TLS.

    Every call that can block takes a ``Deadline`` and waits no longer than
    what is left of it (the whole read or write, not each system call).  A
    plain socket on Linux blocks in the kernel with SO_RCVTIMEO/SO_SNDTIMEO
    bounded by the deadline, so a read is one system call; under TLS (and
    elsewhere) the socket is non-blocking and each wait is a poll().
    """

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock: socket.socket | None = sock
        self.host = host
        self.tls: TLSInfo | None = None
        self.peer: str = peer_name(sock)
        self.local_address: str | None = local_ip(sock)
        self._ssl = False
        self._blocking = False  # kernel timeouts (plain sockets on Linux)
        self._rcvtimeo = self._sndtimeo = math.inf  # what the options are set to
        self._readable: select.poll | None = None
        self._writable: select.poll | None = None
        # After a TLS handshake: where to keep its session once the server's
        # ticket has arrived, and whether the next write needs a quick ACK.
        # (context, server name, port, when the certificate was verified)
        self._session_for: tuple[ssl.SSLContext, str | None, int, float] | None = None
        self._session_on_read = False  # look for it after the next read
        self._ack_after_write = False
        self._arm(sock)

    def _arm(self, sock: socket.socket) -> None:
        """Choose how *sock* waits, and register it for poll().

        A plain socket on Linux blocks with kernel timeouts (set again only
        when a deadline needs a shorter one).  Otherwise it is non-blocking
        and every wait is one poll() bounded by what is left of its
        deadline; setting a Python socket timeout before each call would
        cost a system call of its own (and Python polls before each timed
        call).  poll(), not select(): select() fails on descriptors >= 1024,
        which a busy web worker reaches.
        """
        self._ssl = isinstance(sock, ssl.SSLSocket)
        self._blocking = not self._ssl and _kernel_timeouts(sock)
        self._rcvtimeo = self._sndtimeo = math.inf  # unknown: set before the first wait
        if not self._blocking:
            sock.setblocking(False)
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)

    # --- opening ----------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        per_address: float,
        deadline: Deadline,
        source_address: tuple[str, int] | None = None,
        addresses: Sequence[Address] | None = None,
    ) -> Transport:
        """Connect to *host* (a name, an IP or a Unix socket path).

        Each address is given *per_address* seconds, all of them together
        *deadline*.  Addresses are tried in order; the first that connects wins.

        Raises:
            ConnectError: no address accepted the connection.
            SMTPTimeoutError: the overall deadline passed.
        """
        if host.startswith("/"):
            return cls._connect_unix(host, deadline)
        if addresses is None:
            dns_deadline = Deadline(min(deadline.remaining(), 30.0), Stage.DNS, deadline)
            addresses = resolve(host, port, dns_deadline)
        errors: list[str] = []
        timeouts = 0
        for family, sockaddr in addresses:
            attempt = Deadline(per_address, Stage.CONNECT, deadline)
            try:
                sock = open_socket(family, sockaddr, attempt, source_address)
            except OSError as exc:
                timeouts += isinstance(exc, TimeoutError)
                errors.append(f"{format_sockaddr(sockaddr)}: {exc or type(exc).__name__}")
                log.debug("connect to %s failed: %s", format_sockaddr(sockaddr), exc)
                if deadline.expired:
                    break
                continue
            return cls(sock, host)
        summary = "; ".join(errors) or "no address"
        for same in (f"{host}:{port}: ", f"[{host}]:{port}: "):
            if len(errors) == 1 and errors[0].startswith(same):
                summary = errors[0].removeprefix(same)  # the message names it already
        if errors and timeouts == len(errors):
            raise SMTPTimeoutError(
                f"connecting to {host} port {port} timed out: {summary}",
                stage=Stage.CONNECT,
                host=host,
            )
        raise ConnectError(
            f"could not connect to {host} port {port}: {summary}",
            stage=Stage.CONNECT,
            host=host,
        )

    @classmethod
    def _connect_unix(cls, path: str, deadline: Deadline) -> Transport:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"could not connect to {path}: {exc}", host=path) from exc
        except BaseException:
            sock.close()
            raise
        return cls(sock, path)

    # --- IO --------------------------------------------------------------------

    def _require(self) -> socket.socket:
        if self.sock is None:
            raise ServerDisconnected("the connection is closed", host=self.host)
        return self.sock

    def _wait(self, poller: select.poll | None, deadline: Deadline) -> None:
        """Block until *poller* reports the socket ready, or raise TimeoutError
        when *deadline* passes first (the whole wait, not each poll)."""
        assert poller is not None
        while True:
            left = deadline.expires - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if poller.poll(left * 1000):  # milliseconds, rounded up
                return

    def sendall(self, data: bytes | memoryview, deadline: Deadline) -> None:
        """Write all of *data* before *deadline* (the whole write, not each send).

        Raises:
            ServerDisconnected, SMTPTimeoutError, TLSError: the connection is closed.
        """
        sock = self.sock
        if sock is None:
            raise ServerDisconnected("the connection is closed", host=self.host)
        if self._blocking:
            self._sendall_blocking(sock, data, deadline)
            return
        try:
            deadline.remaining()  # raises once it has passed
            try:
                sent = sock.send(data)  # usually all of it: the buffer has room
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent = 0
            if sent != len(data):
                view = memoryview(data)[sent:]
                while view:
                    try:
                        # TLS: after a "want", the same bytes are offered again.
                        view = view[sock.send(view) :]
                    except (BlockingIOError, ssl.SSLWantWriteError):
                        self._wait(self._writable, deadline)
                    except ssl.SSLWantReadError:
                        self._wait(self._readable, deadline)
            if self._ack_after_write:
                # The first command after the handshake is out; the server's
                # tickets may still be on their way (see ack_at_once).
                self._ack_after_write = False
                ack_at_once(sock)
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)

    def _sendall_blocking(
        self, sock: socket.socket, data: bytes | memoryview, deadline: Deadline
    ) -> None:
        """``sendall`` on a blocking socket: the kernel's send timeout never
        exceeds what is left of *deadline* (a send it cuts short returns the
        count sent, or raises EAGAIN when nothing was)."""
        try:
            left = deadline.expires - time.monotonic()
            if left <= 0:
                deadline.remaining()  # raises: the deadline has passed
            view = data
            while True:
                if self._sndtimeo > left + _TIMEOUT_SLACK:
                    self._sndtimeo = _set_timeout(sock, socket.SO_SNDTIMEO, left)
                try:
                    sent = sock.send(view)  # usually all of it: the buffer has room
                except BlockingIOError:  # the kernel timeout ran out first
                    sent = 0
                    self._sndtimeo = math.inf
                if sent == len(view):
                    return
                view = memoryview(view)[sent:]
                left = deadline.expires - time.monotonic()
                if left <= 0:
                    raise TimeoutError
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)

    def recv(self, deadline: Deadline) -> bytes:
        """Read what is available (at least one byte) before *deadline*.

        Raises:
            ServerDisconnected: the server closed the connection.
            SMTPTimeoutError: nothing arrived in time.
        """
        sock = self.sock
        if sock is None:
            raise ServerDisconnected("the connection is closed", host=self.host)
        try:
            if self._blocking:
                while True:
                    left = deadline.expires - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    if self._rcvtimeo > left + _TIMEOUT_SLACK:
                        self._rcvtimeo = _set_timeout(sock, socket.SO_RCVTIMEO, left)
                    try:
                        data = sock.recv(RECV_SIZE)
                        break
                    except BlockingIOError:
                        # The kernel timeout (shorter than the deadline) ran
                        # out: wait on for what is left of the deadline.
                        self._rcvtimeo = math.inf
            else:
                while True:
                    # Poll first (it also enforces the deadline): a reply is
                    # rarely there the moment we ask.
                    if not (self._ssl and sock.pending()):  # type: ignore[attr-defined]
                        self._wait(self._readable, deadline)
                    try:
                        data = sock.recv(RECV_SIZE)
                        break
                    except (BlockingIOError, ssl.SSLWantReadError):
                        continue  # woken without a whole TLS record
                    except ssl.SSLWantWriteError:
                        self._wait(self._writable, deadline)
                if self._session_on_read:
                    self._session_on_read = False
                    self._keep_session()
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)
        if not data:
            raise ServerDisconnected(
                "the server closed the connection", stage=deadline.stage, host=self.host
            )
        return data

    def readable(self) -> bool:
        """True if bytes (or EOF) are waiting to be read, without blocking."""
        sock = self.sock
        if sock is None or self._readable is None:
            return False
        if self._ssl and sock.pending():  # type: ignore[attr-defined]
            return True
        try:
            return bool(self._readable.poll(0))  # POLLHUP/POLLERR count too
        except (OSError, ValueError):
            return True  # let the next read report the problem

    def read_now(self, stage: Stage) -> bytes | None:
        """Read what has already arrived, without waiting: the bytes, or None
        when nothing that carries data is there (under TLS 1.3 a readable
        socket may hold only a session ticket or a key update).

        Raises:
            ServerDisconnected: the server closed the connection.
        """
        sock = self._require()
        try:
            # A blocking socket must not wait here: MSG_DONTWAIT.
            data = sock.recv(RECV_SIZE, socket.MSG_DONTWAIT if self._blocking else 0)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except (OSError, ValueError) as exc:
            self._fail(exc, stage)
        if not data:
            self.close()
            raise ServerDisconnected(
                "the server closed the connection", stage=stage, host=self.host
            )
        return data

    def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        deadline: Deadline,
    ) -> TLSInfo:
        """Wrap the socket in TLS and finish the handshake before *deadline*.

        Raises:
            CertificateVerifyError: the certificate did not verify.
            TLSError: any other handshake failure.
            SMTPTimeoutError: the handshake stalled.
        """
        sock = self._require()
        port = peer_port(sock)
        # Only a session made with this very context for this name, host
        # and port is offered (tlsresume); the server may still refuse it.
        offer = sessions.take(context, server_hostname, self.host, port)
        try:
            sock.settimeout(deadline.remaining())
            wrapped = context.wrap_socket(
                sock,
                server_hostname=server_hostname,
                do_handshake_on_connect=False,
                session=offer.session if offer is not None else None,
            )
            # wrap_socket detached the plain socket: the wrapper owns the fd now.
            self.sock = wrapped
            wrapped.do_handshake()
            self._arm(wrapped)
        except (OSError, ValueError) as exc:
            self._fail(exc, deadline.stage)
        # The server's tickets follow the handshake: acknowledge them at once,
        # and again after our next write (see ack_at_once).
        ack_at_once(wrapped)
        self._ack_after_write = True
        verified = context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        if verified:
            # Only sessions whose certificate was verified for this name are
            # kept (an unverified one would save nothing worth the entry).
            resumed = offer is not None and wrapped.session_reused
            verified_at = offer.verified_at if resumed and offer is not None else time.time()
            self._session_for = (context, server_hostname, port, verified_at)
            self._session_on_read = True
        self.tls = tls_info(wrapped, verified=verified, server_hostname=server_hostname)
        return self.tls

    def _keep_session(self) -> None:
        """Keep the TLS session for the next connection if it carries a
        ticket (TLS 1.3: there after the first read) or an id (TLS 1.2).
        Tried after the first read and, if there was nothing yet, at close."""
        sock, target = self.sock, self._session_for
        if not isinstance(sock, ssl.SSLSocket) or target is None:
            return
        session = sock.session
        if resumable(session, sock.version()):
            assert session is not None
            self._session_for = None
            context, server_hostname, port, verified_at = target
            sessions.keep(context, server_hostname, self.host, port, Offer(session, verified_at))

    def _fail(self, exc: BaseException, stage: Stage) -> NoReturn:
        self.close()
        raise _translate(exc, stage, self.host) from exc

    def close(self) -> None:
        """Close the socket; safe to call any number of times."""
        if self._session_for is not None:
            with contextlib.suppress(OSError, ValueError):
                self._keep_session()
            self._session_for = None
        sock, self.sock = self.sock, None
        self._readable = self._writable = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self.sock is None
