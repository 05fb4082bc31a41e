"""The exception tree: one root, branches named for what the caller does next.

``SMTPClientError`` subclasses ``smtplib.SMTPException`` so that code written
for smtplib keeps catching our errors; that also makes every one an
``OSError``.  The branches are:

* ``TransientError`` -- 4xx replies, timeouts, lost connections: try again later.
* ``PermanentError`` -- 5xx replies: do not retry this message as it is.
* ``ProtocolError`` -- the server broke the protocol (a malformed reply).

Errors that come from a reply exist in a transient and a permanent flavour
(``TransientSenderRefused`` / ``PermanentSenderRefused``) under a common
stage class (``SenderRefused``), so both ``except SenderRefused`` and
``except TransientError`` work.  Where smtplib users would catch a builtin
(``TimeoutError``, ``ConnectionError``, ``ssl.SSLError``) or an smtplib class
(``SMTPSenderRefused`` ...), ours is that class too.

Mistakes in the caller's own input are ``ValueError``/``TypeError``
subclasses and never ``OSError``.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smtpclient.protocol.state import Stage

if TYPE_CHECKING:
    from smtpclient.protocol.reply import Reply
    from smtpclient.results import SendResult

__all__ = [
    "AuthenticationError",
    "AuthenticationFailed",
    "CertificateVerifyError",
    "CommandRefused",
    "ConnectError",
    "DKIMError",
    "DataRefused",
    "ExtensionNotSupported",
    "GreetingRefused",
    "HeaderInjectionError",
    "HeloRefused",
    "InsecureAuthError",
    "InvalidAddressError",
    "MessageContentError",
    "NulOctetError",
    "MessageTooLarge",
    "NotSentError",
    "PermanentAuthError",
    "PermanentCommandRefused",
    "PermanentDataRefused",
    "PermanentError",
    "PermanentGreetingRefused",
    "PermanentHeloRefused",
    "PermanentRecipientsRefused",
    "PermanentSenderRefused",
    "PoolClosedError",
    "PoolTimeout",
    "ProtocolError",
    "RecipientsRefused",
    "ReplyError",
    "SMTPClientError",
    "SMTPTimeoutError",
    "SenderRefused",
    "ServerDisconnected",
    "ServiceClosing",
    "SessionBusyError",
    "SessionClosedError",
    "StartTLSError",
    "TLSError",
    "TLSRequiredError",
    "TransientAuthError",
    "TransientCommandRefused",
    "TransientDataRefused",
    "TransientError",
    "TransientGreetingRefused",
    "TransientHeloRefused",
    "TransientRecipientsRefused",
    "TransientSenderRefused",
    "UsageError",
]


def _safe(text: str, limit: int = 400) -> str:
    """Make server-supplied text safe to print: no control characters, bounded."""
    cleaned = "".join(ch if (ch.isprintable() or ch == " ") else f"\\x{ord(ch):02x}" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


def _rebuild(cls: type[SMTPClientError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class SMTPClientError(smtplib.SMTPException):
    """Root of every error the library raises about the server or the network.

    Attributes:
        reply: the server's ``Reply``, when one caused the error.
        stage: the ``Stage`` the conversation was in.
        host: the server it happened with.
        outcome_unknown: True when the message may or may not have been
            delivered (the connection failed after the final ".").
        result: a partial ``SendResult`` when some recipients were processed.
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
        if reply is not None:
            # smtplib's SMTPResponseException attributes, for code written
            # against it (set untyped: smtplib's stubs disagree among classes).
            self.__dict__.update(smtp_code=reply.code, smtp_error=reply.raw_text)

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
        parts.append(_safe(message))
        context = []
        if self.stage is not None:
            context.append(f"stage={self.stage}")
        if self.host:
            context.append(f"host={_safe(self.host, 100)}")
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
    """The server said 421: it is closing the connection; the session is closed."""


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


# --- replies ------------------------------------------------------------------------


class ReplyError(SMTPClientError):
    """An error caused by a reply; ``reply`` holds it."""


class GreetingRefused(ReplyError, smtplib.SMTPConnectError):
    """The greeting was not 220 (e.g. 554 "no SMTP service here")."""


class TransientGreetingRefused(GreetingRefused, TransientError):
    """A 4xx greeting."""


class PermanentGreetingRefused(GreetingRefused, PermanentError):
    """A 5xx greeting."""


class HeloRefused(ReplyError, smtplib.SMTPHeloError):
    """Neither EHLO nor HELO was accepted."""


class TransientHeloRefused(HeloRefused, TransientError):
    """EHLO/HELO got a 4xx reply."""


class PermanentHeloRefused(HeloRefused, PermanentError):
    """EHLO/HELO got a 5xx reply."""


class AuthenticationError(ReplyError, smtplib.SMTPAuthenticationError):
    """AUTH was refused."""


class TransientAuthError(AuthenticationError, TransientError):
    """AUTH got a 4xx (e.g. 454 temporary authentication failure)."""


class PermanentAuthError(AuthenticationError, PermanentError):
    """AUTH got a 5xx other than bad credentials (e.g. 534, 538)."""


class AuthenticationFailed(PermanentAuthError):
    """535: the credentials were rejected.  Other mechanisms are not tried."""


class SenderRefused(ReplyError, smtplib.SMTPSenderRefused):
    """MAIL FROM was refused; ``sender`` holds the address."""

    def __init__(self, message: str | None = None, *, sender: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.sender = sender


class TransientSenderRefused(SenderRefused, TransientError):
    """MAIL FROM got a 4xx."""


class PermanentSenderRefused(SenderRefused, PermanentError):
    """MAIL FROM got a 5xx."""


class RecipientsRefused(ReplyError, smtplib.SMTPRecipientsRefused):
    """Every recipient was refused; ``recipients`` maps each to its ``Reply``.

    Unlike smtplib, whose values are ``(code, message)`` pairs, each value
    here is a full ``Reply``.
    """

    def __init__(
        self, message: str | None = None, *, recipients: Mapping[str, Reply], **context: Any
    ) -> None:
        super().__init__(message, **context)
        # smtplib types these values as (code, message) pairs; ours are Replies.
        self.recipients = dict(recipients)  # type: ignore[arg-type]


class TransientRecipientsRefused(RecipientsRefused, TransientError):
    """Every recipient was refused and at least one refusal was temporary."""


class PermanentRecipientsRefused(RecipientsRefused, PermanentError):
    """Every recipient was refused permanently."""


class DataRefused(ReplyError, smtplib.SMTPDataError):
    """DATA, BDAT or the message content (the final ".") was refused."""


class TransientDataRefused(DataRefused, TransientError):
    """The data was refused with a 4xx."""


class PermanentDataRefused(DataRefused, PermanentError):
    """The data was refused with a 5xx."""


class CommandRefused(ReplyError, smtplib.SMTPResponseException):
    """Another command (RSET, NOOP, VRFY, EXPN, HELP...) was refused."""


class TransientCommandRefused(CommandRefused, TransientError):
    """The command got a 4xx."""


class PermanentCommandRefused(CommandRefused, PermanentError):
    """The command got a 5xx."""


# --- local refusals that depend on the server -------------------------------------


class ExtensionNotSupported(PermanentError, smtplib.SMTPNotSupportedError):
    """The message needs an extension the server does not offer.

    Raised before MAIL FROM, so nothing was sent: e.g. 8-bit data without
    8BITMIME, a UTF-8 address without SMTPUTF8, DSN options without DSN.
    ``extension`` names it.
    """

    def __init__(self, message: str, *, extension: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.extension = extension


class MessageTooLarge(PermanentError):
    """The message is larger than the server's advertised SIZE limit."""


class InsecureAuthError(PermanentError):
    """AUTH was not attempted because the connection is not verified TLS.

    The message names the setting that allows it.
    """


# --- the caller's own mistakes -------------------------------------------------------


class UsageError(Exception):
    """Marker base for mistakes in how the library is called."""


class InvalidAddressError(UsageError, ValueError):
    """An address (or other command argument) is malformed or holds control characters."""


class MessageContentError(UsageError, ValueError):
    """The message cannot be sent as given (e.g. a line over 998 octets, or
    8-bit bytes in a body declared 7-bit); nothing of it was delivered."""


class HeaderInjectionError(MessageContentError):
    """The header that would go out is not exactly the message's own header
    fields (a value with a line break in it added a line), or raw content
    has a bare CR or mixed line ends in its header; nothing was sent."""


class DKIMError(MessageContentError):
    """The message could not be DKIM-signed as given (no From header, say);
    nothing was sent."""


class NulOctetError(MessageContentError):
    """The content holds a NUL octet, which RFC 5322 and RFC 2045 allow only
    with BINARYMIME (``binary=True``); nothing of it was delivered."""


class SessionClosedError(UsageError, ValueError):
    """The session is closed (or broken by an earlier error) and cannot be used."""


class PoolClosedError(UsageError, ValueError):
    """The pool (or the Mailer that owns it) has been closed and cannot be used."""


class SessionBusyError(UsageError, RuntimeError):
    """Another thread is using this session; sessions are one-thread-at-a-time."""
