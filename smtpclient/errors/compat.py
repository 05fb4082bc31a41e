"""The exceptions the smtplib drop-in (``smtpclient.compat``) adds to
smtplib's: each is also an smtplib class or a builtin smtplib raises (so
existing handlers catch it) and a class of the library's own tree.

``smtpclient.compat`` re-exports them."""

from __future__ import annotations

import smtplib
from typing import Any

from smtpclient.errors.base import ProtocolError
from smtpclient.errors.usage import InvalidAddressError, MessageContentError, UsageError

__all__ = [
    "AddressNeedsSMTPUTF8",
    "AlreadyConnectedError",
    "AlreadyEncryptedError",
    "EightBitContentError",
    "LongLineError",
    "MalformedGreetingError",
    "MalformedReplyError",
    "UnsolicitedReplyError",
]


class MalformedReplyError(ProtocolError, smtplib.SMTPResponseException):
    """The server sent something that is not an SMTP reply (a bad code, a
    code changing inside one reply, a junk line); the connection is closed.

    ``smtp_code`` is -1 (the code smtplib returns for such a line) and
    ``smtp_error`` says what was wrong, as bytes.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.smtp_code, self.smtp_error = -1, message.encode("utf-8", "replace")
        self.args = (-1, self.smtp_error)


class MalformedGreetingError(MalformedReplyError, smtplib.SMTPConnectError):
    """The greeting was not an SMTP reply (e.g. a code outside 200-599): also
    the ``SMTPConnectError`` smtplib raises for a greeting other than 220."""


class UnsolicitedReplyError(MalformedReplyError):
    """Before a command, the server had sent data nobody asked for: the
    replies are out of step with the commands (a stale or injected reply);
    the connection is closed instead of pairing it with the next command."""


class AlreadyConnectedError(UsageError, RuntimeError):
    """``connect()`` on an object that is connected: ``close()`` or
    ``quit()`` first (smtplib would silently open a second connection)."""


class AlreadyEncryptedError(UsageError, smtplib.SMTPNotSupportedError):
    """``starttls()`` on a connection that is already under TLS; nothing
    was sent (an ``SMTPNotSupportedError``, as for a server without STARTTLS)."""


class AddressNeedsSMTPUTF8(InvalidAddressError, UnicodeEncodeError):
    """A non-ASCII local part without SMTPUTF8: a ``UnicodeEncodeError`` as
    smtplib raises, but before MAIL is sent."""

    def __init__(self, address: str) -> None:
        where = next((i for i, ch in enumerate(address) if not ch.isascii()), 0)
        UnicodeEncodeError.__init__(
            self, "ascii", address, where, where + 1, "non-ASCII address needs SMTPUTF8"
        )
        self.address = address

    def __str__(self) -> str:
        return f"the address {self.address!r} is not ASCII and SMTPUTF8 was not asked for"


class LongLineError(MessageContentError):
    """A line of the message is over 998 octets (RFC 5322 §2.1.1); nothing was sent."""


class EightBitContentError(MessageContentError):
    """The message has 8-bit bytes and the server offers neither 8BITMIME
    nor SMTPUTF8; nothing was sent."""
