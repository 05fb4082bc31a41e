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

TYPE_CHECKING = False  # typing is not imported at start-up (mypy reads this as True)
if TYPE_CHECKING:
    from smtpclient.api import send
    from smtpclient.credentials import OAuth2, Password
    from smtpclient.delivery import DeliveryReport, deliver
    from smtpclient.envelope import DSN, Recipient
    from smtpclient.errors import PermanentError, ProtocolError, SMTPClientError, TransientError
    from smtpclient.mailer import Mailer
    from smtpclient.pool import SessionPool
    from smtpclient.protocol.extensions import Extensions
    from smtpclient.protocol.reply import Reply
    from smtpclient.resolver import MailHost, Resolver
    from smtpclient.results import SendResult
    from smtpclient.session import Session
    from smtpclient.timeouts import Timeouts
    from smtpclient.tls import TLSInfo, TLSMode

__version__ = "0.1.0"

__all__ = [
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

# Every public name is imported on first use (PEP 562), so ``import
# smtpclient`` -- a cron job's sendmail, a CLI's --help -- costs next to
# nothing; ``smtpclient.send`` then loads what a send needs, and no more.
_LAZY = {
    "send": "smtpclient.api",
    "OAuth2": "smtpclient.credentials",
    "Password": "smtpclient.credentials",
    "DSN": "smtpclient.envelope",
    "Recipient": "smtpclient.envelope",
    "PermanentError": "smtpclient.errors",
    "ProtocolError": "smtpclient.errors",
    "SMTPClientError": "smtpclient.errors",
    "TransientError": "smtpclient.errors",
    "Extensions": "smtpclient.protocol.extensions",
    "Reply": "smtpclient.protocol.reply",
    "SendResult": "smtpclient.results",
    "Session": "smtpclient.session",
    "Timeouts": "smtpclient.timeouts",
    "TLSInfo": "smtpclient.tls",
    "TLSMode": "smtpclient.tls",
    "Mailer": "smtpclient.mailer",
    "SessionPool": "smtpclient.pool",
    "Resolver": "smtpclient.resolver",
    "MailHost": "smtpclient.resolver",
    "deliver": "smtpclient.delivery",
    "DeliveryReport": "smtpclient.delivery",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        # Submodules not yet imported (smtpclient.errors, ...) are found by
        # the import system, not here.
        raise AttributeError(f"module 'smtpclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The package logger stays silent unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
