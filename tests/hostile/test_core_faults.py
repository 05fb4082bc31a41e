"""Scripted misbehaving servers: each case ends within its deadline, with the
documented error, and leaves no socket or thread behind (the autouse
``no_leaks`` fixture checks that)."""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

from hostile.faultkit import client_writes
from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import (
    ConnectError,
    PermanentGreetingRefused,
    ProtocolError,
    ServerDisconnected,
    ServiceClosing,
    SessionBusyError,
    SMTPClientError,
    SMTPTimeoutError,
    TransientSenderRefused,
)
from smtpclient.protocol.state import Stage

FAST = dataclasses.replace(
    Timeouts.uniform(1.0), data_done=10.0, total=None
)  # one second a stage; data_done keeps its floor


def connect(server: ScriptedServer, timeouts: Timeouts = FAST, **kwargs: object) -> Session:
    return Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=timeouts, **kwargs)  # type: ignore[arg-type]


def run(
    handler: Callable[[Conn], None], **kwargs: object
) -> tuple[ScriptedServer, BaseException | None, float]:
    """Connect and send one message; return the server, the error and the time taken."""
    with ScriptedServer(handler) as server:
        start = time.monotonic()
        error: BaseException | None = None
        try:
            with connect(server, **kwargs) as session:  # type: ignore[arg-type]
                session.sendmail("a@example.com", ["b@example.com"], b"hello\r\n")
        except SMTPClientError as exc:
            error = exc
        return server, error, time.monotonic() - start


def greet_and_start_data(conn: Conn, rcpt_replies: Sequence[str] = ("250 ok",)) -> None:
    """Greet (no extensions), accept MAIL, answer each RCPT with *rcpt_replies*
    in turn, and answer DATA with 354: the content is next."""
    greet_and_ehlo(conn, ())
    conn.expect(b"MAIL")
    conn.reply("250 ok")
    for reply in rcpt_replies:
        conn.expect(b"RCPT")
        conn.reply(reply)
    conn.expect(b"DATA")
    conn.reply("354 go")


def test_no_greeting_times_out_at_the_greeting_stage() -> None:
    _, error, took = run(lambda c: c.stall(30))
    assert isinstance(error, SMTPTimeoutError) and isinstance(error, TimeoutError)
    assert error.stage is Stage.GREETING
    assert took < 10  # the 1 s greeting deadline, not the 30 s stall


def test_a_dripping_greeting_still_times_out_at_the_deadline() -> None:
    # One byte every 0.2 s keeps a per-recv timeout alive for ever; a
    # deadline over the whole reply does not.
    _, error, took = run(lambda c: c.drip(b"220-" + b"x" * 200 + b"\r\n220 ok\r\n", 0.2))
    assert isinstance(error, SMTPTimeoutError) and error.stage is Stage.GREETING
    assert took < 10  # the whole drip would take 40 s


def test_endless_line_is_a_protocol_error_without_waiting() -> None:
    def handler(conn: Conn) -> None:
        conn.send(b"220 ")
        for _ in range(1000):
            conn.send(b"x" * 1024)

    _, error, took = run(handler)
    assert isinstance(error, ProtocolError) and "longer than" in str(error)
    assert took < 10  # a protocol error at once, not a deadline


def test_endless_continuation_lines_are_a_protocol_error() -> None:
    def handler(conn: Conn) -> None:
        conn.send(b"220-hello\r\n" * 5000)

    _, error, _ = run(handler)
    assert isinstance(error, ProtocolError) and "lines" in str(error)


def test_codes_that_change_inside_a_reply_are_a_protocol_error() -> None:
    def handler(conn: Conn) -> None:
        conn.reply("220 hi")
        conn.expect(b"EHLO")
        conn.send(b"250-mx\r\n251 PIPELINING\r\n")
        conn.stall(5)

    _, error, _ = run(handler)
    assert isinstance(error, ProtocolError) and error.stage is Stage.EHLO


def test_greeting_554_is_permanent_and_carries_the_reply() -> None:
    def handler(conn: Conn) -> None:
        conn.reply("554 5.7.1 no SMTP service here")
        conn.wait_closed(5)

    server, error, _ = run(handler)
    assert isinstance(error, PermanentGreetingRefused)
    assert error.reply is not None and error.reply.enhanced == "5.7.1"
    assert b"QUIT" in bytes(server.conns[0].received)


def test_ehlo_502_falls_back_to_helo() -> None:
    def handler(conn: Conn) -> None:
        conn.reply("220 old server")
        conn.expect(b"EHLO")
        conn.reply("502 what?")
        conn.expect(b"HELO")
        conn.reply("250 hello")
        serve_normally(conn)

    server, error, _ = run(handler)
    assert error is None
    assert b"HELO " in bytes(server.conns[0].received)


@pytest.mark.parametrize("stage", ["greeting", "ehlo", "mail", "rcpt", "data", "dot"])
def test_421_at_any_stage_closes_at_once_without_rset(stage: str) -> None:
    def handler(conn: Conn) -> None:
        if stage == "greeting":
            conn.reply("421 4.3.2 shutting down")
            conn.wait_closed(5)
            return
        conn.reply("220 hi")
        conn.expect(b"EHLO")
        if stage == "ehlo":
            conn.reply("421 4.3.2 bye")
            conn.wait_closed(5)
            return
        conn.reply("250 mx")
        for step in ("mail", "rcpt", "data"):
            conn.line()
            if stage == step:
                conn.reply("421 4.3.2 bye")
                conn.wait_closed(5)
                return
            conn.reply("354 go" if step == "data" else "250 ok")
        conn.read_data()
        conn.reply("421 4.3.2 bye")
        conn.wait_closed(5)

    server, error, took = run(handler)
    assert isinstance(error, ServiceClosing) and error.reply is not None and error.reply.code == 421
    assert error.outcome_unknown is False  # a 421 is an answer, even after the dot
    assert b"RSET" not in bytes(server.conns[0].received)
    assert took < 8  # no wait for the 10 s data_done floor after a 421


@pytest.mark.parametrize("stage", ["ehlo", "mail", "rcpt", "data", "mid-data"])
def test_disconnect_at_any_stage_is_a_transient_connection_error(stage: str) -> None:
    def handler(conn: Conn) -> None:
        conn.reply("220 hi")
        conn.expect(b"EHLO")
        if stage == "ehlo":
            return
        conn.reply("250 mx")
        for step in ("mail", "rcpt", "data"):
            conn.line()
            if stage == step:
                return
            conn.reply("354 go" if step == "data" else "250 ok")
        conn.line()  # part of the content, then hang up

    _, error, _ = run(handler)
    assert isinstance(error, ServerDisconnected) and isinstance(error, ConnectionError)
    # The whole small message was written before the server hung up: from
    # the client's side that cannot be told apart from a server that got
    # the "." and died, so only then is the outcome unknown.
    assert error.outcome_unknown is (stage == "mid-data")


def test_disconnect_while_the_content_is_still_being_written_is_not_delivered() -> None:
    def handler(conn: Conn) -> None:
        greet_and_start_data(conn)
        conn.line()
        # Close with a reset (linger 0), as a crashing server would.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with ScriptedServer(handler) as server:
        with connect(server) as session, pytest.raises(ServerDisconnected) as info:
            session.sendmail("a@x.example", ["b@x.example"], b"line\r\n" * 3_000_000)
    assert info.value.outcome_unknown is False
    assert info.value.stage is Stage.DATA_BLOCK


def test_disconnect_after_the_final_dot_is_outcome_unknown() -> None:
    def handler(conn: Conn) -> None:
        greet_and_start_data(conn)
        conn.read_data()
        # The message may be queued now; we just never say so.

    _, error, _ = run(handler)
    assert isinstance(error, ServerDisconnected)
    assert error.outcome_unknown is True and error.stage is Stage.DATA_DONE
    assert error.result is not None and "b@example.com" in error.result.recipients


@pytest.mark.slow
def test_no_reply_after_the_final_dot_times_out_as_outcome_unknown() -> None:
    def handler(conn: Conn) -> None:
        greet_and_start_data(conn)
        conn.read_data()
        conn.stall(30)

    _, error, took = run(handler)
    assert isinstance(error, SMTPTimeoutError) and error.stage is Stage.DATA_DONE
    assert error.outcome_unknown is True
    assert 10 <= took < 25  # the data_done floor, not the 1 s of the others, not the 30 s stall


def test_pipelined_envelope_goes_out_in_one_write_and_replies_are_matched() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "8BITMIME"))
        conn.expect(b"MAIL")
        for _ in range(3):
            conn.expect(b"RCPT")
        conn.expect(b"DATA")
        # All five commands arrived before a single reply was sent.
        conn.send(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
        conn.read_data()
        conn.reply("250 queued as P1")
        serve_normally(conn)

    with ScriptedServer(handler) as server, client_writes() as writes:
        with connect(server) as session:
            result = session.sendmail(
                "a@x.example", ["1@x.example", "2@x.example", "3@x.example"], b"hi"
            )
    assert list(result.accepted) == ["1@x.example", "3@x.example"]
    assert result.refused["2@x.example"].code == 550
    envelope_write = next(w for w in writes if w.startswith(b"MAIL"))
    assert envelope_write == (
        b"MAIL FROM:<a@x.example>\r\n"
        + b"".join(b"RCPT TO:<%d@x.example>\r\n" % n for n in (1, 2, 3))
        + b"DATA\r\n"
    )


def test_pipelined_all_refused_but_data_354_sends_an_empty_end() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        conn.expect(b"MAIL")
        conn.expect(b"RCPT")
        conn.expect(b"DATA")
        conn.send(b"250 ok\r\n550 no\r\n354 go anyway\r\n")
        data = conn.read_data()
        conn.reply("554 no valid recipients")
        assert data == b".\r\n"
        serve_normally(conn)

    with ScriptedServer(handler) as server:
        with connect(server) as session, pytest.raises(SMTPClientError) as info:
            session.sendmail("a@x.example", ["1@x.example"], b"secret content")
        assert not server.errors
        assert b"secret content" not in bytes(server.conns[0].received)
    assert info.value.result is not None and info.value.result.accepted == {}


def test_a_missing_pipelined_reply_times_out_instead_of_shifting() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        conn.expect(b"MAIL")
        conn.expect(b"RCPT")
        conn.expect(b"DATA")
        conn.send(b"250 ok\r\n354 go\r\n")  # the RCPT reply is missing
        conn.stall(10)

    _, error, _ = run(handler)
    assert isinstance(error, ProtocolError)  # 354 cannot answer RCPT


def test_an_extra_reply_between_commands_is_a_protocol_error() -> None:
    def handler(conn: Conn) -> None:
        conn.reply("220 hi")
        conn.expect(b"EHLO")
        # The EHLO reply and an extra one in the same segment.
        conn.send(b"250 mx\r\n250 unsolicited\r\n")
        serve_normally(conn)

    _, error, _ = run(handler)
    assert isinstance(error, ProtocolError) and "nobody asked" in str(error)


def test_mail_refused_is_reported_and_rset_keeps_the_session() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.expect(b"MAIL")
        conn.reply("451 4.7.1 greylisted")
        conn.expect(b"RSET")
        conn.reply("250 ok")
        serve_normally(conn)

    with ScriptedServer(handler) as server, connect(server) as session:
        with pytest.raises(TransientSenderRefused) as info:
            session.sendmail("a@x.example", ["b@x.example"], b"x")
        assert info.value.sender == "a@x.example"
        assert session.noop().code == 250


def test_452_too_many_recipients_starts_another_transaction() -> None:
    seen: list[list[bytes]] = []

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        while True:
            line = conn.line()
            if line.startswith(b"QUIT"):
                conn.reply("221 bye")
                return
            assert line.startswith(b"MAIL")
            conn.reply("250 ok")
            rcpts: list[bytes] = []
            while True:
                line = conn.line()
                if line.startswith(b"DATA"):
                    break
                if len(rcpts) >= 2:
                    conn.reply("452 4.5.3 too many recipients")
                    continue
                rcpts.append(line)
                conn.reply("250 ok")
            seen.append(rcpts)
            conn.reply("354 go")
            conn.read_data()
            conn.reply("250 queued")

    recipients = [f"r{i}@x.example" for i in range(5)]
    with ScriptedServer(handler) as server:
        with connect(server) as session:
            result = session.sendmail("a@x.example", recipients, b"x")
        assert not server.errors
    assert list(result.accepted) == recipients
    assert [len(batch) for batch in seen] == [2, 2, 1]


def test_a_second_thread_gets_an_error_not_interleaved_commands() -> None:
    release = threading.Event()
    noop_arrived = threading.Event()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.expect(b"NOOP")
        noop_arrived.set()
        release.wait(5)
        conn.reply("250 ok")
        serve_normally(conn)

    with ScriptedServer(handler) as server, connect(server) as session:
        first = threading.Thread(target=session.noop)
        first.start()
        # The first thread is inside noop() once its NOOP reached the server
        # (an event, not a sleep: the thread may start late on a busy machine).
        assert noop_arrived.wait(10)
        try:
            with pytest.raises(SessionBusyError):
                session.noop()
        finally:
            release.set()
            first.join(5)
        received = bytes(server.conns[0].received)
    assert received.count(b"NOOP") == 1


def test_connection_refused_is_a_connect_error() -> None:
    with ScriptedServer(lambda c: None) as server:
        port = server.port
    with pytest.raises(ConnectError) as info:
        Session.connect("127.0.0.1", port, tls=TLSMode.NONE, timeouts=FAST)
    assert isinstance(info.value, ConnectionError)


def test_refusals_read_before_a_lost_connection_are_still_reported() -> None:
    def handler(conn: Conn) -> None:
        greet_and_start_data(conn, ("550 5.1.1 no such user", "250 ok"))
        conn.read_data()

    with ScriptedServer(handler) as server:
        with connect(server) as session, pytest.raises(ServerDisconnected) as info:
            session.sendmail("a@x.example", ["gone@x.example", "ok@x.example"], b"x")
    result = info.value.result
    assert info.value.outcome_unknown
    assert result is not None
    assert result.refused["gone@x.example"].code == 550
    assert result.unknown == ("ok@x.example",)


def test_a_stray_reply_before_a_further_transaction_is_never_paired_with_it() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.expect(b"MAIL")
        conn.reply("250 ok")
        conn.expect(b"RCPT")
        conn.reply("250 ok")
        conn.expect(b"RCPT")
        conn.reply("452 4.5.3 too many recipients")
        conn.expect(b"DATA")
        conn.reply("354 go")
        conn.read_data()
        # The final reply and a stray one in the same segment: the stray one
        # must not be taken for the reply to the next transaction's MAIL.
        conn.send(b"250 queued\r\n250 stray\r\n")
        conn.stall(5)

    with ScriptedServer(handler) as server:
        with connect(server) as session, pytest.raises(ProtocolError) as info:
            session.sendmail("a@x.example", ["1@x.example", "2@x.example"], b"x")
        received = bytes(server.conns[0].received)
    assert received.count(b"MAIL FROM") == 1  # the second transaction never started
    result = info.value.result
    assert result is not None and "1@x.example" in result.accepted
