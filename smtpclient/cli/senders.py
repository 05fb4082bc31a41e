"""How ``send --bulk`` hands each message over: the shared pool, or MX delivery.

Every sender is called from several worker threads at once and turns each
message into per-recipient ``Outcome``s, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

from smtpclient.cli.common import ConnectionSettings, ServerAddress
from smtpclient.cli.compose import Composed
from smtpclient.cli.direct import DirectOptions, deliver_direct
from smtpclient.cli.outcomes import Outcome, from_error, from_result
from smtpclient.envelope import DSN
from smtpclient.errors import SMTPClientError
from smtpclient.mailer import Mailer

__all__ = ["DirectSender", "MailerSender", "Sender"]


class Sender(Protocol):
    """Sends one message; safe to call from many threads."""

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        """Send and return one outcome per recipient."""

    def close(self, *, wait: bool = True) -> None:
        """Release connections (politely, with QUIT, when *wait*)."""


class MailerSender:
    """The library's thread-safe ``Mailer``: at most *concurrency* pooled
    connections, reused between messages, a connection the server closed
    while idle replaced and the message tried again (only when nothing of it
    can have been accepted)."""

    def __init__(
        self,
        server: ServerAddress,
        settings: ConnectionSettings,
        *,
        username: str | None,
        password: str | None,
        allow_insecure_auth: bool,
        dsn: DSN | None,
        concurrency: int,
    ) -> None:
        self.dsn = dsn
        self.mailer = Mailer(
            server.host,
            server.port,
            tls=settings.tls,
            ssl_context=settings.ssl_context,
            server_hostname=settings.server_hostname,
            timeouts=settings.timeouts,
            local_hostname=settings.local_hostname,
            username=username,
            password=password,
            allow_insecure_auth=allow_insecure_auth,
            max_connections=concurrency,
        )

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        try:
            result = self.mailer.send(
                message, from_addr=sender, to_addrs=list(recipients), dsn=self.dsn
            )
        except (SMTPClientError, ValueError, TypeError) as exc:
            return from_error(exc, recipients)
        return from_result(result)

    def close(self, *, wait: bool = True) -> None:
        # Abandoned sends (a second Ctrl-C) are not waited for: the process
        # is about to exit and the kernel closes their sockets.
        if wait:
            self.mailer.close()


class DirectSender:
    """``smtpclient.deliver`` for each message (``--direct``)."""

    def __init__(self, dsn: DSN | None, options: DirectOptions) -> None:
        self.dsn = dsn
        self.options = options

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> list[Outcome]:
        composed = Composed(message, sender, tuple(recipients))
        return deliver_direct(composed, self.dsn, self.options)

    def close(self, *, wait: bool = True) -> None:
        """Nothing is kept open between deliveries."""
