"""A Django email backend that sends through a pooled, shared ``Mailer``.

In settings.py::

    EMAIL_BACKEND = "smtpclient.contrib.django.EmailBackend"

It reads Django's own settings with Django's meaning:

* ``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``
  (AUTH when both user and password are set, as Django does);
* ``EMAIL_USE_TLS`` -- STARTTLS, required (``TLSMode.STARTTLS``);
  ``EMAIL_USE_SSL`` -- TLS from the first byte (``TLSMode.IMPLICIT``);
  neither -- no TLS at all (``TLSMode.NONE``).  Both at once is an error.
* ``EMAIL_TIMEOUT`` -- seconds per stage (``Timeouts.uniform``);
* ``EMAIL_SSL_CERTFILE``/``EMAIL_SSL_KEYFILE`` -- a client certificate.

Certificates are verified against certifi's CA bundle *and* the system's
trust store (which honours ``SSL_CERT_FILE``), so whatever Django's SMTP
backend trusted is trusted here too.

Like Django's SMTP backend, a password configured without TLS is sent in
plaintext (``allow_insecure_auth=True`` is set for that case, with a
warning in the log).  Set ``EMAIL_USE_TLS`` or ``EMAIL_USE_SSL`` to avoid it.

``SMTPCLIENT_MAILER_OPTIONS`` (a dict, optional) passes further ``Mailer``
arguments: ``max_connections``, ``retry``, ``ssl_context``, ``dkim``, ...
The backend's own ``dkim`` option (a ``DKIMSigner`` or several; a keyword
argument, so also an ``OPTIONS`` entry) signs every message it sends.

Connections are pooled per process and shared by every request and thread
with the same settings; ``open()`` and ``close()`` do not open or close
sockets.  ``close_shared_mailers()`` closes them all (at shutdown, or in
tests); a forked worker drops its parent's connections and opens its own.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from smtpclient.errors import SMTPClientError
from smtpclient.headercheck import check_message_header
from smtpclient.mailer import Mailer
from smtpclient.results import SendResult
from smtpclient.server import secret_digest
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode, verifying_context

__all__ = ["EmailBackend", "close_shared_mailers", "shared_mailer"]

log = logging.getLogger(__name__)

_mailers: dict[tuple[Any, ...], Mailer] = {}
_mailers_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A parent thread may have held the lock at the moment of the fork.  The
    # Mailers stay: their pools drop the parent's connections themselves.
    global _mailers_lock  # noqa: PLW0603
    _mailers_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    context = verifying_context(certfile=certfile, keyfile=keyfile)
    context.load_default_certs()  # the system store too, as Django uses it
    return context


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
) -> Mailer:
    """The process-wide ``Mailer`` for these settings, created on first use.

    Raises:
        ValueError: both *use_tls* and *use_ssl*, or bad Mailer options.
    """
    if use_tls and use_ssl:
        raise ValueError(
            "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those "
            "settings to True."
        )
    extra = dict(options or {})
    key = (
        host,
        port,
        username or None,
        secret_digest(password) if password else None,
        bool(use_tls),
        bool(use_ssl),
        timeout,
        ssl_certfile,
        ssl_keyfile,
        tuple(sorted((name, _hashable(value)) for name, value in extra.items())),
    )
    with _mailers_lock:
        mailer = _mailers.get(key)
        if mailer is None or mailer.closed:
            mailer = _mailers[key] = _build(
                host, port, username, password, use_tls, use_ssl, timeout,
                ssl_certfile, ssl_keyfile, extra,
            )  # fmt: skip
        return mailer


def _build(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    use_tls: bool,
    use_ssl: bool,
    timeout: float | None,
    certfile: str | None,
    keyfile: str | None,
    extra: dict[str, Any],
) -> Mailer:
    mode = TLSMode.IMPLICIT if use_ssl else TLSMode.STARTTLS if use_tls else TLSMode.NONE
    login = bool(username and password)
    if mode is not TLSMode.NONE:
        extra.setdefault("ssl_context", _tls_context(certfile, keyfile))
    elif login:
        # Django's SMTP backend logs in over plaintext when told to; so do we.
        extra.setdefault("allow_insecure_auth", True)
        log.warning(
            "EMAIL_HOST_PASSWORD is set without EMAIL_USE_TLS or EMAIL_USE_SSL: the password "
            "for %s:%s is sent unencrypted",
            host,
            port,
        )
    if timeout is not None:
        extra.setdefault("timeouts", Timeouts.uniform(timeout))
    return Mailer(
        host,
        port,
        tls=mode,
        username=username if login else None,
        password=password if login else None,
        **extra,
    )


def close_shared_mailers(timeout: float | None = 30.0) -> None:
    """Close every shared Mailer (QUIT to each pooled connection)."""
    with _mailers_lock:
        mailers = list(_mailers.values())
        _mailers.clear()
    for mailer in mailers:
        mailer.close(timeout)


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """``EMAIL_BACKEND = "smtpclient.contrib.django.EmailBackend"``.

    Takes the keyword arguments of Django's SMTP backend (each defaults to
    its ``EMAIL_*`` setting).  ``send_messages`` returns the number of
    messages sent.  Every message is attempted even if an earlier one
    failed; then, unless *fail_silently*, the first failure is raised (an
    ``SMTPClientError``, which is also an ``smtplib.SMTPException``).

    Raises:
        ValueError: ``EMAIL_USE_TLS`` and ``EMAIL_USE_SSL`` are both set.
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
        dkim: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.dkim = dkim  # DKIMSigner(s), passed to the Mailer
        self.host = host or settings.EMAIL_HOST
        self.port = port or settings.EMAIL_PORT
        self.username = settings.EMAIL_HOST_USER if username is None else username
        self.password = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls = settings.EMAIL_USE_TLS if use_tls is None else use_tls
        self.use_ssl = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
        self.timeout = settings.EMAIL_TIMEOUT if timeout is None else timeout
        self.ssl_keyfile = settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
        self.ssl_certfile = settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
        if self.use_ssl and self.use_tls:
            raise ValueError(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those "
                "settings to True."
            )

    @property
    def mailer(self) -> Mailer:
        """The shared ``Mailer`` for this backend's settings."""
        return shared_mailer(
            host=self.host,
            port=int(self.port),
            username=self.username,
            password=self.password,
            use_tls=bool(self.use_tls),
            use_ssl=bool(self.use_ssl),
            timeout=self.timeout,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            options=_with_dkim(getattr(settings, "SMTPCLIENT_MAILER_OPTIONS", None), self.dkim),
        )

    def open(self) -> bool:
        """Nothing to open: connections come from the shared pool.  Returns False."""
        return False

    def close(self) -> None:
        """Nothing to close: pooled connections outlive the backend object."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send Django ``EmailMessage`` objects; return how many were sent.

        Messages without recipients are skipped (not counted), as Django does.

        Raises:
            SMTPClientError: the first failure, unless ``fail_silently``.
            ValueError: an address Django cannot sanitise.
        """
        if not email_messages:
            return 0
        items = [item for item in map(self._envelope, email_messages) if item is not None]
        if not items:
            return 0
        try:
            outcomes = self.mailer.send_many(items)
        except SMTPClientError:
            if self.fail_silently:
                return 0
            raise
        failures = [o for o in outcomes if isinstance(o, Exception)]
        usage = [o for o in failures if not isinstance(o, SMTPClientError)]
        if usage:
            raise usage[0]  # a mistake in the message, never silenced (as in Django)
        if failures and not self.fail_silently:
            raise failures[0]
        return sum(isinstance(o, SendResult) for o in outcomes)

    @staticmethod
    def _envelope(message: Any) -> tuple[str, list[str], bytes] | None:
        recipients = message.recipients()
        if not recipients:
            return None
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = _address(sanitize_address(message.from_email, encoding))
        rcpts = [_address(sanitize_address(addr, encoding)) for addr in recipients]
        built = message.message()
        data = built.as_bytes(linesep="\r\n")
        check_message_header(data, built.keys())  # no header line the message lacks
        return sender, rcpts, data


def _with_dkim(options: dict[str, Any] | None, dkim: Any) -> dict[str, Any] | None:
    return options if dkim is None else {**(options or {}), "dkim": dkim}


def _address(sanitized: str) -> str:
    """The bare address from Django's "Name <addr>" form (as smtplib does)."""
    address = parseaddr(sanitized)[1]
    return address or sanitized
