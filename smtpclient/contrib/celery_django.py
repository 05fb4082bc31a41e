"""A Django email backend that queues each message for a Celery worker
instead of sending it in the request (needs the ``django`` and ``celery``
extras).  The worker sends it with ``smtpclient.send_message`` (see
``smtpclient.contrib.celery``), whose Mailer settings come from the Celery
setting ``smtpclient``; Django's ``EMAIL_HOST`` & co. are not used here.

With ``EMAIL_BACKEND``::

    EMAIL_BACKEND = "smtpclient.contrib.django.CeleryEmailBackend"
    SMTPCLIENT_CELERY = {"app": "proj.celery:app", "queue": "mail"}   # optional

With Django 6.1's ``MAILERS`` (the OPTIONS become keyword arguments)::

    MAILERS = {
        "default": {
            "BACKEND": "smtpclient.contrib.django.CeleryEmailBackend",
            "OPTIONS": {"app": "proj.celery:app", "queue": "mail", "priority": 5},
        },
    }

``send_messages`` returns the number of messages *queued*; what became of
each is in its task result (``backend.last_results``, Celery
``AsyncResult`` objects, in order).  Delivery is at least once: every
message has a Message-ID (Django adds one) for the receiving side to
recognise a duplicate.
"""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Mapping, Sequence
from email.generator import BytesGenerator
from email.message import Message
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from smtpclient.contrib.celery import enqueue

__all__ = ["CeleryEmailBackend"]

log = logging.getLogger(__name__)

SETTINGS_NAME = "SMTPCLIENT_CELERY"


def _load_app(app: Any) -> Any:
    """A Celery app from itself, or from "package.module:attribute" (or
    "package.module.attribute"); None means Celery's current app.

    Raises:
        ImportError, AttributeError: the path does not name an object.
    """
    if not isinstance(app, str):
        return app
    module, _, name = app.partition(":") if ":" in app else app.rpartition(".")
    if not module or not name:
        raise ImportError(f"{app!r} is not 'package.module:app'")
    return getattr(importlib.import_module(module), name)


class CeleryEmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Queue Django ``EmailMessage`` objects for ``smtpclient.send_message``.

    Keyword arguments (each defaulting to the ``SMTPCLIENT_CELERY`` setting's
    entry of the same name): *app* (a Celery app or its import path;
    default: Celery's current app), *queue*, *priority*, and *options*
    (further ``apply_async`` arguments).  *alias* is the ``MAILERS`` name
    Django passes.  With *fail_silently*, a broker that cannot be reached
    makes ``send_messages`` return the number queued so far instead of
    raising.

    Raises:
        TypeError: an unknown keyword argument (from Django 6.1 on; earlier
            versions ignore them, as Django's own backends do).
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        app: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # fail_silently is handled here (Django 6.1 deprecates it in the base class).
        super().__init__(**kwargs)
        defaults: Mapping[str, Any] = getattr(settings, SETTINGS_NAME, None) or {}
        self.fail_silently = fail_silently
        self.app = app if app is not None else defaults.get("app")
        self.apply_options: dict[str, Any] = dict(defaults.get("options") or {})
        self.apply_options.update(options or {})
        for name, value in (("queue", queue), ("priority", priority)):
            chosen = value if value is not None else defaults.get(name)
            if chosen is not None:
                self.apply_options[name] = chosen
        self.last_results: list[Any] = []

    def open(self) -> bool:
        """Nothing to open (the broker connection is Celery's).  Returns False."""
        return False

    def close(self) -> None:
        """Nothing to close."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Queue each message; return how many were queued.

        Messages without recipients are skipped (not counted), as Django does.

        Raises:
            ValueError, TypeError: a message that cannot be queued (an
                address Django cannot sanitise), never silenced.
            The broker's errors (``kombu.exceptions.OperationalError``),
                unless *fail_silently*.
        """
        self.last_results = []
        if not email_messages:
            return 0
        app = _load_app(self.app)
        queued = 0
        for message in email_messages:
            envelope = _envelope(message)
            if envelope is None:
                continue
            try:
                result = enqueue(envelope, app=app, **self.apply_options)
            except (ValueError, TypeError):
                raise
            except Exception:
                if not self.fail_silently:
                    raise
                log.exception("could not queue a message for smtpclient.send_message")
                return queued
            self.last_results.append(result)
            queued += 1
        return queued


def _envelope(message: Any) -> tuple[str, list[str], bytes] | None:
    recipients = message.recipients()
    if not recipients:
        return None
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = _address(sanitize_address(message.from_email, encoding))
    rcpts = [_address(sanitize_address(addr, encoding)) for addr in recipients]
    return sender, rcpts, _crlf_bytes(message.message())


def _crlf_bytes(mime: Message) -> bytes:
    """The message as CRLF bytes.  (Django up to 5.2 returns its own MIME
    classes, whose ``as_bytes`` takes *linesep*; 6.x returns a standard
    ``EmailMessage``, whose ``as_bytes`` does not: a generator serves both.)"""
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False).flatten(mime, linesep="\r\n")
    return out.getvalue()


def _address(sanitized: str) -> str:
    """The bare address from Django's "Name <addr>" form (as smtplib does)."""
    return parseaddr(sanitized)[1] or sanitized
