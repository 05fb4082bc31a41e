"""The root of the tree, its three branches, connection and TLS errors.

Imports nothing from the package at run time (see ``smtpclient.errors``).
"""

from __future__ import annotations

import smtplib
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smtpclient.protocol.reply import Reply
    from smtpclient.protocol.state import Stage
    from smtpclient.results import SendResult


def safe_text(text: str, limit: int = 400) -> str:
    """Make server-supplied text safe to print: no control characters, bounded."""
    cleaned = "".join(ch if (ch.isprintable() or ch == " ") else f"\\x{ord(ch):02x}" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


def _rebuild(cls: type[SMTPClientError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class ReplyPair(tuple[int, bytes]):
    """A refused recipient's reply as smtplib gives it, ``(code, message)``
    with the message as bytes, that also keeps the full ``Reply``:
    ``code, text = pair`` works, and so do ``pair.enhanced``, ``pair.lines``,
    ``pair.text`` and ``pair.reply``."""

    reply: Reply

    def __new__(cls, reply: Reply) -> ReplyPair:
        pair = super().__new__(cls, (reply.code, reply.raw_text))
        pair.reply = reply
        return pair

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReplyPair, (self.reply,))

    @property
    def code(self) -> int:
        """The three-digit reply code."""
        return self.reply.code

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code, or None."""
        return self.reply.enhanced

    @property
    def lines(self) -> tuple[str, ...]:
        """The text of each line."""
        return self.reply.lines

    @property
    def text(self) -> str:
        """All lines joined with newlines."""
        return self.reply.text

    @property
    def message(self) -> str:
        """The text without the enhanced status codes that prefix its lines."""
        return self.reply.message

    @property
    def is_transient(self) -> bool:
        """4xx: failed for now, try later."""
        return self.reply.is_transient

    @property
    def is_permanent(self) -> bool:
        """5xx: failed for good."""
        return self.reply.is_permanent


class SMTPClientError(smtplib.SMTPException):
    """Root of every error the library raises about the server or the network.

    Attributes:
        reply: the server's ``Reply``, when one caused the error.
        stage: the ``Stage`` the conversation was in.
        host: the server it happened with.
        outcome_unknown: True when the message may or may not have been
            delivered (the connection failed after the final ".").
        result: a partial ``SendResult`` when some recipients were processed.

    A class that is also an ``smtplib.SMTPResponseException`` has its
    ``smtp_code``, ``smtp_error`` (bytes) and ``args`` (``(code, bytes)``),
    made from the reply (code -1 when there is none, as smtplib uses when no
    reply came); any other has ``args`` ``(message,)``.
    """

    default_message = "SMTP error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reply: Reply | None = None,
        stage: Stage | None = None,
        host: str | None = None,
        outcome_unknown: bool = False,
        result: SendResult | None = None,
    ) -> None:
        self.message = message or (reply.text if reply is not None else self.default_message)
        self.reply = reply
        self.stage = stage
        self.host = host
        self.outcome_unknown = outcome_unknown
        self.result = result
        # BaseException.__init__ with one argument: OSError would read two
        # arguments as (errno, strerror).
        BaseException.__init__(self, self.message)
        if reply is not None or isinstance(self, smtplib.SMTPResponseException):
            # smtplib's SMTPResponseException attributes, for code written
            # against it (set untyped: smtplib's stubs disagree among classes).
            code, text = (
                (reply.code, reply.raw_text) if reply is not None else (-1, self.message.encode())
            )
            self.__dict__.update(smtp_code=code, smtp_error=text)
            if isinstance(self, smtplib.SMTPResponseException):
                self.args = (code, text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def __str__(self) -> str:
        parts = []
        message = self.message
        if self.reply is not None:
            parts.append(f"{self.reply.code}")
            if self.reply.enhanced:
                parts.append(self.reply.enhanced)
                # The reply's text starts with the same code: say it once.
                message = message.removeprefix(self.reply.enhanced + " ")
        parts.append(safe_text(message))
        context = []
        if self.stage is not None:
            context.append(f"stage={self.stage}")
        if self.host:
            context.append(f"host={safe_text(self.host, 100)}")
        if self.outcome_unknown:
            context.append("outcome unknown: the message may have been delivered")
        text = " ".join(parts)
        return f"{text} ({', '.join(context)})" if context else text

    @property
    def is_transient(self) -> bool:
        """True when trying again later may succeed."""
        return isinstance(self, TransientError)


class TransientError(SMTPClientError):
    """Try again later: a 4xx reply, a timeout, or a lost connection."""


class PermanentError(SMTPClientError):
    """Do not retry this as it is: a 5xx reply or a local refusal."""


class ProtocolError(SMTPClientError):
    """The server broke the protocol (malformed, oversized or unexpected reply)."""

    default_message = "the server broke the SMTP protocol"


class ReplyLimitExceeded(ProtocolError):
    """A reply went over one of its ``ReplyLimits``: ``limit`` names which
    ("max_line_length", "max_lines" or "max_reply_bytes") and ``value`` is
    the cap that was exceeded."""

    def __init__(self, message: str, *, limit: str, value: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.limit = limit
        self.value = value


# --- connection level -----------------------------------------------------------


class ConnectError(TransientError, ConnectionError):
    """No connection could be made (refused, unreachable, name not resolved)."""

    default_message = "could not connect"


class ServerDisconnected(TransientError, smtplib.SMTPServerDisconnected, ConnectionError):
    """The server closed the connection, or it was reset."""

    default_message = "the server closed the connection"


class NotSentError(ServerDisconnected):
    """The message was not sent at all: the connection failed earlier, while
    another message of the same batch was being sent.  Nothing of it reached
    the server, so sending it again cannot make a duplicate."""

    default_message = "not sent: the connection failed before this message"


class SMTPTimeoutError(TransientError, TimeoutError):
    """A stage's deadline (or the overall one) passed; ``stage`` names which."""

    default_message = "timed out"


class PoolTimeout(TransientError, TimeoutError):
    """No pooled connection became free within the checkout timeout: every
    one of the pool's ``max_connections`` was in use.  Nothing was sent."""

    default_message = "no pooled connection became free in time"


class ServiceClosing(TransientError, smtplib.SMTPResponseException):
    """The server said 421: it is closing the connection; the session is closed.

    Made with a ``stage`` where smtplib raises a more specific class for a
    421 (the greeting, EHLO, AUTH, DATA), the instance is a subclass that is
    that smtplib class too, so ``except smtplib.SMTPDataError`` catches a 421
    to DATA from either library.  (At MAIL and RCPT smtplib's classes need
    the sender or the recipients, which the reader of the 421 does not know.)
    """

    def __new__(cls, *args: Any, stage: Stage | None = None, **context: Any) -> ServiceClosing:
        # Positional/keyword arguments go to __init__; OSError.__new__ takes none.
        made = cls
        if cls is ServiceClosing and stage is not None:
            made = _CLOSING_AT.get(stage.value, cls)
        return super().__new__(made)


class _GreetingClosing(ServiceClosing, smtplib.SMTPConnectError):
    """A 421 greeting."""


class _HeloClosing(ServiceClosing, smtplib.SMTPHeloError):
    """A 421 to EHLO/HELO."""


class _AuthClosing(ServiceClosing, smtplib.SMTPAuthenticationError):
    """A 421 during AUTH."""


class _DataClosing(ServiceClosing, smtplib.SMTPDataError):
    """A 421 to DATA, a BDAT chunk or the end of the data."""


_CLOSING_AT: dict[str, type[ServiceClosing]] = {
    "greeting": _GreetingClosing,
    "ehlo": _HeloClosing,
    "auth": _AuthClosing,
    "data_init": _DataClosing,
    "data_block": _DataClosing,
    "data_done": _DataClosing,
}


# --- TLS --------------------------------------------------------------------------


class TLSError(TransientError, ssl.SSLError):
    """The TLS handshake or certificate verification failed.

    Transient, as in Postfix: a server's certificate or TLS setup is usually
    fixed by its operator, and the message is worth trying again later.
    """

    default_message = "TLS failed"


class CertificateVerifyError(TLSError):
    """The server's certificate did not verify (untrusted, expired, wrong name)."""


class TLSRequiredError(TLSError):
    """TLS was required but the server did not offer STARTTLS (or it was stripped)."""


class StartTLSError(TLSError, smtplib.SMTPResponseException):
    """The server answered STARTTLS with something other than 220."""


# --- the smtplib drop-in (smtpclient.compat re-exports these) -------------------------


class ReplyTimeoutError(SMTPTimeoutError, smtplib.SMTPServerDisconnected):
    """No complete reply arrived within ``timeout`` seconds; the connection is closed.

    Also an ``smtplib.SMTPServerDisconnected`` (what smtplib raises when a
    read times out) and a ``TimeoutError``.
    """


class ReplyTooLargeError(ReplyLimitExceeded, smtplib.SMTPResponseException):
    """A reply line, or a whole reply, exceeded its cap; the connection is closed.

    ``smtp_code`` is 500, as in smtplib's own "Line too long." error;
    ``smtp_error`` says which cap.
    """

    def __init__(self, message: str, *, limit: str, value: int, **context: Any) -> None:
        super().__init__(message, limit=limit, value=value, **context)
        self.smtp_code, self.smtp_error = 500, message.encode()
        self.args = (500, self.smtp_error)


class DANEError(TLSError):
    """DANE authentication of a mail host failed, or its TLSA records could
    not be looked up: do not deliver to this host now (transient)."""
