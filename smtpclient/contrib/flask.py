"""Flask integration: one shared, pooled ``Mailer`` per application.

::

    from smtpclient.contrib.flask import Mail

    mail = Mail()

    def create_app():
        app = Flask(__name__)
        app.config["SMTPCLIENT"] = {"host": "smtp.example.com", "port": 587,
                                    "tls": "starttls", "username": "u",
                                    "password": "p", "max_connections": 8}
        mail.init_app(app)
        return app

    @app.post("/signup")
    def signup():
        mail.send(message)          # email.message.EmailMessage

``SMTPCLIENT`` holds ``Mailer`` keyword arguments (``host`` is required;
``tls`` may be a ``TLSMode`` or its value, "none", "opportunistic",
"starttls", "implicit").  The Mailer is created on first use in each
process and shared by every request and thread of that application.

It is *not* closed per request (``teardown_appcontext`` runs after every
request); it is closed by ``Mail.close(app)`` or at interpreter exit.  A
worker forked after first use (gunicorn ``--preload``) drops the
connections it inherited and opens its own; it never writes to its
parent's.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from email.message import Message
from typing import Any

from flask import Flask, current_app

from smtpclient.body import BodySource
from smtpclient.mailer import Item, Mailer
from smtpclient.results import SendResult
from smtpclient.tls import TLSMode

__all__ = ["CONFIG_KEY", "EXTENSION_KEY", "Mail"]

CONFIG_KEY = "SMTPCLIENT"
EXTENSION_KEY = "smtpclient"


def mailer_arguments(config: Any) -> dict[str, Any]:
    """``Mailer(**arguments)`` from an app's ``SMTPCLIENT`` config value.

    Raises:
        ValueError: the value is not a dict with a ``host``, or ``tls`` is
            not a ``TLSMode`` value.
    """
    if not isinstance(config, dict) or not config.get("host"):
        raise ValueError(
            f'app.config["{CONFIG_KEY}"] must be a dict of Mailer arguments with a "host", '
            f"got {type(config).__name__}"
        )
    arguments = dict(config)
    tls = arguments.get("tls")
    if isinstance(tls, str):
        try:
            arguments["tls"] = TLSMode(tls.lower())
        except ValueError:
            names = ", ".join(repr(mode.value) for mode in TLSMode)
            raise ValueError(f"unknown tls {tls!r} in {CONFIG_KEY} (one of {names})") from None
    return arguments


class _AppMailer:
    """An app's Mailer, built on first use under a lock."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        self.arguments = arguments
        self.lock = threading.Lock()
        self.mailer: Mailer | None = None

    def get(self) -> Mailer:
        with self.lock:
            if self.mailer is None or self.mailer.closed:
                self.mailer = Mailer(**self.arguments)
                _close_at_exit_once()
            return self.mailer

    def close(self, timeout: float | None = 30.0) -> None:
        with self.lock:
            mailer, self.mailer = self.mailer, None
        if mailer is not None:
            mailer.close(timeout)


_OPEN: weakref.WeakSet[_AppMailer] = weakref.WeakSet()


def _close_at_exit() -> None:
    for holder in list(_OPEN):
        holder.close(timeout=5.0)


@functools.cache
def _close_at_exit_once() -> None:
    # Registered after the first Mailer exists: atexit runs hooks last-in
    # first-out, and the pool's own exit hook (weakref.finalize, which drops
    # sockets without QUIT) is registered when the first pool is made.
    atexit.register(_close_at_exit)


def _after_fork_in_child() -> None:
    # A parent thread may have held a lock at the moment of the fork; the
    # Mailers stay (their pools drop the parent's connections themselves).
    for holder in list(_OPEN):
        holder.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Mail:
    """The Flask extension: ``Mail(app)`` or ``Mail()`` + ``init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``app.config["SMTPCLIENT"]`` (checked now; nothing connects yet).

        Raises:
            ValueError: the config is missing or malformed (see
                ``mailer_arguments``).
        """
        holder = _AppMailer(mailer_arguments(app.config.get(CONFIG_KEY)))
        previous = app.extensions.get(EXTENSION_KEY)
        if isinstance(previous, _AppMailer):
            previous.close()
        app.extensions[EXTENSION_KEY] = holder
        _OPEN.add(holder)

    @staticmethod
    def _holder(app: Flask | None) -> _AppMailer:
        app = app if app is not None else current_app
        holder = app.extensions.get(EXTENSION_KEY)
        if not isinstance(holder, _AppMailer):
            raise RuntimeError("smtpclient.contrib.flask.Mail.init_app(app) was not called")
        return holder

    def mailer(self, app: Flask | None = None) -> Mailer:
        """The shared ``Mailer`` of *app* (default: ``current_app``).

        Raises:
            RuntimeError: no app context and no *app*, or ``init_app`` was
                not called for the app.
        """
        return self._holder(app).get()

    def send(self, message: Message, **options: Any) -> SendResult:
        """``Mailer.send`` with the current app's Mailer.

        Raises: as ``Mailer.send``.
        """
        return self.mailer().send(message, **options)

    def sendmail(
        self, sender: str, recipients: Sequence[str] | str, content: BodySource, **options: Any
    ) -> SendResult:
        """``Mailer.sendmail`` with the current app's Mailer.

        Raises: as ``Mailer.sendmail``.
        """
        return self.mailer().sendmail(sender, recipients, content, **options)

    def send_many(self, messages: Iterable[Item]) -> list[SendResult | Exception]:
        """``Mailer.send_many`` with the current app's Mailer (one outcome per message)."""
        return self.mailer().send_many(messages)

    def close(self, app: Flask | None = None, timeout: float | None = 30.0) -> None:
        """Close *app*'s Mailer (QUIT to its pooled connections).  A later
        send opens a new one.

        Raises:
            RuntimeError: as ``mailer``.
        """
        self._holder(app).close(timeout)
