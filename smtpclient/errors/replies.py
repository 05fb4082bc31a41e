"""Errors caused by a reply, local refusals that depend on the server, DNS errors."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smtpclient.errors.base import (
    PermanentError,
    ReplyPair,
    SMTPClientError,
    SMTPTimeoutError,
    TransientError,
)

if TYPE_CHECKING:
    from smtpclient.protocol.reply import Reply


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
    """MAIL FROM was refused; ``sender`` holds the address.

    ``args`` is ``(code, message bytes, sender)``, as smtplib's.
    """

    def __init__(self, message: str | None = None, *, sender: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.sender = sender
        self.args = (self.args[0], self.args[1], sender)


class TransientSenderRefused(SenderRefused, TransientError):
    """MAIL FROM got a 4xx."""


class PermanentSenderRefused(SenderRefused, PermanentError):
    """MAIL FROM got a 5xx."""


class RecipientsRefused(ReplyError, smtplib.SMTPRecipientsRefused):
    """Every recipient was refused; ``recipients`` maps each to its reply.

    As in smtplib, each value unpacks as ``(code, message bytes)`` and
    ``args`` is ``(recipients,)``; each value is a ``ReplyPair`` that also
    has the full reply (``.reply``, ``.enhanced``, ``.lines``, ``.text``).
    ``replies`` maps each recipient to its ``Reply`` itself (typed as such).
    """

    def __init__(
        self, message: str | None = None, *, recipients: Mapping[str, Reply], **context: Any
    ) -> None:
        super().__init__(message, **context)
        pairs: dict[str, tuple[int, bytes]] = {
            address: ReplyPair(reply) for address, reply in recipients.items()
        }
        self.recipients = pairs
        self.replies: dict[str, Reply] = dict(recipients)
        self.args = (pairs,)


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


# --- name resolution (smtpclient.dnslookup re-exports these) --------------------------


class DNSError(SMTPClientError):
    """Finding the mail hosts failed; ``host`` is the name looked up,
    ``reply`` a locally made reply with the status to report."""


class TransientDNSError(DNSError, TransientError):
    """DNS could not answer now (SERVFAIL, REFUSED, no nameserver): try again later."""


class DNSTimeoutError(TransientDNSError, SMTPTimeoutError):
    """No answer within the resolver's overall ``lifetime``."""


class PermanentDNSError(DNSError, PermanentError):
    """DNS answered, and the answer means this domain cannot get mail."""


class DomainNotFound(PermanentDNSError):
    """The domain does not exist (NXDOMAIN)."""


class NullMXError(PermanentDNSError):
    """The domain publishes a null MX (RFC 7505): it accepts no mail."""


class NoMailHostError(PermanentDNSError):
    """There is no address to deliver to: the MX hosts have none, or the
    domain has neither MX nor A/AAAA records."""


class MailLoopError(PermanentDNSError):
    """Only our own host, or worse-preference hosts, are in the MX list."""


class TargetPolicyError(NoMailHostError):
    """Every address the domain's mail hosts have is refused by the target
    policy (loopback, private, link-local ...): nothing to connect to."""


class HostsFilteredError(TransientDNSError):
    """The caller's host filter (an MTA-STS policy's mx patterns) accepted
    none of the domain's mail hosts; the policy may change, so transient."""


class MTASTSError(TransientError):
    """An MTA-STS policy could not be had: not fetched, or not valid."""


class PolicyError(MTASTSError):
    """The policy file is malformed (RFC 8461 §3.2)."""


class PolicyFetchError(MTASTSError):
    """The MTA-STS policy could not be fetched (DNS, target policy,
    connection, TLS, HTTP status, content type, size or time)."""
