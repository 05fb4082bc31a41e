"""The IO half of the smtplib-compatible client: the engine's Channel under
smtplib's ``send``/``putcmd``/``getreply``, debug output and the thread guard.

Nothing here reads or writes a socket: ``_get_socket``'s result is handed
to a ``Transport`` (``streams.transport_for``) inside a ``Channel``, which
gives every write and every whole reply a deadline (the socket's timeout,
as smtplib uses it), caps replies, and closes the connection on any
protocol error.  Before a command is written while no reply is awaited,
the channel's unsolicited-data check runs: a reply nobody asked for is
never paired with the next command.
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
from collections.abc import Callable
from smtplib import SMTPServerDisconnected
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from smtpclient import errors
from smtpclient.errors import (
    ProtocolError,
    ReplyLimitExceeded,
    ReplyTimeoutError,
    ReplyTooLargeError,
    ServerDisconnected,
    ServiceClosing,
    SessionBusyError,
    SMTPClientError,
    SMTPTimeoutError,
)
from smtpclient.errors.compat import (
    MalformedGreetingError,
    MalformedReplyError,
    UnsolicitedReplyError,
)
from smtpclient.protocol.commands import check_text
from smtpclient.protocol.reply import Reply, ReplyLimits
from smtpclient.protocol.state import Stage
from smtpclient.session.channel import Channel
from smtpclient.session.transcript import Shown
from smtpclient.streams import transport_for
from smtpclient.timeouts import Timeouts

__all__ = ["CRLF", "LinkClient", "exclusive", "namespace"]

CRLF = "\r\n"
_MAXLINE = 8192  # smtplib's longest reply line, CRLF included; kept for compatibility
_LIMITS = ReplyLimits(max_line_length=_MAXLINE, max_lines=1024, max_reply_bytes=256 * 1024)
# timeout=None (smtplib: wait for ever) still has a deadline: one day per reply.
_NO_TIMEOUT = 86400.0

# The stage (and so the deadline and error context) of each command's reply.
_STAGES = {
    "helo": Stage.EHLO,
    "ehlo": Stage.EHLO,
    "lhlo": Stage.EHLO,
    "starttls": Stage.STARTTLS,
    "auth": Stage.AUTH,
    "mail": Stage.MAIL,
    "rcpt": Stage.RCPT,
    "data": Stage.DATA_INIT,
    "rset": Stage.RSET,
    "quit": Stage.QUIT,
}

P = ParamSpec("P")
R = TypeVar("R")
L = TypeVar("L", bound="LinkClient")


def namespace() -> Any:
    """The ``smtpclient.compat`` module, looked up at call time.

    smtplib resolves ``socket`` (and ``datetime``) in its module globals when
    it runs, and proxy libraries and test suites replace them there; doing
    the same lookup keeps ``smtpclient.compat.socket = fake`` working.
    """
    return sys.modules["smtpclient.compat"]


def exclusive(method: Callable[Concatenate[L, P], R]) -> Callable[Concatenate[L, P], R]:
    """Run *method* as the only thread using the object (nested calls from
    the same thread are fine).

    Raises:
        SessionBusyError: another thread is inside a method, or is waiting
            for replies to commands it sent with ``putcmd``.
    """

    @functools.wraps(method)
    def wrapper(self: L, *args: P.args, **kwargs: P.kwargs) -> R:
        lock = self._turn
        if not lock.acquire(blocking=False):
            raise SessionBusyError(
                "this SMTP object is in use by another thread; use one per thread"
            )
        try:
            owner = self._reply_owner
            if owner is not None and owner != threading.get_ident():
                raise SessionBusyError("another thread is waiting for replies on this SMTP object")
            return method(self, *args, **kwargs)
        finally:
            lock.release()

    return cast("Callable[Concatenate[L, P], R]", wrapper)


def _redacted(cmd: str, args: str, in_exchange: bool) -> str:
    """How an AUTH line is shown in debug output: never the credentials."""
    if cmd.upper() == "AUTH":
        mechanism, _, secret = args.partition(" ")
        return f"AUTH {mechanism} <redacted>{CRLF}" if secret else f"AUTH {args}{CRLF}"
    return f"<redacted>{CRLF}" if in_exchange else f"{cmd} {args}{CRLF}"


def _wire_lines(reply: Reply) -> list[bytes]:
    """The reply's lines as the server framed them, for debug output."""
    code = str(reply.code).encode("ascii")
    last = len(reply.raw) - 1
    out = []
    for index, text in enumerate(reply.raw):
        separator = b"-" if index < last else (b" " if text else b"")
        out.append(code + separator + text + b"\r\n")
    return out


def _raw_shown(data: bytes) -> str:
    """The transcript's view of a raw ``send()``: it may be message content."""
    return f"<{len(data)} octets sent with send()>"


def _budget(sock: Any) -> float:
    """The socket's timeout as a per-reply deadline in seconds."""
    try:
        timeout = sock.gettimeout()
    except (AttributeError, OSError):
        timeout = None
    if timeout is None:
        return _NO_TIMEOUT
    return max(float(timeout), 0.001)


class LinkClient:
    """Commands out and replies in through a ``Channel`` (see the module)."""

    debuglevel = 0
    sock: Any = None  # what _get_socket returned (the TLS wrapper after STARTTLS)
    file: Any = None  # smtplib's makefile() object; replies are parsed by the channel
    source_address: tuple[str, int] | None = None
    timeout: float | None
    command_encoding: str = "ascii"

    def _setup_link(self) -> None:
        self._turn = threading.RLock()
        self._reply_owner: int | None = None  # the thread that awaits replies
        self._channel: Channel | None = None
        self._peer_host: str | None = None  # the host actually connected to (for TLS)
        self._shown_next: str | None = None  # redacted form of the next send(), if secret
        self._auth_depth = 0  # > 0 while an AUTH exchange runs
        self._awaited: collections.deque[Stage] = collections.deque()  # replies owed
        # Raw send() calls (a body in pieces, hand-made pipelining) owe an
        # unknown number of replies: no check until the caller reads one.
        self._raw_pending = False

    # --- debug output -----------------------------------------------------------------

    def set_debuglevel(self, debuglevel: int) -> None:
        """Print the conversation on stderr: 1 plain, 2 with timestamps.

        AUTH credentials are shown as ``<redacted>``.
        """
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        if self.debuglevel > 1:
            print(namespace().datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    # --- connecting ---------------------------------------------------------------------

    def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
        """Open the connection; subclasses override this to go through a proxy.

        ``socket`` is looked up in ``smtpclient.compat`` at call time.

        Raises:
            ValueError: *timeout* is 0 (non-blocking sockets are not supported).
            OSError: the connection failed (as ``socket.create_connection``).
        """
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if self.debuglevel > 0:
            self._print_debug("connect: to", (host, port), self.source_address)
        return namespace().socket.create_connection((host, port), timeout, self.source_address)

    def _attach(self, sock: Any, host: str) -> None:
        """Adopt a freshly connected socket: a Channel over it, the greeting owed."""
        budget = _budget(sock)  # before the Transport takes over its timeout
        self._channel = Channel(
            transport_for(sock, host),
            host=host,
            timeouts=Timeouts.uniform(budget),
            reply_limits=_LIMITS,
        )
        self.sock = sock
        self.file = None
        self._peer_host = host
        self._awaited.clear()
        self._awaited.append(Stage.GREETING)
        self._raw_pending = False
        self._reply_owner = threading.get_ident()

    def _connected(self) -> bool:
        """True while a connection is open."""
        channel = self._channel
        return channel is not None and not channel.transport.closed

    def _live_channel(self) -> Channel:
        channel = self._channel
        if channel is None or channel.transport.closed:
            if channel is not None:
                self.close()
            raise SMTPServerDisconnected("please run connect() first")
        return channel

    # --- writing ------------------------------------------------------------------------

    @exclusive
    def send(self, s: str | bytes) -> None:
        """Send *s* to the server (str is encoded with ``command_encoding``).

        Raw data owes an unknown number of replies: until ``getreply`` is
        called, later sends and commands are not checked for replies
        nobody asked for.

        Raises:
            SMTPServerDisconnected: not connected, or the write failed (the
                connection is then closed).
            UnsolicitedReplyError: the server had sent a reply nobody asked
                for (the connection is closed; nothing was sent).
        """
        self._send(s, Stage.COMMAND, check=True, replies=0, shown=_raw_shown)
        self._raw_pending = True
        self._reply_owner = threading.get_ident()

    def _send(
        self,
        s: str | bytes,
        stage: Stage,
        *,
        check: bool,
        replies: int,
        reply_stage: Stage | None = None,
        shown: Shown = None,
    ) -> None:
        """Write *s* (``send``'s debug output and audit event included);
        *replies* replies to it are then owed, under *reply_stage*; *shown*
        replaces *s* in the engine's transcript (secrets, message content)."""
        redacted, self._shown_next = self._shown_next, None
        if self.debuglevel > 0:
            self._print_debug("send:", repr(s if redacted is None else redacted))
        channel = self._live_channel()
        data = s.encode(self.command_encoding) if isinstance(s, str) else s
        sys.audit("smtplib.send", self, data)
        if check and not self._awaited and not self._raw_pending:
            self._check_quiet(channel, stage)
        try:
            channel.write(data, stage, shown="<redacted>" if redacted is not None else shown)
        except SMTPTimeoutError as exc:
            self.close()
            seconds = channel.timeouts.for_stage(stage)
            raise ReplyTimeoutError(f"could not send within {seconds:g} seconds") from exc
        except SMTPClientError as exc:
            self.close()
            raise ServerDisconnected("Server not connected", stage=stage) from exc
        self._awaited.extend([reply_stage or stage] * replies)
        if replies:
            self._reply_owner = threading.get_ident()

    def _check_quiet(self, channel: Channel, stage: Stage) -> None:
        """The unsolicited-data check before a command (see the module)."""
        try:
            channel.check_unsolicited(stage)
        except ServiceClosing:
            self.close()
            raise
        except ProtocolError as exc:
            self.close()
            raise UnsolicitedReplyError(
                "the server sent a reply nobody asked for (replies out of step with "
                "commands); the connection is closed",
                stage=stage,
                host=channel.host,
            ) from exc
        except SMTPClientError as exc:
            self.close()
            raise ServerDisconnected("Server not connected", stage=stage) from exc

    @exclusive
    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command line.

        Raises:
            ValueError: the line holds a control character (CR, LF, NUL ...);
                nothing is sent.
            SMTPServerDisconnected, UnsolicitedReplyError: see ``send``.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        secret = self._auth_depth > 0 or cmd.upper() == "AUTH"
        if "\r" in line or "\n" in line:
            # smtplib's own wording, which its users' tests look for.
            shown = "<redacted>" if secret else line.replace("\n", "\\n").replace("\r", "\\r")
            raise errors.InvalidArgumentError(
                f"command and arguments contain prohibited newline characters: {shown}"
            )
        try:
            check_text(line, "SMTP command")
        except errors.InvalidArgumentError:
            if secret:  # the message would quote the credentials
                raise errors.InvalidArgumentError(
                    "an AUTH line contains a control character"
                ) from None
            raise
        if secret:
            self._shown_next = _redacted(cmd, args, self._auth_depth > 0)
        stage = Stage.AUTH if self._auth_depth > 0 else _STAGES.get(cmd.lower(), Stage.COMMAND)
        self._send(line + CRLF, stage, check=True, replies=1)

    # --- reading ------------------------------------------------------------------------

    @exclusive
    def getreply(self) -> tuple[int, bytes]:
        """Read one whole reply; return ``(code, text)`` with lines joined by b"\\n".

        The socket's timeout bounds the whole reply, not each read.  A 421
        is returned, and the connection closed (the server is closing it).

        Raises:
            SMTPServerDisconnected: not connected, or the server closed the
                connection.
            ReplyTimeoutError: the reply was not complete in time (also an
                SMTPServerDisconnected and a TimeoutError).
            ReplyTooLargeError: the reply exceeded a size cap.
            MalformedReplyError: what came is not an SMTP reply (also an
                SMTPResponseException, ``smtp_code`` -1).
            (After any of these the connection is closed.)
        """
        channel = self._live_channel()
        if self._awaited:
            stage = self._awaited.popleft()
        else:
            stage = Stage.COMMAND
            self._raw_pending = False
        if not self._awaited and not self._raw_pending:
            self._reply_owner = None
        reply = self._read(channel, stage)
        if self.debuglevel > 0:
            for line in _wire_lines(reply):
                self._print_debug("reply:", repr(line))
            self._print_debug(f"reply: retcode ({reply.code}); Msg: {reply.raw_text!a}")
        return reply.code, reply.raw_text

    def _read(self, channel: Channel, stage: Stage) -> Reply:
        try:
            return channel.read(stage)
        except ServiceClosing as exc:
            # The server said 421 and closes: the reply is the caller's, the
            # connection is gone (the channel closed it).
            self.close()
            if exc.reply is None:
                raise
            return exc.reply
        except ReplyLimitExceeded as exc:
            self.close()
            raise ReplyTooLargeError(exc.message, limit=exc.limit, value=exc.value) from exc
        except ProtocolError as exc:
            self.close()
            malformed = MalformedGreetingError if stage is Stage.GREETING else MalformedReplyError
            raise malformed(
                f"malformed reply, connection closed: {exc.message}", stage=stage, host=channel.host
            ) from exc
        except SMTPTimeoutError as exc:
            self.close()
            seconds = channel.timeouts.for_stage(stage)
            raise ReplyTimeoutError(
                f"no complete reply within {seconds:g} seconds", stage=stage, host=channel.host
            ) from exc
        except SMTPClientError as exc:
            self.close()
            raise ServerDisconnected(
                "Connection unexpectedly closed", stage=stage, host=channel.host
            ) from exc

    @exclusive
    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and return its reply."""
        self.putcmd(cmd, args)
        return self.getreply()

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (safe to call any number of times, from any thread)."""
        channel, self._channel = self._channel, None
        sock, self.sock = self.sock, None
        self.file = None
        self._awaited.clear()
        self._raw_pending = False
        self._reply_owner = None
        if channel is not None:
            channel.transport.close()  # the TLS wrapper too, after STARTTLS
        if sock is not None:
            sock.close()
