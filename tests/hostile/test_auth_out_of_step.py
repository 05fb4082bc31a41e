"""AUTH out of step (issue 15 item 5): a reply that arrives before the client
answered the challenge it belongs to is a ``ProtocolError`` that closes the
session before anything more is written -- the rule every other command
group follows."""

from __future__ import annotations

import dataclasses

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import ProtocolError
from smtpclient.protocol.state import SessionState, Stage

FAST = dataclasses.replace(Timeouts.uniform(2.0), total=None)


def early_answer(after: bytes) -> object:
    """A server that sends a challenge and, in the same segment, *after*."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("AUTH LOGIN PLAIN",))
        conn.expect(b"AUTH")
        conn.send(b"334 VXNlcm5hbWU6\r\n" + after)
        conn.wait_closed(5)

    return handler


@pytest.mark.parametrize(
    "after",
    [b"235 2.7.0 Authentication successful\r\n", b"334 UGFzc3dvcmQ6\r\n"],
    ids=["success-before-the-answer", "next-challenge-before-the-answer"],
)
def test_a_reply_before_the_answer_to_its_challenge_closes_the_session(after: bytes) -> None:
    with ScriptedServer(early_answer(after)) as server:  # type: ignore[arg-type]
        session = Session.connect(
            "127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=FAST, allow_insecure_auth=True
        )
        try:
            with pytest.raises(ProtocolError) as caught:
                session.login("user@example.test", "secret", mechanism="LOGIN")
            state = session.state
        finally:
            session.close()
        conn = server.conns[0]
        conn.wait_closed(5)
    assert caught.value.stage is Stage.AUTH
    assert state is SessionState.BROKEN
    assert not session.authenticated
    # Nothing was written after the AUTH command: no user name, no "*".
    assert bytes(conn.received).split(b"AUTH LOGIN\r\n", 1)[1] == b""
    assert not server.errors
