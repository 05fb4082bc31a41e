"""smtpclient: a threaded, synchronous SMTP client.

>>> import smtpclient
>>> with smtpclient.Session.connect("smtp.example.com", 587) as s:   # doctest: +SKIP
...     s.login("user", "secret")
...     result = s.send_message(msg)

See https://smtpclient.readthedocs.io for the guide.  Heavier parts (the
Mailer, the MX resolver, direct delivery) are imported on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from smtpclient.api import send
from smtpclient.auth import OAuth2, Password
from smtpclient.envelope import DSN, Recipient
from smtpclient.errors import (
    PermanentError,
    ProtocolError,
    SMTPClientError,
    TransientError,
)
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.results import SendResult
from smtpclient.session import Session
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSInfo, TLSMode

__version__ = "0.1.0"

__all__ = [
    "DKIMSigner",
    "DSN",
    "DeliveryReport",
    "Extensions",
    "MailHost",
    "Mailer",
    "OAuth2",
    "Password",
    "PermanentError",
    "ProtocolError",
    "Recipient",
    "Reply",
    "Resolver",
    "SMTPClientError",
    "SendResult",
    "Session",
    "SessionPool",
    "TLSInfo",
    "TLSMode",
    "Timeouts",
    "TransientError",
    "__version__",
    "deliver",
    "send",
]

_LAZY = {
    "Mailer": "smtpclient.mailer",
    "SessionPool": "smtpclient.pool",
    "Resolver": "smtpclient.resolver",
    "MailHost": "smtpclient.resolver",
    "deliver": "smtpclient.delivery",
    "DeliveryReport": "smtpclient.delivery",
    "DKIMSigner": "smtpclient.dkim",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())
