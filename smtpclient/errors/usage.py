"""Mistakes in how the library is called: ``ValueError``/``TypeError``/``RuntimeError``
subclasses, never ``OSError``; and the command line's one-line errors."""

from __future__ import annotations

# --- the caller's own mistakes -------------------------------------------------------


class UsageError(Exception):
    """Marker base for mistakes in how the library is called."""


class InvalidArgumentError(UsageError, ValueError):
    """A value the caller gave for a command is malformed or holds control
    characters: a host or HELO name, a SASL mechanism, a raw command, an
    ESMTP parameter.  Addresses have their own subclass."""


class InvalidAddressError(InvalidArgumentError):
    """An address (or its domain) is malformed or holds control characters."""


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


class RequireTLSUnavailable(UsageError, ValueError):
    """REQUIRETLS was asked for, but direct delivery cannot honour it yet:
    RFC 8689 §4.2.1 requires the MX hosts to be validated by DNSSEC or
    MTA-STS, which this library does not do.  Nothing was sent."""


class SASLError(ValueError):
    """A SASL mechanism cannot continue: bad input, a bad challenge, or a
    server that failed to prove itself (``smtpclient.saslprep`` re-exports it)."""


class DemoUnavailable(RuntimeError):
    """aiosmtpd or trustme is not installed, or the demo server did not start."""


class CommandError(Exception):
    """A command-line problem to report in one line and exit with ``code``
    (no traceback); 64 is ``EX_USAGE`` of sysexits.h."""

    def __init__(self, message: str, code: int = 64) -> None:
        super().__init__(message)
        self.code = code


class IllegalTransition(RuntimeError):
    """The engine tried a state change its transition table does not allow
    (a bug, never the server's doing); the session that met it is closed."""
