"""A throwaway SMTP server on 127.0.0.1, for ``smtpclient demo`` and for trying things.

``DemoServer`` runs aiosmtpd in a thread of this process with what a real
submission server has: STARTTLS (required before MAIL) with a certificate
from a throwaway CA made by trustme, and AUTH (PLAIN, LOGIN) for one
throwaway user with a random password.  It keeps every message it accepts,
with the trace headers an MTA would add, in ``messages``.  It listens on
127.0.0.1 only, on a port the kernel picks, and touches nothing else.

Needs the ``demo`` extra: ``pip install "smtpclient[demo]"``.

    with DemoServer() as server:
        with Session.connect("127.0.0.1", server.port, tls=TLSMode.STARTTLS,
                             ssl_context=server.client_context(),
                             server_hostname=server.hostname) as session:
            session.login(server.username, server.password)
            session.send_message(message)
        print(server.messages[0].data.decode())
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from smtpclient.errors import DemoUnavailable  # defined there; re-exported here
from smtpclient.tls import verifying_context

__all__ = ["DemoServer", "DemoUnavailable", "StoredMessage"]

INSTALL_HINT = 'the demo needs the "demo" extra: pip install "smtpclient[demo]"'


@dataclass(frozen=True)
class StoredMessage:
    """One accepted message: the envelope and the bytes as stored (trace headers first)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    data: bytes


@dataclass
class _Mailbox:
    hostname: str
    messages: list[StoredMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        tls = session.ssl is not None
        protocol = "ESMTP" + ("S" if tls else "") + ("A" if session.authenticated else "")
        peer = session.peer[0] if session.peer else "unknown"
        trace = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"Received: from {session.host_name} ([{peer}])\r\n"
            f"\tby {self.hostname} (smtpclient demo server) with {protocol};\r\n"
            f"\t{email.utils.formatdate(localtime=True)}\r\n"
        ).encode()
        with self.lock:
            number = len(self.messages) + 1
            self.messages.append(
                StoredMessage(
                    envelope.mail_from,
                    tuple(envelope.rcpt_tos),
                    tuple(envelope.mail_options),
                    trace + bytes(envelope.original_content or b""),
                )
            )
        return f"250 2.0.0 Ok: queued as DEMO{number:04d}"


class DemoServer:
    """aiosmtpd on 127.0.0.1 with STARTTLS and AUTH; a context manager.

    ``host`` and ``port`` say where it listens (127.0.0.1, an ephemeral
    port), ``hostname`` the name its certificate is for ("localhost"),
    ``username`` and ``password`` the throwaway account, and ``messages``
    every ``StoredMessage`` accepted so far.

    Raises:
        DemoUnavailable: aiosmtpd or trustme is missing (from the constructor),
            or the server did not start within 10 s (from ``start``).
    """

    host = "127.0.0.1"
    hostname = "localhost"

    def __init__(self, *, username: str = "demo") -> None:
        try:
            import aiosmtpd.smtp  # noqa: F401, PLC0415 - optional dependency
            import trustme  # noqa: PLC0415
        except ImportError as exc:
            raise DemoUnavailable(f"{INSTALL_HINT} ({exc})") from exc
        self.username = username
        self.password = secrets.token_urlsafe(12)
        self._ca = trustme.CA(organization_name="smtpclient demo CA")
        self._leaf = self._ca.issue_cert(self.hostname, self.host)
        self._mailbox = _Mailbox(self.hostname)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def messages(self) -> list[StoredMessage]:
        """The messages accepted so far."""
        with self._mailbox.lock:
            return list(self._mailbox.messages)

    @property
    def ca_pem(self) -> bytes:
        """The throwaway CA certificate (PEM), for ``--cafile``."""
        data: bytes = self._ca.cert_pem.bytes()
        return data

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that also trusts the throwaway CA."""
        context = verifying_context()
        self._ca.configure_trust(context)
        return context

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(context)
        return context

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: PLC0415

        ok = (
            isinstance(data, LoginPassword)
            and secrets.compare_digest(data.login, self.username.encode("utf-8"))
            and secrets.compare_digest(data.password, self.password.encode("utf-8"))
        )
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> Any:
        from aiosmtpd.smtp import SMTP  # noqa: PLC0415

        return SMTP(
            self._mailbox,
            hostname=self.hostname,
            ident="smtpclient demo server",
            tls_context=self._server_context(),
            require_starttls=True,
            authenticator=self._authenticate,
            auth_require_tls=True,
            auth_required=True,
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=10 * 1024 * 1024,
            loop=self._loop,
        )

    def start(self) -> DemoServer:
        """Start listening; returns self."""
        ready = threading.Event()
        problem: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(self._loop)

            async def listen() -> None:
                self._server = await self._loop.create_server(self._protocol, self.host, 0)
                self.port = self._server.sockets[0].getsockname()[1]

            try:
                self._loop.run_until_complete(listen())
            except BaseException as exc:
                problem.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="smtpclient-demo-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or problem:
            self.stop()
            raise DemoUnavailable(f"the demo server did not start: {problem or 'timeout'}")
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop.is_running():

            async def shutdown() -> None:
                if self._server is not None:
                    self._server.close()
                for task in asyncio.all_tasks(self._loop):
                    if task is not asyncio.current_task():
                        task.cancel()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
