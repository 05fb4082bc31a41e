"""compat on the engine: each unsafe smtplib habit of issue 14, against a
scripted server, judged from the bytes on the wire and what the call
returned or raised."""

from __future__ import annotations

import email
import email.errors
import email.policy
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient.compat as compat
from smtpclient.errors import InvalidAddressError, ProtocolError, SessionBusyError

from .twin import TLSFiles

HOST = "127.0.0.1"
Handler = Callable[[Conn], None]


def normal(extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME")) -> Handler:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, extensions)
        serve_normally(conn)

    return handler


class Wire:
    """A scripted server and, once it has stopped, what each client sent."""

    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        self.server = ScriptedServer(handler, **kwargs)
        self.sent: list[bytes] = []

    def client(self, cls: Any = compat.SMTP, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 10)
        return cls(HOST, self.server.port, local_hostname="client.test", **kwargs)


@pytest.fixture
def wire() -> Iterator[Callable[..., Wire]]:
    made: list[Wire] = []

    def make(handler: Handler, **kwargs: Any) -> Wire:
        item = Wire(handler, **kwargs)
        item.server.start()
        made.append(item)
        return item

    yield make
    for item in made:
        item.server.stop()


def stopped(item: Wire) -> list[bytes]:
    """Stop the server (joining its threads) and return each connection's bytes."""
    item.server.stop()
    return [bytes(conn.received) for conn in item.server.conns]


# --- addresses --------------------------------------------------------------------------

HOSTILE_ADDRESSES = [
    pytest.param('"bob\r\nRCPT TO:<evil@attacker.test>"@example.test', id="CRLF in quoted local"),
    pytest.param("Bob\r\n <bob@example.test>", id="CRLF in display name"),
    pytest.param('"Bob\x00" <bob@example.test>', id="NUL in display name"),
    pytest.param("bob\u202e@example.test", id="bidi override"),
    pytest.param("bob@example.test\r\nRSET", id="CRLF after address"),
    pytest.param("bob@example.test, evil@attacker.test", id="a list (parseaddr keeps one)"),
    pytest.param("Bob <bob@example.test> <evil@attacker.test>", id="two angle addresses"),
]


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
@pytest.mark.parametrize("role", ["sender", "recipient"])
def test_hostile_addresses_are_refused_before_mail(
    wire: Callable[..., Wire], address: str, role: str
) -> None:
    item = wire(normal())
    with item.client() as s:
        sender, recipient = (address, "ok@example.test")
        if role == "recipient":
            sender, recipient = "me@example.test", address
        with pytest.raises(InvalidAddressError):
            s.sendmail(sender, [recipient], b"Subject: x\r\n\r\nbody\r\n")
        assert isinstance(s.noop(), tuple)  # the session is intact
    (sent,) = stopped(item)
    assert b"MAIL" not in sent.upper() and b"RCPT" not in sent.upper()
    assert b"evil" not in sent and b"\x00" not in sent


def test_smtplib_address_forms_still_work(wire: Callable[..., Wire]) -> None:
    item = wire(normal())
    with item.client() as s:
        refused = s.sendmail(
            "Me Myself <me@example.test>", ["tester", "<you@example.test>"], b"x\r\n"
        )
        assert refused == {}
    (sent,) = stopped(item)
    assert b"<me@example.test>" in sent and b"Me Myself" not in sent
    assert b"<tester>" in sent and b"<you@example.test>" in sent


def test_a_non_ascii_recipient_without_smtputf8_fails_before_mail(
    wire: Callable[..., Wire],
) -> None:
    item = wire(normal())
    with item.client() as s:
        with pytest.raises(UnicodeEncodeError):
            s.sendmail("me@example.test", ["me@example.test", "jörg@example.test"], b"x\r\n")
    (sent,) = stopped(item)
    assert b"MAIL" not in sent.upper()


# --- stale replies --------------------------------------------------------------------


def _stale_after_ehlo(conn: Conn) -> None:
    conn.reply("220 scripted.test ESMTP")
    conn.expect(b"EHLO")
    # The EHLO reply and a reply nobody asked for, in one write.
    conn.send(b"250 scripted.test\r\n550 5.7.1 refused, sent early\r\n")
    serve_normally(conn)


def test_a_stale_reply_is_never_paired_with_the_next_command(wire: Callable[..., Wire]) -> None:
    item = wire(_stale_after_ehlo)
    s = item.client()
    s.ehlo()
    with pytest.raises(compat.UnsolicitedReplyError) as caught:
        s.sendmail("me@example.test", ["you@example.test"], b"x\r\n")
    assert isinstance(caught.value, smtplib.SMTPResponseException)
    assert isinstance(caught.value, ProtocolError)
    assert s.sock is None  # closed: the stream is out of step
    (sent,) = stopped(item)
    assert b"MAIL" not in sent.upper()


def _two_replies_to_the_dot(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"MAIL")
    conn.reply("250 ok")
    conn.expect(b"RCPT")
    conn.reply("250 ok")
    conn.expect(b"DATA")
    conn.reply("354 go")
    conn.read_data()
    conn.send(b"250 queued\r\n250 an extra reply\r\n")
    serve_normally(conn)


def test_a_stale_reply_after_the_final_reply_stops_the_next_command(
    wire: Callable[..., Wire],
) -> None:
    item = wire(_two_replies_to_the_dot)
    s = item.client()
    assert s.sendmail("me@example.test", ["you@example.test"], b"x\r\n") == {}
    with pytest.raises(compat.UnsolicitedReplyError):
        s.noop()
    (sent,) = stopped(item)
    assert b"NOOP" not in sent.upper()


def test_a_body_sent_in_raw_pieces_keeps_the_stale_check(wire: Callable[..., Wire]) -> None:
    item = wire(_two_replies_to_the_dot)
    s = item.client()
    s.ehlo()
    assert s.docmd("MAIL", "FROM:<me@example.test>")[0] == 250
    assert s.docmd("RCPT", "TO:<you@example.test>")[0] == 250
    assert s.docmd("DATA")[0] == 354
    s.send(b"Subject: pieces\r\n\r\n")
    s.send(b"body\r\n.\r\n")
    assert s.getreply() == (250, b"queued")
    with pytest.raises(compat.UnsolicitedReplyError):  # the extra 250 is still caught
        s.noop()
    (sent,) = stopped(item)
    assert b"Subject: pieces\r\n\r\nbody\r\n.\r\n" in sent and b"NOOP" not in sent.upper()


def test_pipelined_putcmd_then_getreply_is_not_mistaken_for_stale(
    wire: Callable[..., Wire],
) -> None:
    item = wire(normal())
    with item.client() as s:
        s.ehlo()
        s.putcmd("noop")
        s.putcmd("rset")
        assert s.getreply()[0] == 250
        assert s.getreply()[0] == 250
        s.send("NOOP\r\n")  # hand-made pipelining with raw sends
        s.send("RSET\r\n")
        assert s.getreply()[0] == 250
        assert s.getreply()[0] == 250
        assert s.noop()[0] == 250


# --- content rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extensions", "body", "error"),
    [
        pytest.param(("8BITMIME",), b"a" * 1500 + b"\r\n", compat.LongLineError, id="1500 octets"),
        pytest.param(
            ("PIPELINING",), "caf\u00e9\r\n".encode(), compat.EightBitContentError, id="8bit"
        ),
    ],
)
def test_content_rules_are_decided_before_mail(
    wire: Callable[..., Wire], extensions: tuple[str, ...], body: bytes, error: type[Exception]
) -> None:
    item = wire(normal(extensions))
    with item.client() as s:
        with pytest.raises(error) as caught:
            s.sendmail("me@example.test", ["you@example.test"], body)
        assert isinstance(caught.value, ValueError)
        assert s.noop()[0] == 250
    (sent,) = stopped(item)
    assert b"MAIL" not in sent.upper()


def test_eight_bit_content_goes_to_a_server_with_8bitmime(wire: Callable[..., Wire]) -> None:
    item = wire(normal(("8BITMIME",)))
    with item.client() as s:
        assert s.sendmail("me@example.test", ["you@example.test"], "caf\u00e9\r\n".encode()) == {}
    (sent,) = stopped(item)
    assert "caf\u00e9".encode() in sent


@pytest.mark.parametrize(
    "subject",
    [
        # Patched interpreters' own generator refuses this one (HeaderParseError,
        # as smtplib gets); elsewhere the library's header check does.
        pytest.param("hello\r\nBcc: evil@attacker.test", id="an extra header"),
        pytest.param("hello\r\n\r\nevil body", id="an early end of the header"),
        pytest.param("hello\revil", id="a bare CR"),
    ],
)
def test_a_subject_with_a_line_break_is_refused(wire: Callable[..., Wire], subject: str) -> None:
    item = wire(normal())
    msg = Message()  # compat32: keeps the value as given
    msg["From"] = "me@example.test"
    msg["To"] = "you@example.test"
    msg["Subject"] = subject
    msg.set_payload("body\n")
    with item.client() as s:
        with pytest.raises((compat.HeaderInjectionError, email.errors.HeaderParseError)):
            s.send_message(msg)
        del msg["Subject"]
        msg["Subject"] = "a folded\r\n subject"
        assert s.send_message(msg) == {}
    (sent,) = stopped(item)
    assert b"evil" not in sent and sent.upper().count(b"MAIL") == 1
    assert b"Subject: a folded\r\n subject\r\n" in sent


# --- one thread at a time ---------------------------------------------------------------


noop_seen = threading.Event()
release = threading.Event()


def _slow_noop(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"NOOP")
    noop_seen.set()
    release.wait(10)  # hold the reply while the other thread tries
    conn.reply("250 ok")
    serve_normally(conn)


def test_a_second_thread_gets_an_error_not_interleaved_commands(
    wire: Callable[..., Wire],
) -> None:
    noop_seen.clear()
    release.clear()
    item = wire(_slow_noop)
    s = item.client()
    s.ehlo()
    outcome: list[Any] = []
    first = threading.Thread(target=lambda: outcome.append(s.noop()))
    first.start()
    try:
        assert noop_seen.wait(10)  # the first thread is inside noop(), awaiting the reply
        with pytest.raises(SessionBusyError):
            s.rset()
    finally:
        release.set()
        first.join(10)
    assert outcome == [(250, b"ok")]
    s.quit()
    (sent,) = stopped(item)
    assert b"RSET" not in sent.upper()


def test_a_thread_waiting_for_replies_owns_the_object(wire: Callable[..., Wire]) -> None:
    item = wire(normal())
    with item.client() as s:
        s.ehlo()
        s.putcmd("noop")
        refused: list[BaseException] = []

        def other() -> None:
            try:
                s.putcmd("rset")
            except SessionBusyError as exc:
                refused.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert refused
        assert s.getreply()[0] == 250
    (sent,) = stopped(item)
    assert b"RSET" not in sent.upper()


# --- connect, STARTTLS, QUIT ------------------------------------------------------------


def test_connect_while_connected_raises(wire: Callable[..., Wire]) -> None:
    item = wire(normal())
    with item.client() as s:
        s.ehlo()
        with pytest.raises(compat.AlreadyConnectedError):
            s.connect(HOST, item.server.port)
        assert s.noop()[0] == 250
    stopped(item)
    assert item.server.connections == 1


def test_starttls_under_tls_raises_without_sending(
    wire: Callable[..., Wire], tls: TLSFiles
) -> None:
    item = wire(normal(("STARTTLS",)), implicit_tls=tls.server_context)
    with item.client(compat.SMTP_SSL, context=tls.client_context()) as s:
        s.ehlo()
        with pytest.raises(compat.AlreadyEncryptedError) as caught:
            s.starttls(context=tls.client_context())
        assert isinstance(caught.value, smtplib.SMTPNotSupportedError)
    (sent,) = stopped(item)
    assert b"STARTTLS" not in sent.upper()


def _refuse_starttls(conn: Conn) -> None:
    greet_and_ehlo(conn, ("STARTTLS",))
    conn.expect(b"STARTTLS")
    conn.reply("454 4.7.0 TLS not available")
    conn.wait_closed()


def _bad_handshake(conn: Conn) -> None:
    greet_and_ehlo(conn, ("STARTTLS",))
    conn.expect(b"STARTTLS")
    conn.reply("220 go ahead")
    conn.send(b"this is not a TLS record at all\r\n" * 4)
    conn.wait_closed()


def test_a_refused_starttls_closes_the_connection(wire: Callable[..., Wire]) -> None:
    item = wire(_refuse_starttls)
    s = item.client()
    with pytest.raises(smtplib.SMTPResponseException) as caught:
        s.starttls()
    assert caught.value.smtp_code == 454
    assert s.sock is None
    stopped(item)


def test_a_failed_handshake_closes_the_connection(wire: Callable[..., Wire]) -> None:
    item = wire(_bad_handshake)
    s = item.client()
    with pytest.raises(ssl.SSLError):
        s.starttls()
    assert s.sock is None
    stopped(item)


def _close_on_quit(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"QUIT")
    conn.close()


def test_quit_answered_by_a_close_is_a_clean_close(wire: Callable[..., Wire]) -> None:
    item = wire(_close_on_quit)
    s = item.client()
    s.ehlo()
    assert s.quit() == (221, b"")
    assert s.sock is None
    with item.client() as again:  # and the with-statement exits cleanly
        again.ehlo()
    stopped(item)


# --- malformed replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"2x0 what\r\n", id="bad code"),
        pytest.param(b"250-first\r\n251 second\r\n", id="code changes"),
        pytest.param(b"hello there\r\n", id="junk line"),
    ],
)
def test_a_malformed_reply_raises_and_closes(wire: Callable[..., Wire], reply: bytes) -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        conn.expect(b"NOOP")
        conn.send(reply)
        conn.wait_closed()

    item = wire(handler)
    s = item.client()
    s.ehlo()
    with pytest.raises(compat.MalformedReplyError) as caught:
        s.noop()
    assert isinstance(caught.value, smtplib.SMTPResponseException)
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.smtp_code == -1
    assert s.sock is None
    stopped(item)


# --- the engine's transcript ----------------------------------------------------------


def test_the_engine_transcript_shows_commands_not_content(
    wire: Callable[..., Wire], caplog: pytest.LogCaptureFixture
) -> None:
    item = wire(normal())
    with caplog.at_level(logging.DEBUG, logger="smtpclient.transcript"):
        with item.client() as s:
            s.sendmail("me@example.test", ["you@example.test"], b"the private body\r\n")
    text = caplog.text
    assert "C: mail FROM:<me@example.test>" in text.replace("from:", "FROM:")
    assert "S: 250" in text and "octets of message content" in text
    assert "private body" not in text
    stopped(item)


def test_send_message_reencodes_long_lines_as_the_native_api_does(
    wire: Callable[..., Wire],
) -> None:
    item = wire(normal())
    msg = EmailMessage()
    msg["From"] = "me@example.test"
    msg["To"] = "you@example.test"
    msg["Subject"] = "long"
    text = "word " * 400 + "\n"  # one 2000-octet line
    msg.set_content(text)
    with item.client() as s:
        assert s.send_message(msg) == {}
    (sent,) = stopped(item)
    assert max(len(line) for line in sent.split(b"\r\n")) <= 998
    start = sent.lower().index(b"\r\ndata\r\n") + len(b"\r\ndata\r\n")
    content = sent[start : sent.index(b"\r\n.\r\n", start) + 2]
    stored = email.message_from_bytes(content, policy=email.policy.default)
    assert stored.get_content().replace("\r\n", "\n") == text


def _two_replies_to_mail(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"MAIL")
    conn.send(b"550 5.7.1 sender refused\r\n250 and a stray reply\r\n")
    conn.wait_closed()


def test_a_refusal_stays_the_outcome_when_the_reset_finds_a_stale_reply(
    wire: Callable[..., Wire],
) -> None:
    item = wire(_two_replies_to_mail)
    s = item.client()
    with pytest.raises(smtplib.SMTPSenderRefused) as caught:
        s.sendmail("me@example.test", ["you@example.test"], b"x\r\n")
    assert caught.value.smtp_code == 550
    assert s.sock is None  # out of step: closed instead of sending RSET
    (sent,) = stopped(item)
    assert b"RSET" not in sent.upper()
