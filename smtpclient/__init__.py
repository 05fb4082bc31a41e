"""smtpclient: a threaded, synchronous SMTP client.

>>> import smtpclient
>>> with smtpclient.Session.connect("smtp.example.com", 587) as s:   # doctest: +SKIP
...     s.login("user", "secret")
...     result = s.send_message(msg)

See https://smtpclient.readthedocs.io for the guide.  Heavier parts (the
Mailer, the MX resolver, direct delivery) are imported on first use.

Module map, top layer first.  A module imports from its own layer or the
layers below it, never upwards, and no two modules import each other at run
time (``tests/unit/test_import_graph.py`` fails on any cycle):

1. faces -- ``cli/`` (the command line), ``contrib/`` (Django), ``compat/``
   (smtplib's API over the protocol core), ``api`` (``smtpclient.send``),
   ``demo`` (the throwaway server of ``smtpclient demo``).
2. services -- ``mailer`` (pooled, thread-safe) over ``pool`` (which uses
   ``poolparts``), ``server`` (settings, pool keys), ``retry``; direct
   delivery: ``delivery`` -> ``domain_delivery`` -> ``resolver`` ->
   ``dnslookup``/``dnscache``, with ``targets``, ``report``.
3. the engine -- ``session`` (``Session``) and the modules one conversation
   runs through: ``wire``, ``opening`` (connect, greeting, EHLO, STARTTLS),
   ``auth``/``mechanisms``, ``transaction``, ``batch``, ``fastpath``,
   ``plan``, ``content``, ``outcome``, ``message``, ``body``.
4. IO -- ``transport`` (one socket, deadlines), ``sockets`` (resolve,
   connect), ``eyeballs`` (racing addresses).
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
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())
