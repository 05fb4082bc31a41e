"""Socket-like objects from ``_get_socket`` (proxies, mocks): compat drives
them through ``streams.StreamTransport`` with settimeout/sendall/recv only,
every call bounded by its deadline."""

from __future__ import annotations

import socket
import time
from typing import Any, ClassVar

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient.compat as compat
from smtpclient.errors import ServerDisconnected, SMTPTimeoutError
from smtpclient.protocol.state import Stage
from smtpclient.streams import StreamTransport, transport_for
from smtpclient.timeouts import Deadline
from smtpclient.transport import Transport


class Wrapped:
    """A proxy library's socket class: delegates to a real socket, is not one."""

    def __init__(self, sock: socket.socket) -> None:
        self.inner = sock
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)


def test_transport_for_picks_by_type() -> None:
    left, right = socket.socketpair()
    with left, right:
        plain = transport_for(left, "peer")
        wrapped = transport_for(Wrapped(right), "peer")
        assert type(plain) is Transport and type(wrapped) is StreamTransport
        plain.close()
        wrapped.close()


def test_stream_transport_reads_writes_and_restores_the_timeout() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(7)
        stream = StreamTransport(Wrapped(right), "peer")
        stream.sendall(b"hello", Deadline(5, Stage.COMMAND))
        assert left.recv(10) == b"hello"
        left.sendall(b"250 ok\r\n")
        assert stream.recv(Deadline(5, Stage.COMMAND)) == b"250 ok\r\n"
        assert right.gettimeout() == 7
        assert not stream.readable() and stream.read_now(Stage.COMMAND) is None


def test_stream_transport_keeps_its_deadline_and_closes() -> None:
    left, right = socket.socketpair()
    with left, right:
        stream = StreamTransport(Wrapped(right), "peer")
        start = time.monotonic()
        with pytest.raises(SMTPTimeoutError):
            stream.recv(Deadline(0.3, Stage.COMMAND))
        assert time.monotonic() - start < 5
        assert stream.closed
        with pytest.raises(ServerDisconnected):
            stream.recv(Deadline(1, Stage.COMMAND))


def _serve(conn: Conn) -> None:
    greet_and_ehlo(conn)
    serve_normally(conn)


class ProxiedSMTP(compat.SMTP):
    made: ClassVar[list[Wrapped]] = []

    def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
        wrapped = Wrapped(socket.create_connection((host, port), timeout))
        self.made.append(wrapped)
        return wrapped


def test_a_proxy_socket_class_carries_the_whole_conversation() -> None:
    with ScriptedServer(_serve) as server:
        with ProxiedSMTP("127.0.0.1", server.port, local_hostname="c.test", timeout=10) as s:
            assert isinstance(s.sock, Wrapped)
            assert s.sendmail("me@example.test", ["you@example.test"], b"x\r\n") == {}
    (wrapped,) = ProxiedSMTP.made
    assert {"sendall", "recv"} <= set(wrapped.calls)
    received = bytes(server.conns[0].received)
    assert b"<me@example.test>" in received and b"\r\nx\r\n.\r\n" in received
