"""Faults tied to a stage of the conversation: slow drip, late replies after
a timeout, a server that stops reading, disconnects and 421s where
test_core_faults.py does not already put them, and the total deadline.

Each case names its SOURCE and asserts the exact outcome: the error class,
its stage, whether the outcome is unknown, that the session is no longer
usable after a connection-level failure, and what the server received
(nothing may follow a command that timed out).
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

from hostile.faultkit import QUICK, STAGES, Attempt, attempt, connect, until
from smtpclient import Timeouts
from smtpclient.errors import (
    PermanentSenderRefused,
    ServerDisconnected,
    ServiceClosing,
    SessionClosedError,
    SMTPTimeoutError,
)
from smtpclient.protocol.state import Stage

# Every stage 6 s except the one under test (0.5 s): a case that ends well
# before 6 s ended at that stage's own deadline, not another's -- with seconds
# of slack for a loaded machine.
ROOMY = dataclasses.replace(Timeouts.uniform(6.0), data_done=10.0, total=None)
FIELD = {"ehlo": "ehlo", "mail": "mail", "rcpt": "rcpt", "data": "data_init"}


def _drip(conn: Conn) -> None:
    # A valid reply, 0.15 s a byte: a per-recv timeout (smtplib's) never fires.
    conn.drip(b"250-" + b"x" * 60 + b"\r\n250 ok\r\n", 0.15)


def _late(reply: str, after: float = 0.8) -> object:
    """Answer only after the client's 0.5 s deadline, then watch what it does."""

    def misbehave(conn: Conn) -> None:
        conn.stall(after)
        conn.reply(reply)
        conn.wait_closed(3)

    return misbehave


def _assert_nothing_after(outcome: Attempt, verb: bytes) -> None:
    verbs = outcome.verbs()
    assert verbs[-1] == verb, verbs  # not even QUIT or RSET followed
    assert outcome.usable_after is False


# --- slow drip at every stage --------------------------------------------------------


@pytest.mark.parametrize("stage", ["ehlo", "mail", "rcpt", "data"])
def test_a_dripping_reply_ends_at_its_own_stage_deadline(stage: str) -> None:
    # SOURCE: RFC 5321 §4.5.3.2 (a timeout per command, covering the whole
    # reply); Python's smtplib applies its timeout to each recv(), so a
    # server sending a byte a second holds it for ever.  The greeting case
    # is in test_core_faults.py.
    timeouts = dataclasses.replace(ROOMY, **{FIELD[stage]: 0.5})
    outcome = attempt(until(stage, _drip), timeouts=timeouts)
    assert isinstance(outcome.error, SMTPTimeoutError)
    assert outcome.error.stage is STAGES[stage]
    assert outcome.error.outcome_unknown is False
    assert 0.45 <= outcome.took < 5.0  # the 0.5 s stage, not the 6 s ones, not never
    if stage != "ehlo":
        _assert_nothing_after(outcome, {"mail": b"MAIL", "rcpt": b"RCPT", "data": b"DATA"}[stage])


@pytest.mark.slow
def test_a_dripping_reply_after_the_dot_ends_at_data_done_as_outcome_unknown() -> None:
    # SOURCE: RFC 5321 §4.5.3.2.6 and §6.1: after the final dot the message
    # may be queued already; give up only after data_done (10 s floor) and
    # say the outcome is unknown rather than "failed".
    outcome = attempt(until("dot", lambda c: c.drip(b"250 " + b"q" * 200 + b"\r\n", 0.15)))
    assert isinstance(outcome.error, SMTPTimeoutError)
    assert outcome.error.stage is Stage.DATA_DONE and outcome.error.outcome_unknown is True
    assert 10.0 <= outcome.took < 25.0  # the floor; the whole drip would take 30 s
    assert outcome.usable_after is False


# --- a server that stops reading -----------------------------------------------------


def test_a_server_that_stops_reading_during_data_times_out_at_data_block() -> None:
    # SOURCE: RFC 5321 §4.5.3.2.5 ("data block": a timeout for each block
    # written); a blocking sendall() with no deadline hangs for ever once
    # the peer's window is full.  The final dot was never written, so the
    # outcome is known: not delivered.
    def misbehave(conn: Conn) -> None:
        conn.reply("354 go ahead")
        conn.server.stopping.wait(30)  # read nothing more (until the test ends)

    body = b"0123456789abcdef" * 4 + b"\r\n"
    outcome = attempt(until("data", misbehave), timeouts=QUICK, body=body * 130_000, rcvbuf=4096)
    assert isinstance(outcome.error, SMTPTimeoutError)
    assert outcome.error.stage is Stage.DATA_BLOCK
    assert outcome.error.outcome_unknown is False
    assert outcome.took < 10.0  # QUICK's 0.5 s, not a hang until the server gives up
    assert outcome.usable_after is False
    assert b"\r\n.\r\n" not in bytes(outcome.server.conns[0].received)


# --- late replies after a timeout ----------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply", "last"),
    [("greeting", "220 finally", None), ("mail", "250 2.1.0 ok, late", b"MAIL")],
)
def test_a_late_reply_closes_the_session_and_is_never_paired(
    stage: str, reply: str, last: bytes | None
) -> None:
    # SOURCE: symfony/mailer PR #65352 and libetpan issue #181: a reply that
    # arrives after the client gave up was read as the answer to the next
    # command, shifting every reply after it (a 250 taken for 354).  Here
    # the session closes at the timeout; the late reply meets a closed
    # socket, and nothing is sent on that connection again.
    outcome = attempt(until(stage, _late(reply)), timeouts=QUICK)  # type: ignore[arg-type]
    assert isinstance(outcome.error, SMTPTimeoutError)
    assert outcome.error.stage is STAGES[stage]
    assert outcome.took < 10.0  # a timeout, not a hang (waiting would have succeeded)
    if last is None:
        assert outcome.commands == []  # not even EHLO after the late greeting
    else:
        _assert_nothing_after(outcome, last)


def test_late_pipelined_replies_are_never_read_as_the_next_answers() -> None:
    # SOURCE: RFC 2920 §3.2 (check every reply, in order) with a server that
    # answers MAIL at once but the RCPT and DATA replies only after the
    # client's deadline: no content may go out on the strength of them.
    def misbehave(conn: Conn) -> None:
        conn.expect(b"MAIL")
        conn.expect(b"RCPT")
        conn.expect(b"DATA")
        conn.reply("250 2.1.0 ok")
        conn.stall(0.8)
        conn.send(b"250 2.1.5 ok\r\n354 go ahead\r\n")
        conn.wait_closed(3)

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        misbehave(conn)

    outcome = attempt(handler, timeouts=QUICK)
    assert isinstance(outcome.error, SMTPTimeoutError) and outcome.error.stage is Stage.RCPT
    _assert_nothing_after(outcome, b"DATA")
    assert b"hello" not in bytes(outcome.server.conns[0].received)


def test_after_a_timeout_the_session_refuses_to_be_used_again() -> None:
    # SOURCE: the same desync bugs: reuse after a timeout is what pairs a
    # stale reply with a new command.  The caller gets SessionClosedError
    # (a ValueError: their mistake) and no byte is written.
    with ScriptedServer(until("mail", _late("250 late"))) as server:  # type: ignore[arg-type]
        with connect(server, QUICK) as session:
            with pytest.raises(SMTPTimeoutError):
                session.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
            for call in (session.noop, lambda: session.sendmail("a@x.example", ["b@x"], b"y")):
                with pytest.raises(SessionClosedError):
                    call()
        time.sleep(0.3)
        verbs = [line[:4] for line in bytes(server.conns[0].received).split(b"\r\n") if line]
    assert verbs == [b"EHLO", b"MAIL"]


# --- disconnects and 421s not covered in test_core_faults.py -------------------------


def _reset(conn: Conn) -> None:
    """Close with RST (SO_LINGER 0), as a crashing server does."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_a_server_that_hangs_up_before_the_greeting_is_a_disconnect() -> None:
    # SOURCE: RFC 5321 §3.1 (the server may close at once instead of greeting:
    # overloaded, or a tarpit such as Postfix postscreen dropping the client).
    outcome = attempt(lambda conn: None)
    assert isinstance(outcome.error, ServerDisconnected)
    assert isinstance(outcome.error, ConnectionError)
    assert outcome.error.stage is Stage.GREETING
    assert outcome.took < 5.0  # no wait for a greeting that cannot come


def test_a_reset_in_the_middle_of_a_multiline_ehlo_reply_is_a_disconnect() -> None:
    # SOURCE: RFC 5321 §4.2.1 (a multi-line reply ends only at its "code SP"
    # line): half a reply is no reply; ECONNRESET is translated, not leaked.
    def misbehave(conn: Conn) -> None:
        conn.send(b"250-scripted.test\r\n250-PIPELINING\r\n250-SI")
        time.sleep(0.1)
        _reset(conn)

    outcome = attempt(until("ehlo", misbehave))
    assert isinstance(outcome.error, ServerDisconnected) and outcome.error.stage is Stage.EHLO


def test_a_hangup_while_idle_is_found_before_the_next_mail() -> None:
    # SOURCE: RFC 5321 §4.5.3.2.7 (servers drop idle clients, Postfix after
    # 300 s): the next send finds the closed socket before writing MAIL, so
    # the error says plainly that nothing was sent.
    hung_up = threading.Event()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.close()
        hung_up.set()

    with ScriptedServer(handler) as server, connect(server) as session:
        assert hung_up.wait(10)  # an event, not a sleep: the server may be slow to close
        with pytest.raises(ServerDisconnected) as info:
            session.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        assert info.value.stage is Stage.MAIL and info.value.outcome_unknown is False
        assert session.usable is False
    assert b"MAIL" not in bytes(server.conns[0].received)


@pytest.mark.parametrize("fault", ["hang-up", "421"])
def test_a_failed_rset_after_a_refusal_keeps_the_refusal_as_the_outcome(fault: str) -> None:
    # SOURCE: RFC 5321 §3.8 (a server may close at any time); the refusal of
    # MAIL is the answer about this message, the lost RSET only ends the
    # connection.  Reporting the RSET failure instead would turn a
    # permanent 550 into a transient error the caller retries for days.
    def misbehave(conn: Conn) -> None:
        conn.reply("550 5.7.1 sender blocked")
        conn.expect(b"RSET")
        if fault == "421":
            conn.reply("421 4.3.2 closing")

    outcome = attempt(until("mail", misbehave))
    assert isinstance(outcome.error, PermanentSenderRefused)
    assert outcome.error.reply is not None and outcome.error.reply.code == 550
    _assert_nothing_after(outcome, b"RSET")


def test_a_hangup_instead_of_the_quit_reply_keeps_the_delivery() -> None:
    # SOURCE: RFC 5321 §4.1.1.10: the message was accepted before QUIT; a
    # server that closes without 221 changes nothing about it.
    def misbehave(conn: Conn) -> None:
        conn.reply("250 2.0.0 queued as Q1")
        conn.expect(b"QUIT")
        _reset(conn)

    outcome = attempt(until("dot", misbehave))
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.data_reply is not None and outcome.result.data_reply.code == 250


def test_421_to_noop_closes_at_once() -> None:
    # SOURCE: RFC 5321 §3.8 and §4.2.3 (421 may answer any command; the
    # client closes without RSET or QUIT).
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.expect(b"NOOP")
        conn.reply("421 4.4.2 idle too long")
        conn.wait_closed(3)

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            with pytest.raises(ServiceClosing) as info:
                session.noop()
            assert session.usable is False
        time.sleep(0.2)
        received = bytes(server.conns[0].received)
    assert info.value.stage is Stage.COMMAND
    assert received.endswith(b"NOOP\r\n")


def test_421_inside_a_pipelined_group_stops_reading_and_sends_no_content() -> None:
    # SOURCE: RFC 2920 §3.2 and RFC 5321 §3.8: the replies after a 421 will
    # never come; waiting for them would only run into the deadline.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        for verb in (b"MAIL", b"RCPT", b"RCPT", b"DATA"):
            conn.expect(verb)
        conn.send(b"250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n")
        conn.wait_closed(3)

    # Stage deadlines far above the bound: waiting for the missing replies
    # would take 10 s, stopping at the 421 takes a moment.
    slow = dataclasses.replace(Timeouts.uniform(10.0), total=None)
    outcome = attempt(handler, recipients=("b@example.com", "c@example.com"), timeouts=slow)
    assert isinstance(outcome.error, ServiceClosing) and outcome.error.stage is Stage.RCPT
    assert outcome.took < 5.0
    _assert_nothing_after(outcome, b"DATA")


def test_421_to_helo_after_the_ehlo_fallback() -> None:
    # SOURCE: RFC 5321 §4.1.1.1 (HELO for servers that refuse EHLO) and
    # §3.8: the fallback path honours 421 like every other.
    def misbehave(conn: Conn) -> None:
        conn.reply("502 5.5.1 EHLO not implemented")
        conn.expect(b"HELO")
        conn.reply("421 4.3.2 too busy")
        conn.wait_closed(3)

    outcome = attempt(until("ehlo", misbehave))
    assert isinstance(outcome.error, ServiceClosing) and outcome.error.stage is Stage.EHLO
    assert outcome.verbs() == [b"EHLO", b"HELO"]


# --- the total deadline ---------------------------------------------------------------


def _tarpit(delay: float, final: str = "250 2.0.0 queued") -> object:
    """Answer every command just inside its stage deadline (a tarpit)."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        for verb, answer in ((b"MAIL", "250 ok"), (b"RCPT", "250 ok"), (b"DATA", "354 go")):
            conn.expect(verb)
            conn.server.stopping.wait(delay)  # exact: stall() reads in 0.2 s steps
            conn.reply(answer)
        conn.read_data()
        conn.server.stopping.wait(delay)
        conn.reply(final)
        serve_normally(conn)

    return handler


def test_a_tarpit_answering_each_command_in_time_still_meets_the_total_deadline() -> None:
    # SOURCE: tarpitting (RFC 5321 §4.5.3.2 timeouts are per command, so a
    # server that answers each one just in time holds a client for the sum);
    # Timeouts.total bounds the send.  It ran out before the dot: not sent.
    timeouts = dataclasses.replace(Timeouts.uniform(0.6), data_done=10.0, total=0.9)
    outcome = attempt(_tarpit(0.35), timeouts=timeouts)  # type: ignore[arg-type]
    assert isinstance(outcome.error, SMTPTimeoutError)
    assert outcome.error.stage is Stage.DATA_INIT and outcome.error.outcome_unknown is False
    assert outcome.took < 5.0  # no hang; the tarpit alone would have let it succeed
    _assert_nothing_after(outcome, b"DATA")


def test_the_total_deadline_never_cuts_the_wait_after_the_dot_below_the_floor() -> None:
    # SOURCE: RFC 5321 §4.5.3.2.6 (10 minutes after the dot) and §6.1: once
    # the dot is sent, giving up early is how duplicates are made, so the
    # overall deadline does not shorten that wait below data_done's floor.
    timeouts = dataclasses.replace(Timeouts.uniform(0.6), data_done=10.0, total=0.9)
    outcome = attempt(_tarpit(0.25), timeouts=timeouts)  # type: ignore[arg-type]
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.data_reply is not None and outcome.result.data_reply.code == 250
    assert 0.9 < outcome.took < 9.0  # past the total, and no wait for the 10 s floor
