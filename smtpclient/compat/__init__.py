"""A drop-in replacement for the standard library's ``smtplib``.

``import smtpclient.compat as smtplib`` and existing code runs unchanged:
the same classes (``SMTP``, ``SMTP_SSL``, ``LMTP``) with the same
constructor signatures for the running Python (3.11 keeps the deprecated
``keyfile``/``certfile`` arguments, 3.12+ does not), the same methods,
return values and side effects, and smtplib's very exception classes.
Like smtplib it stays in plaintext until ``starttls()`` is called.

It is a thin façade over the engine the native API uses: every command
and reply goes through ``session.channel.Channel`` (deadlines on every
write and whole reply, capped replies, the unsolicited-reply check before
commands), addresses through the engine's address code, content through
its content rules.  Where smtplib is unsafe this module is not (see
docs/migrating.md): hostile addresses are refused before MAIL, stale or
malformed replies raise (``UnsolicitedReplyError``, ``MalformedReplyError``)
and close the connection, over-long lines and unsupported 8-bit content are
refused before MAIL, header injection is refused, one thread at a time,
the default TLS context verifies certificates, STARTTLS failures close the
connection, AUTH secrets are redacted in ``set_debuglevel`` output.

``socket`` and ``datetime`` are looked up in this module at call time, so
replacing ``smtpclient.compat.socket`` redirects connections exactly as
replacing ``smtplib.socket`` does.
"""

from __future__ import annotations

import base64 as base64
import copy as copy
import datetime as datetime
import email as email
import email.generator
import email.message
import email.utils  # noqa: F401
import hmac as hmac
import io as io
import re as re
import socket as socket
import ssl as ssl
import sys as sys
from email.base64mime import body_encode as encode_base64  # noqa: F401 (smtplib has it)
from smtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    quoteaddr,
    quotedata,
)

from smtpclient.compat._client import SMTP
from smtpclient.compat._client import SMTP_PORT as SMTP_PORT
from smtpclient.compat._commands import OLDSTYLE_AUTH as OLDSTYLE_AUTH
from smtpclient.compat._link import _MAXLINE as _MAXLINE
from smtpclient.compat._link import CRLF as CRLF
from smtpclient.compat._secure import _MAXCHALLENGE as _MAXCHALLENGE
from smtpclient.compat._variants import LMTP as LMTP
from smtpclient.compat._variants import LMTP_PORT as LMTP_PORT
from smtpclient.compat._variants import SMTP_SSL
from smtpclient.compat._variants import SMTP_SSL_PORT as SMTP_SSL_PORT
from smtpclient.errors import HeaderInjectionError as HeaderInjectionError
from smtpclient.errors import ReplyTimeoutError as ReplyTimeoutError
from smtpclient.errors import ReplyTooLargeError as ReplyTooLargeError
from smtpclient.errors.compat import AddressNeedsSMTPUTF8 as AddressNeedsSMTPUTF8
from smtpclient.errors.compat import AlreadyConnectedError as AlreadyConnectedError
from smtpclient.errors.compat import AlreadyEncryptedError as AlreadyEncryptedError
from smtpclient.errors.compat import EightBitContentError as EightBitContentError
from smtpclient.errors.compat import LongLineError as LongLineError
from smtpclient.errors.compat import MalformedGreetingError as MalformedGreetingError
from smtpclient.errors.compat import MalformedReplyError as MalformedReplyError
from smtpclient.errors.compat import UnsolicitedReplyError as UnsolicitedReplyError

__all__ = [
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
    "quoteaddr",
    "quotedata",
    "SMTP",
    "SMTP_SSL",
]

bCRLF = b"\r\n"
_have_ssl = True

for _cls in (SMTP, SMTP_SSL, LMTP):
    _cls.__module__ = __name__
del _cls
