"""smtpclient: a threaded, synchronous SMTP client.

>>> import smtpclient
>>> with smtpclient.Session.connect("smtp.example.com", 587) as s:   # doctest: +SKIP
...     s.login("user", "secret")
...     result = s.send_message(msg)

See https://smtpclient.readthedocs.io for the guide.  Every public name
is imported on first use, so `import smtpclient` itself costs little.

Module map, top layer first.  A module imports from its own layer or the
layers below it, never upwards, and no two modules import each other at run
time (``tests/unit/test_import_graph.py`` fails on any cycle):

1. faces -- ``cli/`` (the command line), ``contrib/`` (Django), ``compat/``
   (smtplib's API over the protocol core), ``api`` (``smtpclient.send``),
   ``demo`` (the throwaway server of ``smtpclient demo``).
2. services -- ``mailer`` (pooled, thread-safe) over ``pool`` (which uses
   ``poolparts``), ``server`` (settings, pool keys), ``retry``; direct
   delivery: ``delivery`` -> ``domain_delivery`` -> ``resolver`` ->
   ``dnslookup``/``dnscache``, with ``targets``, ``report`` and
   ``delivery_settings`` (the settings and time budget of one call).
3. the engine -- ``session`` (``Session``) and the modules one conversation
   runs through: ``wire``, ``opening`` (connect, greeting, EHLO, STARTTLS),
   ``auth``/``mechanisms`` (``scramcache``: SCRAM keys kept),
   ``transaction``, ``batch``, ``fastpath``, ``plan``, ``content``,
   ``outcome``, ``message``, ``body``.
4. IO -- ``transport`` (one socket, deadlines), ``sockets`` (resolve,
   connect), ``eyeballs`` (racing addresses), ``tlsresume`` (TLS sessions
   kept for the next connection).
5. values -- ``tls`` (contexts, ``TLSMode``, ``TLSInfo``), ``timeouts``,
   ``results``, ``envelope``, ``credentials``, ``tlspolicy``, ``hostname``,
   ``certinfo``, ``saslprep``.
6. ``protocol/`` -- the sans-IO core, no sockets or clocks: ``reply``,
   ``commands``, ``extensions``, ``data``, ``status`` (reply to error
   class), ``state``.
7. ``errors/`` -- every exception class; imports nothing else of the package.

docs/contributing.md has the longer version.
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
    "DKIMSigner": "smtpclient.dkim",
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
