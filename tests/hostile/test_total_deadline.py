"""``Timeouts.total`` bounds one whole call (issue 15 item 3): from the first
connect attempt through greeting, EHLO, AUTH and the transaction, for
``smtpclient.send()``, ``Mailer.send()`` and ``Session.login()`` -- not
each step afresh.

The scripted server answers EHLO, AUTH and MAIL slowly (each reply dripped
over ``SLOW`` seconds, well inside every stage timeout) and the total is
``TOTAL``: every step alone fits in the total, the call as a whole does
not.  Before the fix the total restarted at the send (and AUTH had none),
so these calls delivered after about 3 x SLOW.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from servers.scripted import Conn, ScriptedServer, serve_normally

import smtpclient
from smtpclient import Mailer, Password, Session, Timeouts, TLSMode
from smtpclient.errors import SMTPTimeoutError
from smtpclient.protocol.state import Stage

SLOW = 0.6  # seconds to drip each slow reply
TOTAL = 1.0  # more than any one slow reply, less than two
SLACK = 3.0  # a loaded machine is slow; the bound is what matters
TIMEOUTS = dataclasses.replace(Timeouts.uniform(10.0), total=TOTAL)


def _drip(conn: Conn, text: str, seconds: float = SLOW) -> None:
    """Send *text* (CRLF added) in five pieces over *seconds*."""
    data = text.replace("\n", "\r\n").encode() + b"\r\n"
    step = -(-len(data) // 5)
    for start in range(0, len(data), step):
        time.sleep(seconds / 5)
        conn.send(data[start : start + step])


def slow_server(conn: Conn) -> None:
    conn.reply("220 slow.test ESMTP")
    conn.expect(b"EHLO")
    _drip(conn, "250-slow.test\n250-AUTH PLAIN\n250 8BITMIME")
    while True:
        line = conn.line()
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"AUTH":
            _drip(conn, "235 2.7.0 Authentication successful")
        elif verb == b"MAIL":
            _drip(conn, "250 2.1.0 Ok")
            serve_normally(conn)
            return
        elif verb == b"QUIT":
            conn.reply("221 2.0.0 Bye")
            return
        else:
            conn.reply("250 2.0.0 Ok")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(slow_server) as scripted:
        yield scripted


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "a@example.test"
    message["To"] = "b@example.test"
    message["Subject"] = "slow"
    message.set_content("hello\n")
    return message


def _delivered(server: ScriptedServer) -> bool:
    return any(b"DATA" in bytes(conn.received) for conn in server.conns)


def test_send_is_bounded_by_one_total(server: ScriptedServer) -> None:
    start = time.monotonic()
    with pytest.raises(SMTPTimeoutError) as caught:
        smtpclient.send(
            _message(),
            host="127.0.0.1",
            port=server.port,
            tls=TLSMode.NONE,
            timeouts=TIMEOUTS,
            username="user",
            password="secret",
            allow_insecure_auth=True,
        )
    took = time.monotonic() - start
    assert caught.value.stage is Stage.AUTH  # EHLO and AUTH together outlast the total
    assert took < TOTAL + SLACK
    assert not _delivered(server)


def test_mailer_send_is_bounded_by_one_total(server: ScriptedServer) -> None:
    start = time.monotonic()
    with Mailer(
        "127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=TIMEOUTS, max_connections=1
    ) as mailer:
        with pytest.raises(SMTPTimeoutError) as caught:
            mailer.send(_message())
    took = time.monotonic() - start
    assert caught.value.stage is Stage.MAIL  # EHLO and MAIL together outlast the total
    assert took < TOTAL + SLACK
    assert not _delivered(server)


def slow_auth_only(conn: Conn) -> None:
    conn.reply("220 slow.test ESMTP")
    conn.expect(b"EHLO")
    conn.reply("250-slow.test", "250 AUTH PLAIN")
    conn.expect(b"AUTH")
    _drip(conn, "235 2.7.0 Authentication successful", 2 * TOTAL)
    conn.wait_closed(5)


def test_login_is_under_the_total() -> None:
    # Before the fix AUTH had no total: this login waited 2 x TOTAL and succeeded.
    with ScriptedServer(slow_auth_only) as server:
        session = Session.connect(
            "127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=TIMEOUTS, allow_insecure_auth=True
        )
        start = time.monotonic()
        try:
            with pytest.raises(SMTPTimeoutError) as caught:
                session.authenticate(Password("user", "secret"))
        finally:
            session.close()
        took = time.monotonic() - start
    assert caught.value.stage is Stage.AUTH
    assert took < TOTAL + SLACK


def test_without_a_total_the_slow_call_delivers(server: ScriptedServer) -> None:
    # The same server and call without a total: the steps are each fine.
    result = smtpclient.send(
        _message(),
        host="127.0.0.1",
        port=server.port,
        tls=TLSMode.NONE,
        timeouts=dataclasses.replace(TIMEOUTS, total=None),
        username="user",
        password="secret",
        allow_insecure_auth=True,
    )
    assert result.accepted
    assert _delivered(server)
