"""aiosmtpd running in-process on 127.0.0.1, with a handler that keeps what arrives.

The server runs its own asyncio loop in one thread; ``stop()`` closes every
connection and joins the thread, so nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword


@dataclass
class Received:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # exactly what came after DATA, dot-unstuffed, CRLF kept
    mail_options: list[str]
    rcpt_options: list[str]
    peer: Any = None


@dataclass
class Recorder:
    """aiosmtpd handler: stores each message; optional per-recipient refusals."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> full reply
    data_reply: str = "250 2.0.0 Ok: queued as TEST123"
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(
        self, server: SMTP, session: Any, envelope: Envelope
    ) -> str:
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            bytes(envelope.original_content or b""),
            list(envelope.mail_options),
            list(envelope.rcpt_options),
            session.peer,
        )
        with self.lock:
            self.messages.append(received)
        return self.data_reply


class _CountingSMTP(SMTP):
    def __init__(self, recorder: Recorder, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = recorder

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with self._recorder.lock:
            self._recorder.connections += 1
        super().connection_made(transport)


def password_authenticator(users: dict[str, str]) -> Any:
    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8")
            if users.get(user) == auth_data.password.decode("utf-8"):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return authenticator


class AiosmtpdServer:
    """``with AiosmtpdServer() as server: ... server.port ... server.messages``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        tls_context: ssl.SSLContext | None = None,  # offers STARTTLS
        implicit_tls: ssl.SSLContext | None = None,  # TLS from the first byte
        users: dict[str, str] | None = None,
        require_tls_for_auth: bool = True,
        smtputf8: bool = True,
        data_size_limit: int = 64 * 1024 * 1024,
        recorder: Recorder | None = None,
        port: int = 0,  # a fixed port: several servers on one port across 127.0.0.x
    ) -> None:
        self.host = host
        self.recorder = recorder or Recorder()
        self._tls_context = tls_context
        self._implicit = implicit_tls
        self._users = users
        self._require_tls = require_tls_for_auth
        self._smtputf8 = smtputf8
        self._size = data_size_limit
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self.port = port

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages

    def _factory(self) -> SMTP:
        kwargs: dict[str, Any] = {
            "enable_SMTPUTF8": self._smtputf8,
            "decode_data": False,
            "data_size_limit": self._size,
            "hostname": "aiosmtpd.test",
            "ident": "test server",
        }
        if self._tls_context is not None:
            kwargs["tls_context"] = self._tls_context
        if self._users is not None:
            kwargs["authenticator"] = password_authenticator(self._users)
            kwargs["auth_require_tls"] = self._require_tls
        else:
            kwargs["auth_require_tls"] = False
        return _CountingSMTP(self.recorder, self.recorder, loop=self._loop, **kwargs)

    def start(self) -> AiosmtpdServer:
        ready = threading.Event()
        failed: list[OSError] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def serve() -> None:
                self._server = await self._loop.create_server(
                    self._factory, host=self.host, port=self.port, ssl=self._implicit
                )
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            try:
                self._loop.run_until_complete(serve())
            except OSError as exc:  # e.g. EADDRINUSE for a fixed port: start() raises it
                failed.append(exc)
                ready.set()
                return
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="aiosmtpd", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("aiosmtpd did not start")
        if failed:
            self._thread.join(10)
            self._thread = None
            self._loop.close()
            raise failed[0]
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            self._server.close_clients() if hasattr(self._server, "close_clients") else None
            await asyncio.sleep(0)
            for task in asyncio.all_tasks(self._loop):
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> AiosmtpdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
