"""Bad input from the caller at every public entry point.

Each mistake is a ``ValueError``/``TypeError`` (never an ``OSError``, so
nobody retries it as a network problem) or, where the server's abilities
decide, the library's own ``ExtensionNotSupported``.  A scripted server
records the wire: nothing of the message is sent -- no MAIL for a refused
envelope, no connection at all for refused connection settings -- and a
session that refused a call stays usable for the next one.  SOURCE for the
injection cases: bpo-43124 (smtplib CRLF injection through addresses and
options) and nodemailer GHSA-vvjj-xcjg-gr5g (CRLF in the EHLO name).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient
from hostile.faultkit import FAST, command_lines, connect
from smtpclient import Mailer, Session, TLSMode
from smtpclient.errors import (
    ExtensionNotSupported,
    InvalidAddressError,
    InvalidArgumentError,
    MessageContentError,
    PoolClosedError,
    SessionClosedError,
)


def _server(conn: Conn) -> None:
    greet_and_ehlo(conn, ("PIPELINING",))  # no 8BITMIME, no SMTPUTF8, no SIZE
    serve_normally(conn)


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@x.example", "t"
    message.set_content("hello")
    return message


SessionCall = Callable[[Session], object]

SESSION_CASES: dict[str, tuple[SessionCall, type[Exception]]] = {
    "sender None": (lambda s: s.sendmail(None, ["b@x.example"], b"x"), TypeError),  # type: ignore[arg-type]
    "no recipients": (lambda s: s.sendmail("a@x.example", [], b"x"), ValueError),
    "recipient bytes": (lambda s: s.sendmail("a@x.example", [b"b@x"], b"x"), TypeError),  # type: ignore[list-item]
    "CRLF in a recipient": (
        lambda s: s.sendmail("a@x.example", ["ok@x.example", "b@x.example\r\nRSET"], b"x"),
        InvalidAddressError,
    ),
    "NUL in the sender": (lambda s: s.sendmail("a\x00@x.example", ["b@x"], b"x"), ValueError),
    "CRLF in MAIL options": (
        lambda s: s.sendmail("a@x.example", ["b@x.example"], b"x", mail_options=["X=1\r\nRSET"]),
        InvalidArgumentError,
    ),
    "options as one string": (
        lambda s: s.sendmail("a@x.example", ["b@x.example"], b"x", mail_options="BODY=8BITMIME"),
        TypeError,
    ),
    "UTF-8 address without SMTPUTF8": (
        lambda s: s.sendmail("é@x.example", ["b@x.example"], b"x"),
        ExtensionNotSupported,
    ),
    "8-bit body without 8BITMIME": (
        lambda s: s.sendmail("a@x.example", ["b@x.example"], "é".encode()),
        ExtensionNotSupported,
    ),
    "a line over 998 octets": (
        lambda s: s.sendmail("a@x.example", ["b@x.example"], b"x" * 2000),
        MessageContentError,
    ),
    "body of the wrong type": (lambda s: s.sendmail("a@x.example", ["b@x"], 5), TypeError),  # type: ignore[arg-type]
    "text-mode file": (lambda s: s.sendmail("a@x", ["b@x"], io.StringIO("x")), TypeError),  # type: ignore[arg-type]
    "size of the wrong type": (
        lambda s: s.sendmail("a@x.example", ["b@x"], iter([b"x"]), size="5"),  # type: ignore[arg-type]
        TypeError,
    ),
    "negative size": (lambda s: s.sendmail("a@x", ["b@x"], iter([b"x"]), size=-1), ValueError),
    "send_message given bytes": (lambda s: s.send_message(b"x"), TypeError),  # type: ignore[arg-type]
    "message without From": (lambda s: s.send_message(EmailMessage()), ValueError),
    "send_many given None": (lambda s: s.send_many(None), TypeError),  # type: ignore[arg-type]
    "CRLF in VRFY": (lambda s: s.vrfy("a\r\nRSET"), InvalidAddressError),
    "CRLF in a raw command": (lambda s: s.execute("NOOP\r\nRSET"), InvalidArgumentError),
    "login without a user name": (lambda s: s.login(None, "x"), TypeError),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", list(SESSION_CASES), ids=list(SESSION_CASES))
def test_a_refused_call_sends_nothing_and_leaves_the_session_usable(case: str) -> None:
    call, expected = SESSION_CASES[case]
    with ScriptedServer(_server) as server:
        with connect(server) as session:
            with pytest.raises(expected) as info:
                call(session)
            assert isinstance(info.value, (ValueError, TypeError, ExtensionNotSupported))
            if expected is InvalidArgumentError:  # not an address: not reported as one
                assert not isinstance(info.value, InvalidAddressError)
            assert session.usable
            result = session.sendmail("a@x.example", ["b@x.example"], b"fine\r\n")
        verbs = [line.split(b" ")[0] for line in command_lines(bytes(server.conns[0].received))]
    assert result.accepted
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]  # only the good message


@pytest.mark.parametrize(
    ("body", "expected"),
    [(["str", "items"], TypeError), ([b"x" * 2000], MessageContentError)],
    ids=["iterable of str", "over-long line in a stream"],
)
def test_a_one_shot_body_found_bad_while_streaming_is_never_finished(
    body: list[object], expected: type[Exception]
) -> None:
    # A one-shot iterable can only be judged as it is read, after DATA: the
    # connection is closed without the end marker, so the server drops the
    # half message (RFC 5321 §4.1.1.4: only "." ends the content).
    with ScriptedServer(_server) as server:
        with connect(server) as session:
            with pytest.raises(expected):
                session.sendmail("a@x.example", ["b@x.example"], iter(body))  # type: ignore[arg-type]
            assert session.usable is False
        received = bytes(server.conns[0].received)
    envelope, content = received.split(b"DATA\r\n", 1)
    assert envelope.endswith(b"RCPT TO:<b@x.example>\r\n")
    assert not content.endswith(b".\r\n")  # no end marker: nothing delivered


CONNECT_CASES: dict[str, tuple[Callable[[int], object], type[Exception]]] = {
    "host None": (lambda port: Session.connect(None, port), TypeError),  # type: ignore[arg-type]
    "CRLF in the host": (lambda port: Session.connect("127.0.0.1\r\n", port), ValueError),
    "port as str": (lambda port: Session.connect("127.0.0.1", str(port)), ValueError),  # type: ignore[arg-type]
    "port True": (lambda port: Session.connect("127.0.0.1", True), ValueError),
    "tls as str": (lambda port: Session.connect("127.0.0.1", port, tls="none"), TypeError),  # type: ignore[arg-type]
    "negative timeouts": (lambda port: Session.connect("127.0.0.1", port, timeouts=-1), ValueError),
    "CRLF in the EHLO name": (
        lambda port: Session.connect("127.0.0.1", port, local_hostname="a\r\nMAIL FROM:<x@y>"),
        InvalidArgumentError,
    ),
    "Mailer with max_connections 0": (
        lambda port: Mailer("127.0.0.1", port, max_connections=0),
        ValueError,
    ),
    "Mailer.send given bytes": (
        lambda port: Mailer("127.0.0.1", port, tls=TLSMode.NONE).send(b"x"),  # type: ignore[arg-type]
        TypeError,
    ),
    "send() of raw data without an envelope": (
        lambda port: smtpclient.send(b"x", host="127.0.0.1", port=port, tls=TLSMode.NONE),
        ValueError,
    ),
}


@pytest.mark.parametrize("case", list(CONNECT_CASES), ids=list(CONNECT_CASES))
def test_bad_connection_settings_are_refused_before_connecting(case: str) -> None:
    call, expected = CONNECT_CASES[case]
    with ScriptedServer(_server) as server:
        with pytest.raises(expected) as info:
            call(server.port)
        assert not isinstance(info.value, OSError)
        if expected is InvalidArgumentError:  # a host name is not an address
            assert not isinstance(info.value, InvalidAddressError)
        assert server.connections == 0


def test_use_after_close_is_refused_without_a_byte_written() -> None:
    with ScriptedServer(_server) as server:
        session = connect(server, FAST)
        session.close()
        session.close()  # twice is fine
        for call in (session.noop, lambda: session.sendmail("a@x", ["b@x"], b"x")):
            with pytest.raises(SessionClosedError):
                call()
        assert session.quit() is None  # never raises
        mailer = Mailer("127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=FAST)
        mailer.close()
        with pytest.raises(PoolClosedError):
            mailer.send(_message())
        with pytest.raises(PoolClosedError):
            mailer.send_many([_message()])
        received = bytes(server.conns[0].received)
    assert received == b"EHLO [127.0.0.1]\r\n"  # nothing after the close, not even QUIT
    assert server.connections == 1  # the closed Mailer never connected
