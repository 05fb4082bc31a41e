"""OPPORTUNISTIC and a server that hangs up right after its 220 to STARTTLS
(issue 15 item 4): the documented plaintext retry on a new connection,
however the close is segmented -- in the same segment as the 220 (TCP_CORK
holds the reply until the FIN goes with it) or a moment later."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import ServerDisconnected

FAST = dataclasses.replace(Timeouts.uniform(2.0), data_done=10.0, total=None)
BODY = b"Subject: plain\r\n\r\nhello\r\n"


def close_after_220(same_segment: bool) -> object:
    def handler(conn: Conn) -> None:
        if conn is conn.server.conns[0]:
            greet_and_ehlo(conn, ("PIPELINING", "STARTTLS"))
            conn.expect(b"STARTTLS")
            if same_segment:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                conn.send(b"220 2.0.0 go ahead\r\n")
                conn.sock.shutdown(socket.SHUT_WR)  # the FIN leaves with the 220
            else:
                conn.send(b"220 2.0.0 go ahead\r\n")
                time.sleep(0.05)
                conn.sock.shutdown(socket.SHUT_WR)
            conn.wait_closed(5)
            return
        greet_and_ehlo(conn, ("PIPELINING", "STARTTLS"))  # offered again: not used again
        serve_normally(conn)

    return handler


@pytest.mark.parametrize("same_segment", [True, False], ids=["same-segment", "later"])
def test_a_close_after_the_220_to_starttls_reconnects_in_plaintext(same_segment: bool) -> None:
    with ScriptedServer(close_after_220(same_segment)) as server:  # type: ignore[arg-type]
        with Session.connect(
            "127.0.0.1", server.port, tls=TLSMode.OPPORTUNISTIC, timeouts=FAST
        ) as session:
            assert session.tls is None
            reason = session.tls_outcome.plaintext_reason
            result = session.sendmail("a@example.com", ["b@example.com"], BODY)
        first, second = server.conns
        second.wait_closed(5)
    assert reason is not None and "TLS failed on an earlier connection" in reason
    assert result.tls is None
    assert b"STARTTLS" in bytes(first.received) and b"MAIL" not in bytes(first.received)
    assert b"STARTTLS" not in bytes(second.received)
    assert b"MAIL FROM" in bytes(second.received)
    assert not server.errors


def test_a_close_after_the_220_is_still_an_error_when_tls_is_required() -> None:
    with ScriptedServer(close_after_220(True)) as server:  # type: ignore[arg-type]
        with pytest.raises((ServerDisconnected, OSError)):
            Session.connect("127.0.0.1", server.port, tls=TLSMode.STARTTLS, timeouts=FAST)
        assert server.connections == 1
