"""How ``send --bulk`` hands each message over: a shared pool, sessions, or MX delivery.

Every sender is called from several worker threads at once and turns each
message into per-recipient ``Outcome``s (never an exception).  The relay
sender is the library's ``Mailer`` (a thread-safe pool); while that is not
installed, a small set of sessions, one per worker thread, does the same job.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any, Protocol

from smtpclient.cli.common import ConnectionSettings, ServerAddress
from smtpclient.cli.outcomes import Outcome, from_error, from_result
from smtpclient.envelope import DSN
from smtpclient.errors import SMTPClientError, TransientError
from smtpclient.protocol.state import Stage
from smtpclient.session import Session

__all__ = ["Sender", "SessionSender", "direct_sender", "relay_sender"]


class Sender(Protocol):
    """Sends one message; safe to call from many threads."""

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        """Send and return one outcome per recipient."""

    def close(self, *, wait: bool = True) -> None:
        """Release connections (politely with QUIT when *wait*)."""


def optional(module: str, name: str) -> Any:
    """``module.name`` if that part of the library is installed, else None.

    The pool and direct delivery are separate modules; the CLI works
    (with less) without them.
    """
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


class SessionSender:
    """One ``Session`` per worker thread, kept open between its messages.

    A session the server closed while it sat idle is replaced and the
    message tried once more, but only when the failure came before any
    recipient was accepted (so nothing can be sent twice).
    """

    def __init__(
        self,
        server: ServerAddress,
        settings: ConnectionSettings,
        *,
        username: str | None,
        password: str | None,
        allow_insecure_auth: bool,
        dsn: DSN | None,
    ) -> None:
        self.server = server
        self.settings = settings
        self.username = username
        self.password = password
        self.allow_insecure_auth = allow_insecure_auth
        self.dsn = dsn
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._lock = threading.Lock()

    def _open(self) -> Session:
        session = Session.connect(
            self.server.host,
            self.server.port,
            tls=self.settings.tls,
            ssl_context=self.settings.ssl_context,
            server_hostname=self.settings.server_hostname,
            timeouts=self.settings.timeouts,
            local_hostname=self.settings.local_hostname,
            allow_insecure_auth=self.allow_insecure_auth,
        )
        with self._lock:
            self._sessions.append(session)
        try:
            if self.username is not None and self.password is not None:
                session.login(self.username, self.password)
        except BaseException:
            session.close()
            raise
        self._local.session = session
        return session

    def _session(self) -> tuple[Session, bool]:
        """This thread's session, and whether it was reused."""
        session: Session | None = getattr(self._local, "session", None)
        if session is not None and session.usable:
            return session, True
        return self._open(), False

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        for attempt in range(2):
            try:
                session, reused = self._session()
                result = session.send_message(message, sender, list(recipients), dsn=self.dsn)
            except (SMTPClientError, ValueError, TypeError) as exc:
                if attempt == 0 and reused and _idle_drop(exc):
                    continue
                return from_error(exc, recipients)
            return from_result(result)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self, *, wait: bool = True) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            if wait:
                try:
                    session.quit()
                except SMTPClientError:
                    session.close()
                except RuntimeError:  # still in use by a worker that was abandoned
                    session.close()
            else:
                session.close()


def _idle_drop(exc: BaseException) -> bool:
    """A reused connection that failed at MAIL, before anything was accepted."""
    return (
        isinstance(exc, TransientError)
        and not exc.outcome_unknown
        and exc.result is None
        and exc.stage in (Stage.MAIL, None)
        and exc.reply is None
    )


class MailerSender:
    """The library's thread-safe ``Mailer`` (a connection pool)."""

    def __init__(self, mailer: Any, dsn: DSN | None) -> None:
        self.mailer = mailer
        self.dsn = dsn
        self._accepts = set(inspect.signature(mailer.send).parameters)

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        kwargs: dict[str, Any] = {}
        for names, value in (
            (("from_addr", "sender"), sender),
            (("to_addrs", "recipients"), list(recipients)),
            (("dsn",), self.dsn),
        ):
            name = next((n for n in names if n in self._accepts), None)
            if name is not None and value is not None:
                kwargs[name] = value
        try:
            result = self.mailer.send(message, **kwargs)
        except (SMTPClientError, ValueError, TypeError) as exc:
            return from_error(exc, recipients)
        return from_result(result)

    def close(self, *, wait: bool = True) -> None:
        if wait:
            self.mailer.close()


def relay_sender(
    server: ServerAddress,
    settings: ConnectionSettings,
    *,
    username: str | None,
    password: str | None,
    allow_insecure_auth: bool,
    dsn: DSN | None,
    concurrency: int,
) -> Sender:
    """A ``Mailer`` with *concurrency* connections when the library has one
    that takes these settings, else per-thread sessions."""
    mailer_class = optional("smtpclient.mailer", "Mailer")
    if mailer_class is not None:
        options: dict[str, Any] = {
            "tls": settings.tls,
            "ssl_context": settings.ssl_context,
            "server_hostname": settings.server_hostname,
            "timeouts": settings.timeouts,
            "local_hostname": settings.local_hostname,
            "username": username,
            "password": password,
            "max_connections": concurrency,
        }
        if allow_insecure_auth:
            options["allow_insecure_auth"] = True
        accepted = set(inspect.signature(mailer_class).parameters)
        if set(options) <= accepted:
            return MailerSender(mailer_class(server.host, server.port, **options), dsn)
    return SessionSender(
        server,
        settings,
        username=username,
        password=password,
        allow_insecure_auth=allow_insecure_auth,
        dsn=dsn,
    )


class DirectSender:
    """``smtpclient.deliver`` for each message (``--direct``)."""

    def __init__(self, dsn: DSN | None) -> None:
        self.dsn = dsn

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        from smtpclient.cli.compose import Composed  # noqa: PLC0415
        from smtpclient.cli.send import deliver_direct  # noqa: PLC0415 - send imports bulk

        return deliver_direct(Composed(message, sender, tuple(recipients)), self.dsn)

    def close(self, *, wait: bool = True) -> None:
        """Nothing is kept open between deliveries."""


def direct_sender(dsn: DSN | None) -> Sender:
    """A sender that delivers to MX hosts."""
    return DirectSender(dsn)
