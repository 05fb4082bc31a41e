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

Where a class is also an smtplib class, it carries smtplib's attributes in
smtplib's shapes (``smtp_code``, ``smtp_error`` as bytes, ``sender``,
``recipients`` values that unpack as ``(code, bytes)``, and ``args``), so
handler code written for smtplib runs unchanged.

This package is a leaf: its modules import nothing from the rest of the
package at run time (only each other, one way: ``base`` <- ``replies``,
``usage`` on its own), so every other module can import it.  It holds every
exception class of the package; the modules that used to define some
(``dnslookup``, ``delivery``, ``saslprep``, ``compat``, ``demo``,
``cli.common``) re-export them, so their old import paths still work.
"""

from __future__ import annotations

from smtpclient.errors.base import (
    CertificateVerifyError,
    ConnectError,
    DANEError,
    NotSentError,
    PermanentError,
    PoolTimeout,
    ProtocolError,
    ReplyLimitExceeded,
    ReplyPair,
    ReplyTimeoutError,
    ReplyTooLargeError,
    ServerDisconnected,
    ServiceClosing,
    SMTPClientError,
    SMTPTimeoutError,
    StartTLSError,
    TLSError,
    TLSRequiredError,
    TransientError,
    safe_text,
)
from smtpclient.errors.replies import (
    AuthenticationError,
    AuthenticationFailed,
    CommandRefused,
    DataRefused,
    DNSError,
    DNSTimeoutError,
    DomainNotFound,
    ExtensionNotSupported,
    GreetingRefused,
    HeloRefused,
    HostsFilteredError,
    InsecureAuthError,
    MailLoopError,
    MessageTooLarge,
    MTASTSError,
    NoMailHostError,
    NullMXError,
    PermanentAuthError,
    PermanentCommandRefused,
    PermanentDataRefused,
    PermanentDNSError,
    PermanentGreetingRefused,
    PermanentHeloRefused,
    PermanentRecipientsRefused,
    PermanentSenderRefused,
    PolicyError,
    PolicyFetchError,
    RecipientsRefused,
    ReplyError,
    SenderRefused,
    TargetPolicyError,
    TransientAuthError,
    TransientCommandRefused,
    TransientDataRefused,
    TransientDNSError,
    TransientGreetingRefused,
    TransientHeloRefused,
    TransientRecipientsRefused,
    TransientSenderRefused,
)
from smtpclient.errors.usage import (
    CommandError,
    DemoUnavailable,
    DKIMError,
    HeaderInjectionError,
    IllegalTransition,
    InvalidAddressError,
    InvalidArgumentError,
    MessageContentError,
    NulOctetError,
    PoolClosedError,
    RequireTLSUnavailable,
    SASLError,
    SessionBusyError,
    SessionClosedError,
    UsageError,
)

__all__ = [
    "DANEError",
    "MTASTSError",
    "PolicyError",
    "PolicyFetchError",
    "HostsFilteredError",
    "TargetPolicyError",
    "IllegalTransition",
    "AuthenticationError",
    "AuthenticationFailed",
    "CertificateVerifyError",
    "CommandError",
    "CommandRefused",
    "ConnectError",
    "DKIMError",
    "DNSError",
    "DNSTimeoutError",
    "DataRefused",
    "DemoUnavailable",
    "DomainNotFound",
    "ExtensionNotSupported",
    "GreetingRefused",
    "HeaderInjectionError",
    "HeloRefused",
    "InsecureAuthError",
    "InvalidAddressError",
    "InvalidArgumentError",
    "MailLoopError",
    "MessageContentError",
    "MessageTooLarge",
    "NoMailHostError",
    "NotSentError",
    "NulOctetError",
    "NullMXError",
    "PermanentAuthError",
    "PermanentCommandRefused",
    "PermanentDNSError",
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
    "ReplyLimitExceeded",
    "ReplyPair",
    "ReplyTimeoutError",
    "ReplyTooLargeError",
    "RequireTLSUnavailable",
    "SASLError",
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
    "TransientDNSError",
    "TransientDataRefused",
    "TransientError",
    "TransientGreetingRefused",
    "TransientHeloRefused",
    "TransientRecipientsRefused",
    "TransientSenderRefused",
    "UsageError",
    "safe_text",
]
