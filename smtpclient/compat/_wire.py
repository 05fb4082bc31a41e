"""The IO half of the smtplib-compatible client: socket, replies, debug output.

smtplib reads replies line by line from ``sock.makefile()``, so its timeout
restarts with every byte and a reply may grow without end.  Here the bytes
go through the library's sans-IO ``ReplyParser`` (size caps), and one
monotonic deadline covers each whole reply: a server that drips a byte a
second still times out after ``timeout`` seconds.
"""

from __future__ import annotations

import sys
import time
from smtplib import SMTPServerDisconnected
from typing import Any

from smtpclient import errors
from smtpclient.errors import ReplyTimeoutError, ReplyTooLargeError  # re-exported here
from smtpclient.protocol.commands import check_text
from smtpclient.protocol.reply import Reply, ReplyLimits, ReplyParser

__all__ = ["CRLF", "ReplyTimeoutError", "ReplyTooLargeError", "WireClient", "namespace"]

CRLF = "\r\n"
_MAXLINE = 8192  # smtplib's longest reply line, CRLF included; kept for compatibility
_MAX_REPLY_LINES = 1024  # smtplib has no limit at all
_MAX_REPLY_BYTES = 256 * 1024
_RECV_SIZE = 65536


def namespace() -> Any:
    """The ``smtpclient.compat`` module, looked up at call time.

    smtplib resolves ``socket`` (and ``datetime``) in its module globals when
    it runs, and proxy libraries and test suites replace them there; doing
    the same lookup keeps ``smtpclient.compat.socket = fake`` working.
    """
    return sys.modules["smtpclient.compat"]


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


class WireClient:
    """Socket handling shared by SMTP, SMTP_SSL and LMTP (see ``SMTP``)."""

    debuglevel = 0
    sock: Any = None  # a socket.socket, or whatever a proxying _get_socket returns
    file: Any = None  # smtplib's makefile() object; replies are parsed here instead
    source_address: tuple[str, int] | None = None
    timeout: float | None
    command_encoding: str = "ascii"

    def _setup_wire(self) -> None:
        self._parser = _new_parser()
        self._peer_host: str | None = None  # the host actually connected to (for TLS)
        self._shown_next: str | None = None  # redacted form of the next send(), if secret
        self._auth_depth = 0  # > 0 while an AUTH exchange runs

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
        """Adopt a freshly connected socket (closing any previous one)."""
        if self.sock is not None and self.sock is not sock:
            self.close()
        self.sock = sock
        self.file = None
        self._peer_host = host
        self._parser = _new_parser()

    # --- writing ------------------------------------------------------------------------

    def send(self, s: str | bytes) -> None:
        """Send *s* to the server (str is encoded with ``command_encoding``).

        Raises:
            SMTPServerDisconnected: not connected, or the write failed (the
                connection is then closed).
        """
        shown, self._shown_next = self._shown_next, None
        if self.debuglevel > 0:
            self._print_debug("send:", repr(s if shown is None else shown))
        sock = self.sock
        if not sock:
            raise SMTPServerDisconnected("please run connect() first")
        data = s.encode(self.command_encoding) if isinstance(s, str) else s
        sys.audit("smtplib.send", self, data)
        try:
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise SMTPServerDisconnected("Server not connected") from exc

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command line.

        Raises:
            ValueError: the line holds a control character (CR, LF, NUL ...);
                nothing is sent.
            SMTPServerDisconnected: see ``send``.
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
        self.send(line + CRLF)

    # --- reading ------------------------------------------------------------------------

    def getreply(self) -> tuple[int, bytes]:
        """Read one whole reply; return ``(code, text)`` with lines joined by b"\\n".

        The socket's timeout bounds the whole reply, not each read.

        Raises:
            SMTPServerDisconnected: not connected, or the server closed the
                connection.
            ReplyTimeoutError: the reply was not complete in time (also an
                SMTPServerDisconnected and a TimeoutError).
            ReplyTooLargeError: the reply exceeded a size cap (the connection
                is closed).

        A line that is not a reply at all (no code) closes the connection
        and gives code -1, as smtplib returns for it.
        """
        sock = self.sock
        if not sock:
            raise SMTPServerDisconnected("please run connect() first")
        reply = self._read_reply(sock)
        if self.debuglevel > 0:
            for line in _wire_lines(reply) if reply.code >= 0 else [reply.raw_text]:
                self._print_debug("reply:", repr(line))
            self._print_debug(f"reply: retcode ({reply.code}); Msg: {reply.raw_text!a}")
        return reply.code, reply.raw_text

    def _read_reply(self, sock: Any) -> Reply:
        parser = self._parser
        budget: float | None = sock.gettimeout()
        deadline = None if budget is None else time.monotonic() + budget
        failure: SMTPServerDisconnected | ReplyTooLargeError | None = None
        try:
            while True:
                reply = parser.next_reply()
                if reply is not None:
                    return reply
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                chunk = sock.recv(_RECV_SIZE)
                if not chunk:
                    failure = SMTPServerDisconnected("Connection unexpectedly closed")
                    break
                parser.feed(chunk)
        except errors.ReplyLimitExceeded as exc:
            failure = ReplyTooLargeError(exc.message, limit=exc.limit, value=exc.value)
        except errors.ProtocolError as exc:
            # Garbage (another protocol on this port?): smtplib's -1, but
            # the stream cannot be trusted any more, so it is closed.
            self.close()
            return Reply(-1, (exc.message,))
        except TimeoutError:
            failure = ReplyTimeoutError(f"no complete reply within {budget} seconds")
        except OSError as exc:
            failure = SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")
        finally:
            if failure is None and self.sock is sock:
                sock.settimeout(budget)  # sendall() relies on the configured timeout
        assert failure is not None
        self.close()
        raise failure

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and return its reply."""
        self.putcmd(cmd, args)
        return self.getreply()

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (safe to call any number of times)."""
        try:
            file, self.file = self.file, None
            if file:
                file.close()
        finally:
            sock, self.sock = self.sock, None
            self._parser = _new_parser()
            if sock:
                sock.close()


def _new_parser() -> ReplyParser:
    return ReplyParser(
        ReplyLimits(
            max_line_length=_MAXLINE,
            max_lines=_MAX_REPLY_LINES,
            max_reply_bytes=_MAX_REPLY_BYTES,
        )
    )
