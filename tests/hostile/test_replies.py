"""Malformed, oversized, mismatched and hostile reply *content*.

Each case names its SOURCE and the exact outcome.  Malformed or
mismatched replies are a ``ProtocolError`` that closes the session (the
reply stream can no longer be trusted); lenient-but-harmless forms (a bare
code, bare LF) are accepted; server text never reaches a log line or an
exception message with raw control characters in it.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time

import pytest
from servers.scripted import Conn, ScriptedServer, serve_normally

from hostile.faultkit import FAST, attempt, connect, normal_after, until
from smtpclient import Timeouts
from smtpclient.errors import PermanentRecipientsRefused, ProtocolError
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage

EHLO_REPLY = (
    b"250-mx.scripted.test greets [127.0.0.1]\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 35882577\r\n"
    b"250-8BITMIME\r\n"
    b"250-AUTH=LOGIN\r\n"
    b"250-AUTH PLAIN LOGIN CRAM-MD5\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-DSN\r\n"
    b"250 SMTPUTF8\r\n"
)


# Long deadlines for the cases that must fail at once, without waiting for one.
PATIENT = dataclasses.replace(Timeouts.uniform(10.0), total=None)


def _protocol_error(outcome: object, stage: Stage) -> ProtocolError:
    error = outcome.error  # type: ignore[attr-defined]
    assert isinstance(error, ProtocolError), error
    assert error.stage is stage
    # PATIENT deadlines are 10 s: an error within 5 s came without waiting for one.
    assert outcome.took < 5.0  # type: ignore[attr-defined]
    return error


# --- malformed ------------------------------------------------------------------------


@pytest.mark.parametrize("greeting", [b"600 out of range\r\n", b"199 too small\r\n"])
def test_a_code_outside_2xx_to_5xx_is_a_protocol_error(greeting: bytes) -> None:
    # SOURCE: RFC 5321 §4.2.1: the first digit is 2, 3, 4 or 5; anything
    # else is not an SMTP reply (RFC 821's 1yz class is unused in SMTP).
    outcome = attempt(until("greeting", lambda c: c.send(greeting)), timeouts=PATIENT)
    _protocol_error(outcome, Stage.GREETING)
    assert outcome.commands == []


def test_a_server_that_is_not_smtp_is_refused_at_once() -> None:
    # SOURCE: cross-protocol confusion (the wrong port; the ALPACA study of
    # TLS servers answering other protocols): an HTTP error page is not a
    # greeting, and nothing of ours is sent to such a peer.
    page = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    outcome = attempt(until("greeting", lambda c: c.send(page)), timeouts=PATIENT)
    _protocol_error(outcome, Stage.GREETING)
    assert outcome.commands == []


def test_a_bad_separator_after_the_code_is_a_protocol_error() -> None:
    # SOURCE: RFC 5321 §4.2: after the code comes SP, "-" or CRLF only.
    outcome = attempt(until("ehlo", lambda c: c.send(b"250*scripted.test\r\n")), timeouts=PATIENT)
    _protocol_error(outcome, Stage.EHLO)
    assert outcome.usable_after is None  # connect() itself failed and closed


def test_a_truncated_code_is_a_protocol_error() -> None:
    # SOURCE: RFC 5321 §4.2 (three digits); lettre and go-smtp bugs where a
    # short line was indexed past its end.
    outcome = attempt(until("mail", lambda c: c.send(b"25\r\n")), timeouts=PATIENT)
    _protocol_error(outcome, Stage.MAIL)
    assert outcome.usable_after is False


def test_a_code_without_text_is_accepted() -> None:
    # SOURCE: RFC 5321 §4.2: "a code with no text must be accepted" (the
    # line may end right after the three digits).
    def handler(conn: Conn) -> None:
        conn.send(b"220\r\n")
        conn.expect(b"EHLO")
        conn.send(b"250\r\n")
        for verb in (b"MAIL", b"RCPT"):
            conn.expect(verb)
            conn.send(b"250\r\n")
        conn.expect(b"DATA")
        conn.send(b"354\r\n")
        conn.read_data()
        conn.send(b"250\r\n")
        serve_normally(conn)

    outcome = attempt(handler)
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.data_reply == Reply(250, ("",))


def test_bare_lf_line_ends_in_replies_are_accepted() -> None:
    # SOURCE: RFC 5321 §2.3.8 forbids bare LF, but only sending it is
    # dangerous (SMTP smuggling, SEC Consult 2023); on the reading side
    # accepting it harms nothing, and some appliances send it.
    def handler(conn: Conn) -> None:
        conn.send(b"220 lf.test\n")
        conn.expect(b"EHLO")
        conn.send(b"250-lf.test\n250 PIPELINING\n")
        for verb in (b"MAIL", b"RCPT", b"DATA"):
            conn.expect(verb)
        conn.send(b"250 ok\n250 ok\n354 go\n")
        conn.read_data()
        conn.send(b"250 queued\n")
        serve_normally(conn)

    outcome = attempt(handler)
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.data_reply is not None and outcome.result.data_reply.text == "queued"


# --- oversized --------------------------------------------------------------------------


def test_a_terminated_but_oversized_line_is_a_protocol_error() -> None:
    # SOURCE: RFC 5321 §4.5.3.1.5 (reply lines of 512 octets) and
    # CVE-2013-1752 (unbounded readline in smtplib and its siblings).  The
    # endless, unterminated line is in test_core_faults.py.
    outcome = attempt(
        until("rcpt", lambda c: c.send(b"550 " + b"y" * 8000 + b"\r\n")), timeouts=PATIENT
    )
    error = _protocol_error(outcome, Stage.RCPT)
    assert "longer than" in str(error)


def test_a_reply_over_the_total_size_cap_is_a_protocol_error() -> None:
    # SOURCE: lettre PR #1143 (a peer streaming continuation lines grew the
    # reply buffer without bound); the cap counts bytes as well as lines.
    lines = b"".join(b"250-" + b"k" * 400 + b"\r\n" for _ in range(200)) + b"250 end\r\n"
    outcome = attempt(until("ehlo", lambda c: c.send(lines)), timeouts=PATIENT)
    error = _protocol_error(outcome, Stage.EHLO)
    assert "larger than" in str(error)


# --- mismatched ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "wire"),
    [
        ("ehlo", b"334 VXNlcm5hbWU6\r\n"),  # an AUTH challenge where EHLO's reply belongs
        ("ehlo", b"220 hello again\r\n"),  # a repeated greeting
        ("mail", b"354 go ahead\r\n"),  # DATA's reply to MAIL
        ("data", b"250 2.0.0 ok\r\n"),  # no 354: the content must not follow
    ],
    ids=["334-to-EHLO", "220-to-EHLO", "354-to-MAIL", "250-to-DATA"],
)
def test_a_reply_that_cannot_answer_its_command_is_a_protocol_error(
    stage: str, wire: bytes
) -> None:
    # SOURCE: RFC 5321 §4.3.2 (the replies each command may get: EHLO 250,
    # MAIL 250, DATA 354); a reply from another command means the stream is
    # shifted, as in PHPMailer issue #1003's "synchronization error".
    def misbehave(conn: Conn) -> None:
        conn.send(wire)
        conn.wait_closed(3)

    outcome = attempt(until(stage, misbehave), timeouts=PATIENT)
    _protocol_error(
        outcome, {"ehlo": Stage.EHLO, "mail": Stage.MAIL, "data": Stage.DATA_INIT}[stage]
    )
    assert b"hello" not in bytes(outcome.server.conns[0].received)  # no content went out
    assert outcome.usable_after in (None, False)


def test_garbage_ehlo_parameters_are_ignored_not_fatal() -> None:
    # SOURCE: RFC 1870 §3 (SIZE takes ASCII digits).  Found by the EHLO
    # fuzzer: "SIZE ²" passed str.isdigit() and then crashed int() with a
    # ValueError, the caller's error type, for the server's mistake.
    def misbehave(conn: Conn) -> None:
        conn.reply("250 scripted.test", "250  ", "250 8BITMIME x y", "250 SIZE ²")
        serve_normally(conn)

    outcome = attempt(until("ehlo", misbehave))
    assert outcome.error is None and outcome.result is not None
    # SIZE is offered (so the size is declared) but sets no limit.
    assert outcome.commands[1] == b"MAIL FROM:<a@example.com> SIZE=21"


# --- split at every byte boundary -----------------------------------------------------------


def test_an_ehlo_reply_dripped_one_byte_per_write_parses_the_same() -> None:
    # SOURCE: RFC 5321 §4.2 (a reply is a byte stream; TCP may deliver it in
    # any pieces).  Each byte is its own segment (TCP_NODELAY).
    whole = Extensions.parse(_parse(EHLO_REPLY))

    def misbehave(conn: Conn) -> None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.drip(EHLO_REPLY, 0.002)
        serve_normally(conn)

    with ScriptedServer(until("ehlo", misbehave)) as server:
        with connect(server, dataclasses.replace(FAST, ehlo=5.0)) as session:
            assert session.extensions == whole
            assert session.extensions.max_size == 35882577
            assert session.extensions.auth_mechanisms == {"LOGIN", "PLAIN", "CRAM-MD5"}


def test_an_ehlo_reply_split_in_two_at_every_boundary_parses_the_same() -> None:
    # SOURCE: as above: every cut position of one reply, on one connection
    # (EHLO may be repeated, RFC 5321 §4.1.4).
    whole = Extensions.parse(_parse(EHLO_REPLY))
    cuts = range(1, len(EHLO_REPLY))

    def misbehave(conn: Conn) -> None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.send(EHLO_REPLY)
        for cut in cuts:
            conn.expect(b"EHLO")
            conn.send(EHLO_REPLY[:cut])
            time.sleep(0.002)
            conn.send(EHLO_REPLY[cut:])
        serve_normally(conn)

    with ScriptedServer(until("ehlo", misbehave)) as server, connect(server) as session:
        for _ in cuts:
            session.ehlo()
            assert session.extensions == whole


def _parse(wire: bytes) -> Reply:
    from smtpclient.protocol.reply import ReplyParser  # noqa: PLC0415

    parser = ReplyParser()
    parser.feed(wire)
    reply = parser.next_reply()
    assert reply is not None
    return reply


# --- hostile text: kept safe in logs and exceptions --------------------------------------


HOSTILE_TEXT = {
    # CVE-2003-0063 (xterm title reporting) and other terminal escape
    # injection: ESC/OSC sequences that clear, retitle or feed a terminal.
    "ansi-escape": b"\x1b]0;pwned\x07\x1b[2J\x1b[31mno such user",
    # CWE-158: a NUL that truncates text in C-based log pipelines.
    "nul": b"no such\x00user",
    # CVE-2021-42574 (Trojan Source): bidi overrides that reorder text.
    "bidi-override": "no such user \u202eresu hcus on\u202c \u2066x\u2069".encode(),
    # CWE-117 (log forging): a bare CR inside a line fakes a new log line.
    "carriage-return": b"no such user\r2024-01-01 INFO delivered ok",
    # aiosmtplib issue #41, Internet.nl issue #797: GBK/latin-1 text, not UTF-8.
    "not-utf-8": b"\xc7\xeb\xca\xb9\xd3\xc3 \xff\xfe user unknown",
}


@pytest.mark.parametrize("text", list(HOSTILE_TEXT.values()), ids=list(HOSTILE_TEXT))
def test_hostile_reply_text_is_escaped_in_logs_and_exceptions(
    text: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    def misbehave(conn: Conn) -> None:
        conn.send(b"550-5.1.1 " + text + b"\r\n550 5.1.1 " + text + b"\r\n")

    with caplog.at_level(logging.DEBUG, logger="smtpclient"):
        outcome = attempt(until("rcpt", normal_after(misbehave)))
    error = outcome.error
    assert isinstance(error, PermanentRecipientsRefused)
    assert error.reply is not None and error.reply.code == 550
    assert error.reply.raw[0] == b"5.1.1 " + text  # the evidence is kept, undamaged
    shown = [str(error), repr(error.reply)] + [r.getMessage() for r in caplog.records]
    assert any("S: 550" in line for line in shown)  # the transcript did log the reply
    for line in shown:
        assert line.isprintable(), repr(line)
        assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in line)  # no lone surrogates
