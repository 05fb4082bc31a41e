"""One ``ConnectOptions`` behind every face: ``Session.connect``, ``Mailer``
(through ``ServerSettings`` and its pool key) and ``smtpclient.send`` take
the same connection options, and each option reaches the wire.

Evidence comes from a scripted server: how many recipients each MAIL
transaction carried (``max_recipients``), and whether a long reply line is
refused (``reply_limits``).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Iterator

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient
from smtpclient import Mailer, Session, TLSMode
from smtpclient.errors import ProtocolError
from smtpclient.options import ConnectOptions
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.server import ServerSettings

SENDER = "sender@example.test"
FIVE = [f"r{i}@example.test" for i in range(5)]
BODY = b"Subject: options\r\n\r\nhello\r\n"
SMALL_LIMITS = ReplyLimits(max_line_length=512)
# An EHLO reply line of about 1000 octets: within the default limits, over 512.
LONG_EHLO_LINE = "X-LONG " + "x" * 1000


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "8BITMIME", LONG_EHLO_LINE))
        serve_normally(conn)

    with ScriptedServer(handler) as scripted:
        yield scripted
    assert not scripted.errors, scripted.errors


def _transactions(server: ScriptedServer) -> list[int]:
    """The number of RCPT commands in each MAIL transaction, over every connection."""
    counts: list[int] = []
    for conn in server.conns:
        for line in bytes(conn.received).split(b"\r\n"):
            if line.startswith(b"MAIL FROM:"):
                counts.append(0)
            elif line.startswith(b"RCPT TO:"):
                counts[-1] += 1
    return counts


def _via_mailer(port: int, **options: object) -> smtpclient.SendResult:
    with Mailer("127.0.0.1", port, tls=TLSMode.NONE, timeouts=5.0, **options) as mailer:  # type: ignore[arg-type]
        return mailer.sendmail(SENDER, FIVE, BODY)


def _via_send(port: int, **options: object) -> smtpclient.SendResult:
    return smtpclient.send(
        BODY,
        host="127.0.0.1",
        port=port,
        tls=TLSMode.NONE,
        timeouts=5.0,
        sender=SENDER,
        recipients=FIVE,
        **options,  # type: ignore[arg-type]
    )


def _via_session(port: int, **options: object) -> smtpclient.SendResult:
    with Session.connect("127.0.0.1", port, tls=TLSMode.NONE, timeouts=5.0, **options) as s:  # type: ignore[arg-type]
        return s.sendmail(SENDER, FIVE, BODY)


FACES: list[tuple[str, Callable[..., smtpclient.SendResult]]] = [
    ("session", _via_session),
    ("mailer", _via_mailer),
    ("send", _via_send),
]


@pytest.mark.parametrize(("face", "send"), FACES, ids=[name for name, _ in FACES])
def test_max_recipients_splits_transactions_on_every_face(
    face: str, send: Callable[..., smtpclient.SendResult], server: ScriptedServer
) -> None:
    result = send(server.port, max_recipients=2)
    assert sorted(result.accepted) == sorted(FIVE)
    assert _transactions(server) == [2, 2, 1]


@pytest.mark.parametrize(("face", "send"), FACES, ids=[name for name, _ in FACES])
def test_reply_limits_reach_the_reply_parser_on_every_face(
    face: str, send: Callable[..., smtpclient.SendResult], server: ScriptedServer
) -> None:
    assert sorted(send(server.port).accepted) == sorted(FIVE)  # the defaults take the line
    with pytest.raises(ProtocolError):
        send(server.port, reply_limits=SMALL_LIMITS)
    assert _transactions(server) == [5]  # nothing was sent the second time


@pytest.mark.parametrize("face", [Mailer, smtpclient.send], ids=["mailer", "send"])
def test_every_connect_option_is_accepted(face: Callable[..., object]) -> None:
    # Session.connect's keywords are ConnectOptions' fields; Mailer and send
    # take all of them (Mailer all but sock: a pool opens its own sockets).
    connect = set(inspect.signature(Session.connect).parameters) - {"host", "port"}
    fields = set(ConnectOptions.__dataclass_fields__) - {"host", "port"}
    assert connect <= fields
    taken = set(inspect.signature(face).parameters)
    missing = fields - taken - ({"sock"} if face is Mailer else set())
    assert not missing


def test_the_pool_key_holds_every_option() -> None:
    base = ServerSettings("127.0.0.1", 2525, tls=TLSMode.NONE)
    assert base.key == ServerSettings("127.0.0.1", 2525, tls=TLSMode.NONE).key
    assert ServerSettings("127.0.0.1", 2525, tls=TLSMode.NONE, max_recipients=2).key != base.key
    limited = ServerSettings("127.0.0.1", 2525, tls=TLSMode.NONE, reply_limits=SMALL_LIMITS)
    assert limited.key != base.key
    assert limited.options.reply_limits is SMALL_LIMITS


def test_options_are_checked_before_connecting() -> None:
    # Port 1 on loopback has no listener: an option error must come first.
    with pytest.raises(ValueError, match="max_recipients"):
        Mailer("127.0.0.1", 1, tls=TLSMode.NONE, max_recipients=0)
    with pytest.raises(ValueError, match="max_recipients"):
        smtpclient.send(BODY, host="127.0.0.1", port=1, sender=SENDER, recipients=FIVE,
                        max_recipients=0)  # fmt: skip
    with socket.socket() as sock, pytest.raises(ValueError, match="sock"):
        ServerSettings.from_options(ConnectOptions("127.0.0.1", 1, sock=sock))
