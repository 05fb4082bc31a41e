"""Session against a real aiosmtpd server on 127.0.0.1: what arrives is what was sent."""

from __future__ import annotations

import io
import logging
from email.message import EmailMessage

import pytest
from servers.smtpd import AiosmtpdServer

from smtpclient import Session, TLSMode
from smtpclient.errors import (
    ExtensionNotSupported,
    InvalidAddressError,
    MessageContentError,
    MessageTooLarge,
    NotSentError,
    PermanentDataRefused,
    PermanentRecipientsRefused,
    SessionClosedError,
    TransientRecipientsRefused,
)
from smtpclient.protocol.state import SessionState


def connect(server: AiosmtpdServer, **kwargs: object) -> Session:
    return Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE, **kwargs)  # type: ignore[arg-type]


BODY = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n\r\n"
    b".leading dot\r\nbare LF\nbare CR\rlast line without end"
)
EXPECTED = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n\r\n"
    b".leading dot\r\nbare LF\r\nbare CR\r\nlast line without end\r\n"
)


def test_message_arrives_byte_for_byte(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        result = session.sendmail("a@example.com", ["b@example.com", "c@example.com"], BODY)
    (received,) = smtpd.messages
    assert received.content == EXPECTED
    assert received.mail_from == "a@example.com"
    assert received.rcpt_tos == ["b@example.com", "c@example.com"]
    assert set(result.accepted) == {"b@example.com", "c@example.com"}
    assert result.refused == {}
    assert result.data_reply is not None and result.data_reply.code == 250
    assert result.queue_id == "TEST123"
    assert result.all_accepted and result.unknown == ()
    assert f"SIZE={len(EXPECTED)}" in received.mail_options


@pytest.mark.parametrize(
    "make_body",
    [
        lambda: BODY,
        lambda: BODY.decode("ascii"),
        lambda: bytearray(BODY),
        lambda: io.BytesIO(BODY),
        lambda: iter([BODY[:7], BODY[7:20], BODY[20:]]),
        lambda: [BODY[i : i + 1] for i in range(len(BODY))],
    ],
    ids=["bytes", "str", "bytearray", "file", "iterator", "byte-pieces"],
)
def test_every_body_source_sends_the_same_bytes(smtpd: AiosmtpdServer, make_body: object) -> None:
    with connect(smtpd) as session:
        session.sendmail("a@example.com", "b@example.com", make_body())  # type: ignore[operator]
    assert smtpd.messages[0].content == EXPECTED


def test_file_body_can_be_sent_twice(smtpd: AiosmtpdServer) -> None:
    body = io.BytesIO(b"xx" + BODY)
    body.seek(2)  # sending starts where the file stands
    with connect(smtpd) as session:
        session.sendmail("a@example.com", "b@example.com", body)
        session.sendmail("a@example.com", "b@example.com", body)
    assert [m.content for m in smtpd.messages] == [EXPECTED, EXPECTED]


def test_refused_recipients_are_a_result_not_an_exception(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse = {"bad@example.com": "550 5.1.1 <bad@example.com>: no such user"}
    with connect(smtpd) as session:
        result = session.sendmail("a@example.com", ["good@example.com", "bad@example.com"], b"x")
    assert list(result.accepted) == ["good@example.com"]
    refusal = result.refused["bad@example.com"]
    assert (refusal.code, refusal.enhanced) == (550, "5.1.1")
    assert not result.all_accepted
    assert smtpd.messages[0].rcpt_tos == ["good@example.com"]


def test_all_refused_raises_with_every_reply_and_the_session_stays_usable(
    smtpd: AiosmtpdServer,
) -> None:
    smtpd.recorder.refuse = {
        "x@example.com": "550 5.1.1 unknown",
        "y@example.com": "551 5.1.6 moved",
    }
    with connect(smtpd) as session:
        with pytest.raises(PermanentRecipientsRefused) as info:
            session.sendmail("a@example.com", ["x@example.com", "y@example.com"], b"body")
        assert {a: r.code for a, r in info.value.recipients.items()} == {
            "x@example.com": 550,
            "y@example.com": 551,
        }
        assert info.value.result is not None and info.value.result.accepted == {}
        assert session.state is SessionState.READY
        session.sendmail("a@example.com", "ok@example.com", b"second")
    assert len(smtpd.messages) == 1


def test_one_transient_refusal_makes_the_whole_refusal_transient(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse = {
        "x@example.com": "550 5.1.1 unknown",
        "y@example.com": "450 4.2.0 busy",
    }
    with connect(smtpd) as session, pytest.raises(TransientRecipientsRefused):
        session.sendmail("a@example.com", ["x@example.com", "y@example.com"], b"body")


def test_refused_data_moves_accepted_recipients_to_refused(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.data_reply = "554 5.6.0 content rejected"
    with connect(smtpd) as session:
        with pytest.raises(PermanentDataRefused) as info:
            session.sendmail("a@example.com", ["b@example.com"], b"body")
        result = info.value.result
        assert result is not None
        assert result.accepted == {} and result.refused["b@example.com"].code == 554
        assert info.value.reply is not None and info.value.reply.enhanced == "5.6.0"
        assert session.usable


def test_more_than_100_recipients_are_split_into_transactions(smtpd: AiosmtpdServer) -> None:
    recipients = [f"r{i}@example.com" for i in range(230)]
    with connect(smtpd) as session:
        result = session.sendmail("a@example.com", recipients, b"body")
    assert [len(m.rcpt_tos) for m in smtpd.messages] == [100, 100, 30]
    assert list(result.accepted) == recipients
    assert len(result.data_replies) == 3
    assert set(result.recipient_data_replies) == set(recipients)


def test_send_message_takes_the_envelope_from_headers_and_drops_bcc(smtpd: AiosmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "Bob <bob@example.com>, carol@example.com"
    msg["Cc"] = "dave@example.com"
    msg["Bcc"] = "secret@example.com"
    msg["Subject"] = "hello"
    msg.set_content("Hi.\n.dot line\n")
    with connect(smtpd) as session:
        result = session.send_message(msg)
    (received,) = smtpd.messages
    assert received.mail_from == "alice@example.com"
    assert sorted(received.rcpt_tos) == sorted(
        ["bob@example.com", "carol@example.com", "dave@example.com", "secret@example.com"]
    )
    assert b"secret@example.com" not in received.content
    assert b"Bcc" not in received.content
    assert b"\r\n.dot line\r\n" in received.content
    assert len(result.accepted) == 4


def test_send_message_prefers_resent_headers(smtpd: AiosmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "orig@example.com"
    msg["To"] = "first@example.com"
    msg["Resent-Date"] = "Mon, 30 Nov 2026 10:00:00 +0000"
    msg["Resent-From"] = "forwarder@example.com"
    msg["Resent-To"] = "next@example.com"
    msg["Resent-Bcc"] = "hidden@example.com"
    msg.set_content("x")
    with connect(smtpd) as session:
        session.send_message(msg)
    (received,) = smtpd.messages
    assert received.mail_from == "forwarder@example.com"
    assert sorted(received.rcpt_tos) == ["hidden@example.com", "next@example.com"]
    assert b"hidden@example.com" not in received.content


def test_utf8_address_uses_smtputf8(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        session.sendmail(
            "j\u00f6rg@example.com",
            "b\u00fccher@b\u00fccher.example",
            "Subject: \u00e9\r\n\r\n\u00e9\r\n",
        )
    (received,) = smtpd.messages
    assert "SMTPUTF8" in received.mail_options and "BODY=8BITMIME" in received.mail_options
    assert received.mail_from == "j\u00f6rg@example.com"
    assert received.rcpt_tos == ["b\u00fccher@b\u00fccher.example"]
    assert received.content == "Subject: \u00e9\r\n\r\n\u00e9\r\n".encode()


def test_without_smtputf8_domains_become_a_labels_and_utf8_local_parts_are_refused() -> None:
    with AiosmtpdServer(smtputf8=False) as server, connect(server) as session:
        session.sendmail("a@example.com", "user@b\u00fccher.example", b"x")
        with pytest.raises(ExtensionNotSupported) as info:
            session.sendmail("a@example.com", "j\u00f6rg@example.com", b"x")
        assert info.value.extension == "SMTPUTF8"
        assert server.messages[0].rcpt_tos == ["user@xn--bcher-kva.example"]
        assert len(server.messages) == 1


def test_eight_bit_body_is_declared(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        session.sendmail("a@example.com", "b@example.com", "caf\u00e9\r\n".encode())
        session.sendmail("a@example.com", "b@example.com", b"plain\r\n")
    assert "BODY=8BITMIME" in smtpd.messages[0].mail_options
    assert not any(o.startswith("BODY") for o in smtpd.messages[1].mail_options)


def test_message_over_the_advertised_size_is_refused_before_mail() -> None:
    with AiosmtpdServer(data_size_limit=1000) as server, connect(server) as session:
        with pytest.raises(MessageTooLarge):
            session.sendmail("a@example.com", "b@example.com", b"x" * 900 + b"\r\n" + b"y" * 200)
        assert session.usable
    assert server.messages == []


def test_long_lines_are_refused_before_anything_is_sent(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        with pytest.raises(MessageContentError):
            session.sendmail("a@example.com", "b@example.com", b"x" * 1200)
        session.noop()


def test_long_lines_in_a_one_shot_iterable_abort_without_delivering(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        with pytest.raises(MessageContentError):
            session.sendmail("a@example.com", "b@example.com", iter([b"ok\r\n", b"x" * 1200]))
        assert not session.usable
    assert smtpd.messages == []


def test_send_message_reencodes_long_lines(smtpd: AiosmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    long_text = "word " * 400
    msg.set_content(long_text, cte="7bit")
    with connect(smtpd) as session:
        session.send_message(msg)
    content = smtpd.messages[0].content
    assert max(len(line) for line in content.split(b"\r\n")) <= 998
    assert b"quoted-printable" in content


def test_send_many_gives_one_outcome_per_message_in_order(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse = {"bad@example.com": "550 5.1.1 no"}
    items = [
        ("a@example.com", ["m1@example.com"], b"one"),
        ("a@example.com", ["bad@example.com"], b"two"),
        ("bad address", ["m3@example.com"], b"three"),
        ("a@example.com", ["m4@example.com"], b"four"),
    ]
    with connect(smtpd) as session:
        outcomes = session.send_many(items)
    assert [type(o).__name__ for o in outcomes] == [
        "SendResult",
        "PermanentRecipientsRefused",
        "InvalidAddressError",
        "SendResult",
    ]
    assert [m.content for m in smtpd.messages] == [b"one\r\n", b"four\r\n"]


def test_bad_input_sends_nothing(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        with pytest.raises(InvalidAddressError):
            session.sendmail("a@example.com", ["ok@example.com", "x\r\nRSET@example.com"], b"x")
        with pytest.raises(ValueError, match="no recipients"):
            session.sendmail("a@example.com", [], b"x")
        with pytest.raises(TypeError):
            session.sendmail("a@example.com", "b@example.com", 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            session.sendmail(b"a@example.com", "b@example.com", b"x")  # type: ignore[arg-type]
        session.sendmail("a@example.com", "b@example.com", b"fine")
    assert [m.content for m in smtpd.messages] == [b"fine\r\n"]


def test_closed_session_refuses_use_and_close_is_idempotent(smtpd: AiosmtpdServer) -> None:
    session = connect(smtpd)
    reply = session.quit()
    assert reply is not None and reply.code == 221
    session.quit()
    session.close()
    session.close()
    with pytest.raises(SessionClosedError):
        session.sendmail("a@example.com", "b@example.com", b"x")
    with pytest.raises(SessionClosedError):
        session.noop()


def test_simple_commands(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        assert session.noop().code == 250
        assert session.rset().code == 250
        assert session.vrfy("someone@example.com").code in (250, 252, 502)
        assert session.help().code in (214, 250)
        assert session.execute("NOOP").code == 250
        assert session.ehlo().code == 250
        assert session.extensions.smtputf8


def test_transcript_goes_to_logging_at_debug(
    smtpd: AiosmtpdServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="smtpclient"):
        with connect(smtpd) as session:
            session.sendmail("a@example.com", "b@example.com", b"secret body")
    lines = [r.getMessage() for r in caplog.records if r.name == "smtpclient.transcript"]
    assert any("C: MAIL FROM:<a@example.com>" in line for line in lines)
    assert any("S: 250" in line for line in lines)
    assert not any("secret body" in line for line in lines)


def test_ehlo_name_is_an_address_literal_or_fqdn(
    smtpd: AiosmtpdServer, caplog: pytest.LogCaptureFixture
) -> None:
    with connect(smtpd) as session:
        name = session.local_hostname
    assert name.startswith("[") or "." in name
    with connect(smtpd, local_hostname="client.example.test") as session:
        assert session.local_hostname == "client.example.test"


def _failing_body() -> object:
    yield b"Subject: half\r\n\r\nfirst part\r\n"
    yield "not bytes"  # the caller's mistake, discovered mid-stream


def test_content_that_fails_mid_stream_is_never_finished(smtpd: AiosmtpdServer) -> None:
    with connect(smtpd) as session:
        with pytest.raises(TypeError):
            session.sendmail("a@example.com", "b@example.com", _failing_body())
        # Hanging up (not sending the end marker) is what keeps the half
        # message from being delivered.
        assert not session.usable
    assert smtpd.messages == []


def test_send_many_reports_a_failing_body_and_does_not_lose_the_others(smtpd: AiosmtpdServer) -> None:
    items = [
        ("a@example.com", ["m1@example.com"], b"one"),
        ("a@example.com", ["m2@example.com"], _failing_body()),
        ("a@example.com", ["m3@example.com"], b"three"),
    ]
    with connect(smtpd) as session:
        outcomes = session.send_many(items)
    assert type(outcomes[0]).__name__ == "SendResult"
    assert isinstance(outcomes[1], TypeError)
    assert isinstance(outcomes[2], NotSentError) and not outcomes[2].outcome_unknown
    assert [m.content for m in smtpd.messages] == [b"one\r\n"]
