"""A Django email backend that sends through a pooled, shared ``Mailer``.

Django 6.1 and later, configured with ``MAILERS`` (nothing is read from the
deprecated ``EMAIL_*`` settings then)::

    MAILERS = {
        "default": {
            "BACKEND": "smtpclient.contrib.django.EmailBackend",
            "OPTIONS": {"host": "smtp.example.com", "use_tls": True,
                        "username": "u", "password": "p", "max_connections": 8},
        },
    }

OPTIONS takes the names Django's own SMTP backend takes (``host``,
``port``, ``username``, ``password``, ``use_tls``, ``use_ssl``,
``timeout``, ``ssl_certfile``, ``ssl_keyfile``, ``fail_silently``) plus any
``Mailer`` keyword argument (``max_connections``, ``retry``,
``ssl_context``, ``local_hostname``, ``dkim`` -- a ``DKIMSigner`` or
several, signing every message --, ...).  An unknown option is Django's
``InvalidMailer`` naming it.  As in Django, ``port`` defaults to 465 with
``use_ssl``, 587 with ``use_tls`` and 25 otherwise.

Django 4.2 to 6.0 (and 6.1 without ``MAILERS``)::

    EMAIL_BACKEND = "smtpclient.contrib.django.EmailBackend"

reads ``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``,
``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS`` (STARTTLS, required),
``EMAIL_USE_SSL`` (TLS from the first byte), ``EMAIL_TIMEOUT`` (seconds per
stage), ``EMAIL_SSL_CERTFILE``/``EMAIL_SSL_KEYFILE`` (a client certificate),
and ``SMTPCLIENT_MAILER_OPTIONS`` (a dict of further ``Mailer`` arguments).

Certificates are verified against certifi's CA bundle *and* the system's
trust store (which honours ``SSL_CERT_FILE``), so whatever Django's SMTP
backend trusted is trusted here too.  Like Django's backend, a password
configured without TLS is sent in plaintext (with a warning in the log).

Connections are pooled per process and shared by every request and thread
with the same alias and settings.  ``open()`` makes sure a pooled connection
works (connect, TLS, AUTH) and ``close()`` closes nothing: the pool outlives
the backend object.  ``close_shared_mailers()`` closes them all (at
shutdown, or in tests); a forked worker drops its parent's connections and
opens its own.
"""

from __future__ import annotations

import inspect
import logging
import smtplib
import ssl
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import AddressHeader
from typing import Any

import django
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

from smtpclient.contrib.djangoversions import (
    invalid_mailer,
    message_bytes,
    quiet_deprecated_setting_reads,
    warn_direct_construction,
)
from smtpclient.contrib.shared import MailerRegistry, settings_key
from smtpclient.errors import ReplyTimeoutError, SMTPClientError, SMTPTimeoutError
from smtpclient.headercheck import check_message_header
from smtpclient.mailer import Mailer
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode, verifying_context

__all__ = [
    "EmailBackend",
    "as_smtplib_would",
    "close_shared_mailers",
    "mailer_options",
    "shared_mailer",
]

log = logging.getLogger(__name__)

_REGISTRY = MailerRegistry()
_MAILERS_API = django.VERSION >= (6, 1)
# Mailer keyword arguments an OPTIONS dict may carry besides Django's names
# (host, port, tls and the login are what Django's options map to).
MAILER_OPTION_NAMES = frozenset(inspect.signature(Mailer).parameters) - {
    "host",
    "port",
    "tls",
    "username",
    "password",
}
_EXCLUSIVE = (
    "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those settings to True."
)


def _tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    context = verifying_context(certfile=certfile, keyfile=keyfile)
    context.load_default_certs()  # the system store too, as Django uses it
    return context


def mailer_options(
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    use_tls: bool,
    use_ssl: bool,
    timeout: float | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The ``Mailer(**arguments)`` for Django's SMTP settings plus *options*
    (Mailer keyword arguments, which win over what the settings imply)."""
    mode = TLSMode.IMPLICIT if use_ssl else TLSMode.STARTTLS if use_tls else TLSMode.NONE
    login = bool(username and password)
    arguments: dict[str, Any] = {
        "host": host,
        "port": port,
        "tls": mode,
        "username": username if login else None,
        "password": password if login else None,
    }
    if mode is not TLSMode.NONE:
        arguments["ssl_context"] = _tls_context(ssl_certfile, ssl_keyfile)
    elif login:
        # Django's SMTP backend logs in over plaintext when told to; so do we.
        arguments["allow_insecure_auth"] = True
        log.warning(
            "a password is configured without use_tls or use_ssl: the password for %s:%s "
            "is sent unencrypted",
            host,
            port,
        )
    if timeout is not None:
        arguments["timeouts"] = Timeouts.uniform(timeout)
    arguments.update(options)
    return arguments


def shared_mailer(
    *,
    host: str,
    port: int,
    username: str | None = None,
    password: str | None = None,
    use_tls: bool = False,
    use_ssl: bool = False,
    timeout: float | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    options: dict[str, Any] | None = None,
    alias: str | None = None,
) -> Mailer:
    """The process-wide ``Mailer`` for this alias and these settings,
    created on first use.

    Raises:
        ValueError: both *use_tls* and *use_ssl*, or bad Mailer options.
    """
    if use_tls and use_ssl:
        raise ValueError(_EXCLUSIVE)
    settings_: dict[str, Any] = {
        "host": host,
        "port": port,
        "username": username or None,
        "password": password or None,
        "use_tls": bool(use_tls),
        "use_ssl": bool(use_ssl),
        "timeout": timeout,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
    }
    extra = dict(options or {})
    key = settings_key(alias, options={**settings_, **{f"+{k}": v for k, v in extra.items()}})
    return _REGISTRY.get(key, lambda: Mailer(**mailer_options(**settings_, options=extra)))


def close_shared_mailers(timeout: float | None = 30.0) -> None:
    """Close every shared Mailer (QUIT to each pooled connection)."""
    _REGISTRY.close_all(timeout)


def as_smtplib_would(exc: BaseException) -> BaseException:
    """*exc*, or for a reply that timed out a ``ReplyTimeoutError`` twin.

    Django's own backend (smtplib) raises ``SMTPServerDisconnected`` when a
    reply does not come in time; code written for it catches that.  The
    twin is both that and our ``SMTPTimeoutError`` (a ``TimeoutError``),
    with the same evidence.  Connect timeouts stay as they are: smtplib
    raises a plain ``TimeoutError`` for those too.
    """
    if (
        isinstance(exc, SMTPTimeoutError)
        and not isinstance(exc, smtplib.SMTPServerDisconnected)
        and exc.stage not in (Stage.DNS, Stage.CONNECT)
    ):
        twin = ReplyTimeoutError(exc.message)
        twin.__dict__.update(exc.__dict__)
        twin.__cause__ = exc
        return twin
    return exc


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """A Django email backend (``MAILERS`` BACKEND or ``EMAIL_BACKEND``).

    Takes the keyword arguments of Django's SMTP backend plus ``Mailer``'s.
    With ``alias`` (given by ``django.core.mail.mailers``) only the
    arguments count; without it, each Django argument defaults to its
    ``EMAIL_*`` setting.  ``send_messages`` returns the number of messages
    sent.  Every message is attempted even if an earlier one failed; then,
    unless *fail_silently*, the first failure is raised (an
    ``SMTPClientError``, which is also an ``smtplib.SMTPException``).

    Raises:
        django.core.mail.InvalidMailer: (with ``alias``) no ``host``, both
            ``use_tls`` and ``use_ssl``, or an unknown option.
        ValueError: (without ``alias``) ``EMAIL_USE_TLS`` and
            ``EMAIL_USE_SSL`` are both set.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.options = {n: kwargs.pop(n) for n in list(kwargs) if n in MAILER_OPTION_NAMES}
        self.dkim = self.options.get("dkim")  # DKIMSigner(s), passed to the Mailer
        if _MAILERS_API and kwargs.get("alias") is None:
            warn_direct_construction()
        # alias and any leftover keyword: Django names an unknown option.
        super().__init__(**kwargs)
        self.alias: str | None = kwargs.get("alias")
        self.fail_silently = fail_silently
        if self.alias is None:
            self._from_settings(
                host, port, username, password, use_tls, use_ssl, timeout,
                ssl_keyfile, ssl_certfile,
            )  # fmt: skip
            return
        self.host = host
        self.username = username
        self.password = password
        self.use_tls = bool(use_tls)
        self.use_ssl = bool(use_ssl)
        self.timeout = timeout
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        if host is None:
            raise invalid_mailer("OPTIONS must define 'host'.", self.alias)
        if self.use_ssl and self.use_tls:
            raise invalid_mailer(
                "The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
                "Set at most one of them to True.",
                self.alias,
            )
        self.port = port if port is not None else 465 if use_ssl else 587 if use_tls else 25

    def _from_settings(self, *values: Any) -> None:
        if _MAILERS_API:
            quiet_deprecated_setting_reads(__name__)
        host, port, username, password, use_tls, use_ssl, timeout, keyfile, certfile = values
        self.host = host or settings.EMAIL_HOST
        self.port = port or settings.EMAIL_PORT
        self.username = settings.EMAIL_HOST_USER if username is None else username
        self.password = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls = settings.EMAIL_USE_TLS if use_tls is None else use_tls
        self.use_ssl = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
        self.timeout = settings.EMAIL_TIMEOUT if timeout is None else timeout
        self.ssl_keyfile = settings.EMAIL_SSL_KEYFILE if keyfile is None else keyfile
        self.ssl_certfile = settings.EMAIL_SSL_CERTFILE if certfile is None else certfile
        if self.use_ssl and self.use_tls:
            raise ValueError(_EXCLUSIVE)
        legacy = getattr(settings, "SMTPCLIENT_MAILER_OPTIONS", None) or {}
        self.options = {**legacy, **self.options}

    @property
    def mailer(self) -> Mailer:
        """The shared ``Mailer`` for this backend's alias and settings."""
        return shared_mailer(
            host=str(self.host),
            port=int(self.port),
            username=self.username,
            password=self.password,
            use_tls=bool(self.use_tls),
            use_ssl=bool(self.use_ssl),
            timeout=self.timeout,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            options=self.options,
            alias=self.alias,
        )

    def open(self) -> bool | None:
        """Make sure a pooled connection to the server works (connect, TLS,
        AUTH).  Returns True if a new connection was opened, False if an idle
        one was healthy, None if opening failed and ``fail_silently``.

        Raises:
            SMTPClientError: the connection could not be opened (an
                ``OSError``), unless ``fail_silently``.
        """
        try:
            with self.mailer.pool.checkout(self.mailer.settings) as lease:
                return not lease.reused
        except OSError:
            if self.fail_silently:
                return None
            raise

    def close(self) -> None:
        """Nothing to close: pooled connections outlive the backend object."""

    def send_messages(self, email_messages: Iterable[Any]) -> int:
        """Send Django ``EmailMessage`` objects; return how many were sent.

        Messages without recipients are skipped (not counted), as Django does.

        Raises:
            SMTPClientError: the first failure, unless ``fail_silently``.
            ValueError: an invalid address (never silenced, as in Django).
        """
        items = [item for item in map(self._envelope, email_messages) if item is not None]
        if not items:
            return 0
        try:
            outcomes = self.mailer.send_many(items)
        except SMTPClientError as exc:
            if self.fail_silently:
                return 0
            raise as_smtplib_would(exc) from exc.__cause__
        failures = [o for o in outcomes if isinstance(o, Exception)]
        usage = [o for o in failures if not isinstance(o, SMTPClientError)]
        if usage:
            raise usage[0]  # a mistake in the message, never silenced (as in Django)
        if failures and not self.fail_silently:
            raise as_smtplib_would(failures[0])
        return sum(isinstance(o, SendResult) for o in outcomes)

    def prep_address(self, address: Any, force_ascii: bool = True) -> str:
        """The addr-spec of *address* ("Name <a@b>" → "a@b"); a bare local
        part ("webmaster") is kept, for the server to qualify.  With
        *force_ascii* (the default, as in Django) a non-ASCII local part is
        refused; the domain is left as written (the session sends non-ASCII
        domains as IDNA A-labels).

        Raises:
            ValueError: not exactly one well-formed address, or CR/LF in it.
        """
        address = str(address)  # lazy translation strings too
        try:
            parsed = AddressHeader.value_parser(address)
        except (HeaderParseError, ValueError, IndexError) as exc:  # IndexError: 3.12.1's parser
            raise ValueError(f"Invalid address {address!r}: {exc}") from None
        defects = {str(defect) for defect in parsed.all_defects}
        defects.discard("addr-spec local part with no domain")  # "From: webmaster"
        if not force_ascii:
            defects.discard("local-part contains non-ASCII characters)")
        if defects:
            raise ValueError(f"Invalid address {address!r}: {'; '.join(sorted(defects))}")
        mailboxes = parsed.all_mailboxes
        if len(mailboxes) != 1:
            raise ValueError(f"Invalid address {address!r}: must be a single address")
        mailbox = mailboxes[0]
        if force_ascii and not mailbox.local_part.isascii():
            raise ValueError(
                f"Invalid address {address!r}: local-part contains non-ASCII characters"
            )
        return str(mailbox.addr_spec)

    def _envelope(self, message: Any) -> tuple[str, list[str], bytes] | None:
        recipients = message.recipients()
        if not recipients:
            return None
        sender = self.prep_address(message.from_email)
        rcpts = [self.prep_address(address) for address in recipients]
        data, names = message_bytes(message)
        check_message_header(data, names)  # no header line the message lacks
        return sender, rcpts, data


def __getattr__(name: str) -> object:
    """``CeleryEmailBackend`` (queues instead of sending) is importable from
    here too, loaded on first use so the plain backend never needs Celery."""
    if name == "CeleryEmailBackend":
        from smtpclient.contrib.celery_django import CeleryEmailBackend  # noqa: PLC0415

        return CeleryEmailBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
