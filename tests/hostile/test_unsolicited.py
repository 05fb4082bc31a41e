"""Replies nobody asked for: before EHLO, between commands, between
messages, and extra, missing-then-late or shifted replies in a pipelined
group.

The rule under test: every reply is matched to the command it answers, and
a reply out of step is never paired with a later command.  The session is
closed with a ``ProtocolError`` (``ServiceClosing`` for a 421) before the
next command is written, so the server-side transcript shows nothing after
the point where the stream went wrong.  A message whose content was never
sent is known not to be delivered.
"""

from __future__ import annotations

import threading
import time

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

from hostile.faultkit import attempt, command_lines, connect
from smtpclient.errors import ProtocolError, ServiceClosing
from smtpclient.protocol.state import Stage

BODY = b"Subject: t\r\n\r\nsecret content\r\n"


def _pipelined_group(replies: bytes, *, then: str | None = None) -> object:
    """EHLO with PIPELINING, read MAIL/RCPT/DATA, answer with *replies*."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        for verb in (b"MAIL", b"RCPT", b"DATA"):
            conn.expect(verb)
        conn.send(replies)
        if then is not None:  # what a server that believes it was understood does next
            conn.read_data(3)
            conn.reply(then)
        conn.wait_closed(3)

    return handler


def _never_sent_content(outcome: object) -> None:
    server = outcome.server  # type: ignore[attr-defined]
    assert b"secret content" not in bytes(server.conns[0].received)
    assert outcome.usable_after is False  # type: ignore[attr-defined]


# --- before EHLO ---------------------------------------------------------------------


def test_a_reply_sent_with_the_greeting_is_refused_before_ehlo() -> None:
    # SOURCE: RFC 5321 §4.3.1 (one greeting, then one reply per command);
    # Postfix postscreen's "pregreet" test is the server-side mirror.  Had
    # the client sent EHLO, the early 250 would have answered it and every
    # later reply would be one command late.
    def handler(conn: Conn) -> None:
        conn.send(b"220 hi\r\n250 early\r\n")
        conn.wait_closed(3)

    outcome = attempt(handler)
    assert isinstance(outcome.error, ProtocolError) and outcome.error.stage is Stage.EHLO
    assert outcome.commands == []


# --- between commands and between messages ----------------------------------------------


def _idle_then(unsolicited: bytes, said: threading.Event) -> object:
    """Serve one message normally, then say *unsolicited* while the client is
    idle, and set *said*."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        for verb, answer in ((b"MAIL", "250 ok"), (b"RCPT", "250 ok"), (b"DATA", "354 go")):
            conn.expect(verb)
            conn.reply(answer)
        conn.read_data()
        conn.reply("250 2.0.0 queued as FIRST")
        time.sleep(0.05)
        conn.send(unsolicited)
        said.set()
        serve_normally(conn)

    return handler


@pytest.mark.parametrize(
    ("unsolicited", "error"),
    [
        (b"250 2.0.0 ok\r\n", ProtocolError),
        (b"421 4.4.2 idle timeout, closing\r\n", ServiceClosing),
        (b"garbage without an end", ProtocolError),
    ],
    ids=["stray-250", "idle-421", "partial-line"],
)
def test_data_arriving_while_idle_closes_before_the_next_command(
    unsolicited: bytes, error: type[Exception]
) -> None:
    # SOURCE: aiosmtplib PR #350 (unsolicited data while idle desynchronised
    # a pooled connection: every later command got the previous reply);
    # RFC 5321 §3.8 for the idle 421 (Postfix sends it on its idle timeout),
    # which is a closed connection, not a protocol violation.
    said = threading.Event()
    with ScriptedServer(_idle_then(unsolicited, said)) as server:  # type: ignore[arg-type]
        with connect(server) as session:
            first = session.sendmail("a@example.com", ["b@example.com"], b"one\r\n")
            # Not a sleep: on a loaded machine the server may say it late, and a
            # NOOP written first would take the stray bytes as its reply.
            assert said.wait(10)
            with pytest.raises(error) as info:
                session.noop()
            assert info.value.stage is Stage.COMMAND and session.usable is False
        time.sleep(0.2)
        verbs = [line[:4] for line in command_lines(bytes(server.conns[0].received))]
    assert first.data_reply is not None and first.data_reply.text.endswith("FIRST")
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA"]  # no NOOP or QUIT after


def test_an_extra_reply_to_mail_without_pipelining_is_caught_before_rcpt() -> None:
    # SOURCE: libetpan issue #181 (a second, delayed reply was read as the
    # answer to the next command).  Without pipelining each command waits
    # for its reply; bytes already waiting before a command is written are
    # an extra reply.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        conn.expect(b"MAIL")
        conn.send(b"250 2.1.0 ok\r\n250 2.1.5 ok (for a RCPT not yet sent)\r\n")
        conn.wait_closed(3)

    outcome = attempt(handler, body=BODY)
    assert isinstance(outcome.error, ProtocolError) and outcome.error.stage is Stage.RCPT
    assert outcome.verbs() == [b"EHLO", b"MAIL"]
    _never_sent_content(outcome)


# --- pipelined groups: extra, shifted, reordered -----------------------------------------


def test_an_extra_reply_after_354_is_never_taken_for_the_final_answer() -> None:
    # SOURCE: RFC 2920 §3.2 (replies are matched in order) and the response
    # desync of symfony/mailer PR #65352.  Before the fix, the stray "250"
    # sitting behind the 354 was read as the reply to the final dot: the
    # client reported delivered while the server answered 554.
    handler = _pipelined_group(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 fake\r\n", then="554 no")
    outcome = attempt(handler, body=BODY)  # type: ignore[arg-type]
    assert isinstance(outcome.error, ProtocolError) and outcome.error.stage is Stage.DATA_INIT
    assert outcome.error.outcome_unknown is False and outcome.result is None
    _never_sent_content(outcome)


def test_an_extra_reply_inside_the_group_shifts_nothing() -> None:
    # SOURCE: RFC 2920 §3.2: a duplicated RCPT reply pushes the DATA reply
    # one place back; DATA then "gets" a 250, which cannot answer it.
    handler = _pipelined_group(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    outcome = attempt(handler, body=BODY)  # type: ignore[arg-type]
    assert isinstance(outcome.error, ProtocolError) and outcome.error.stage is Stage.DATA_INIT
    _never_sent_content(outcome)


def test_replies_in_the_wrong_order_are_a_protocol_error() -> None:
    # SOURCE: RFC 2920 §3.2 ("the client ... must check the reply codes in
    # the order of the commands"): a 354 first cannot answer MAIL.
    handler = _pipelined_group(b"354 go\r\n250 ok\r\n250 ok\r\n")
    outcome = attempt(handler, body=BODY)  # type: ignore[arg-type]
    assert isinstance(outcome.error, ProtocolError) and outcome.error.stage is Stage.MAIL
    _never_sent_content(outcome)


def test_an_extra_reply_after_the_final_reply_keeps_the_delivery_and_ends_the_session() -> None:
    # SOURCE: RFC 5321 §4.2 (one reply per command).  The message *was*
    # accepted (its 250 came in order); only the stray second reply is out
    # of step, and it is caught before the next message's MAIL.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING",))
        for verb in (b"MAIL", b"RCPT", b"DATA"):
            conn.expect(verb)
        conn.send(b"250 ok\r\n250 ok\r\n354 go\r\n")
        conn.read_data()
        conn.send(b"250 2.0.0 queued as REAL\r\n250 2.0.0 queued as EXTRA\r\n")
        serve_normally(conn)

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            first = session.sendmail("a@example.com", ["b@example.com"], b"one\r\n")
            with pytest.raises(ProtocolError) as info:
                session.sendmail("a@example.com", ["b@example.com"], BODY)
            assert session.usable is False
        time.sleep(0.2)
        received = bytes(server.conns[0].received)
    assert first.data_reply is not None and first.data_reply.text.endswith("REAL")
    assert info.value.stage is Stage.MAIL
    assert received.count(b"MAIL FROM") == 1 and b"secret content" not in received


def test_a_421_right_behind_the_final_reply_keeps_the_delivery() -> None:
    # SOURCE: RFC 5321 §3.8 (a server shutting down says 421 and closes; it
    # may do so right after answering).  The message is delivered; the next
    # send learns the connection is closing before writing MAIL.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        for verb, answer in ((b"MAIL", "250 ok"), (b"RCPT", "250 ok"), (b"DATA", "354 go")):
            conn.expect(verb)
            conn.reply(answer)
        conn.read_data()
        conn.send(b"250 2.0.0 queued\r\n421 4.3.2 system shutting down\r\n")
        conn.wait_closed(3)

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            result = session.sendmail("a@example.com", ["b@example.com"], b"one\r\n")
            with pytest.raises(ServiceClosing) as info:
                session.sendmail("a@example.com", ["b@example.com"], BODY)
        time.sleep(0.2)
        received = bytes(server.conns[0].received)
    assert result.data_reply is not None and result.data_reply.code == 250
    assert info.value.reply is not None and info.value.reply.code == 421
    assert received.count(b"MAIL FROM") == 1
