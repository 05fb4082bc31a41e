"""Every ESMTP extension Postfix 3.7 offers, end to end against a real Postfix.

Each delivered message is read back from the Maildir and compared byte for
byte with what was sent, once the trace headers Postfix adds are removed
(``strip_added_headers``).  Bodies carry leading dots, a lone dot line, bare
LF and bare CR: the client sends them CRLF-canonical (dot-stuffed for DATA,
unstuffed for BDAT) and the stored copy must equal that canonical form.

Besides the shared ``postfix`` fixture, a second instance (``postfix_7bit``)
runs with ``smtputf8_enable = no``, 8BITMIME hidden, a small
``message_size_limit`` and ``smtpd_recipient_limit = 3``, for the paths a
full-featured server never takes.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from servers._proc import wait_until
from servers.maildir import new_messages
from servers.postfix import (
    DEFERRED_RECIPIENT,
    REJECTED_RECIPIENT,
    PostfixServer,
    strip_added_headers,
)

from smtpclient import DSN, Mailer, Recipient, Session, Timeouts, TLSMode
from smtpclient.errors import (
    DataRefused,
    ExtensionNotSupported,
    MessageTooLarge,
    PermanentRecipientsRefused,
    TLSRequiredError,
)
from smtpclient.message import serialise
from smtpclient.protocol.data import canonicalise

pytestmark = pytest.mark.postfix

TIMEOUTS = dataclasses.replace(Timeouts.uniform(20.0), total=None)
SMALL_LIMIT = 100_000  # message_size_limit of the 7-bit instance
TRICKY = b".leading dot\r\n.\r\nbare LF\nbare CR\rend\r\n..two dots\n.\nno final line end"


@pytest.fixture(scope="module")
def postfix_7bit() -> Iterator[PostfixServer]:
    """Postfix without SMTPUTF8 and 8BITMIME, with small limits."""
    server = PostfixServer(
        message_size_limit=SMALL_LIMIT,
        main_cf={
            "smtputf8_enable": "no",
            "smtpd_discard_ehlo_keywords": "8bitmime",
            "smtpd_recipient_limit": "3",
        },
    )
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def connect(server: PostfixServer, **kwargs: object) -> Session:
    kwargs.setdefault("tls", TLSMode.NONE)
    return Session.connect(server.host, server.port, timeouts=TIMEOUTS, **kwargs)  # type: ignore[arg-type]


def token() -> str:
    return uuid.uuid4().hex


def message_bytes(marker: str, body: bytes = TRICKY, sender: str = "s@example.test") -> bytes:
    return f"From: {sender}\r\nTo: r@example.test\r\nSubject: {marker}\r\n\r\n".encode() + body


def plain_message(marker: str, content: str) -> EmailMessage:
    """From s@ to r@example.test, *marker* as the Subject (to find it in the Maildir)."""
    message = EmailMessage()
    message["From"] = "s@example.test"
    message["To"] = "r@example.test"
    message["Subject"] = marker
    message.set_content(content)
    return message


def delivered(server: PostfixServer, marker: str, count: int = 1) -> list[bytes]:
    """The stored messages holding *marker* (waits for *count* of them)."""
    marker_bytes = marker.encode()

    def found() -> list[bytes]:
        out = []
        for path in new_messages(server.inbox_new):
            data = path.read_bytes()
            if marker_bytes in data:
                out.append(data)
        return out

    if not wait_until(lambda: len(found()) >= count, 20.0):
        raise AssertionError(
            f"{count} message(s) with {marker} not delivered; mail log:\n{server.maillog()[-3000:]}"
        )
    return found()


def expected(sent: bytes) -> bytes:
    """What the Maildir must hold: the content CRLF-canonical, last line ended."""
    wire = canonicalise(sent)
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


# --- what Postfix offers ----------------------------------------------------------------------


def test_postfix_offers_the_extensions_we_use(postfix: PostfixServer) -> None:
    with connect(postfix) as session:
        ext = session.extensions
        for keyword in ("PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "DSN", "SIZE"):
            assert keyword in ext
        assert ext.enhanced_status_codes
        assert ext.max_size == postfix.message_size_limit


# --- PIPELINING x CHUNKING: byte for byte -------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
def test_delivered_byte_for_byte(
    postfix: PostfixServer, pipelining: bool, chunking: bool, caplog: pytest.LogCaptureFixture
) -> None:
    marker = token()
    sent = message_bytes(marker, TRICKY + "\r\n8-bit: Grüße\r\n".encode())
    caplog.set_level(logging.DEBUG, logger="smtpclient.transcript")
    with connect(postfix, use_pipelining=pipelining, use_chunking=chunking) as session:
        result = session.sendmail("s@example.test", ["r@example.test"], sent)
    (stored,) = delivered(postfix, marker)
    assert strip_added_headers(stored) == expected(sent)
    # Enhanced status codes on every reply (RFC 2034 / 3463).
    assert result.accepted["r@example.test"].enhanced == "2.1.5"
    assert result.data_reply is not None and result.data_reply.enhanced == "2.0.0"
    assert result.queue_id is not None and result.queue_id in stored.decode("utf-8")
    sent_lines = [r.getMessage() for r in caplog.records]
    assert any(line.endswith("C: DATA") for line in sent_lines) is not chunking


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
def test_large_message_crosses_chunks_and_blocks_intact(
    postfix: PostfixServer, chunking: bool
) -> None:
    marker = token()
    # ~2 MB: many 128 KiB blocks/chunks, with dots and bare line ends at every boundary.
    body = b"".join(TRICKY + f"{i:07d}\r\n".encode() for i in range(30000))
    sent = message_bytes(marker, body)
    with connect(postfix, use_chunking=chunking) as session:
        session.sendmail("s@example.test", ["r@example.test"], sent)
    (stored,) = delivered(postfix, marker)
    assert strip_added_headers(stored) == expected(sent)


def test_send_many_pipelines_across_messages(postfix: PostfixServer) -> None:
    markers = [token() for _ in range(5)]
    items = [
        ("s@example.test", ["r@example.test"], message_bytes(markers[0])),
        ("s@example.test", [REJECTED_RECIPIENT], message_bytes(markers[1])),
        ("s@example.test", ["r@example.test", REJECTED_RECIPIENT], message_bytes(markers[2])),
        ("s@example.test", ["r@example.test"], message_bytes(markers[3], b"\xff8-bit\r\n")),
        ("s@example.test", ["r@example.test"], message_bytes(markers[4])),
    ]
    with connect(postfix) as session:
        outcomes = session.send_many(items)
    assert isinstance(outcomes[1], PermanentRecipientsRefused)
    assert outcomes[1].reply is not None and outcomes[1].reply.enhanced == "5.1.1"
    results = [o for i, o in enumerate(outcomes) if i != 1]
    assert not any(isinstance(o, Exception) for o in results)
    third = outcomes[2]
    assert not isinstance(third, Exception)
    assert list(third.refused) == [REJECTED_RECIPIENT]
    queue_ids = [o.queue_id for o in results if not isinstance(o, Exception)]
    assert len(set(queue_ids)) == 4  # each message its own final reply
    for index in (0, 2, 3, 4):
        (stored,) = delivered(postfix, markers[index])
        assert strip_added_headers(stored) == expected(items[index][2])


def test_max_recipients_splits_transactions(postfix: PostfixServer) -> None:
    marker = token()
    recipients = [f"r{i}@example.test" for i in range(5)]
    with connect(postfix, max_recipients=2) as session:
        result = session.sendmail("s@example.test", recipients, message_bytes(marker))
    assert len(result.data_replies) == 3
    assert len({r.text for r in result.data_replies}) == 3  # three queue ids
    assert len(delivered(postfix, marker, count=5)) == 5


def test_452_too_many_recipients_continues_in_a_new_transaction(
    postfix_7bit: PostfixServer,
) -> None:
    marker = token()
    recipients = [f"r{i}@example.test" for i in range(7)]
    with connect(postfix_7bit) as session:
        result = session.sendmail("s@example.test", recipients, message_bytes(marker))
    assert list(result.accepted) == recipients
    assert len(result.data_replies) == 3  # 3 + 3 + 1 (smtpd_recipient_limit = 3)
    stored = delivered(postfix_7bit, marker, count=7)
    delivered_to = {
        line for m in stored for line in m.split(b"\n") if line.startswith(b"Delivered-To")
    }
    assert delivered_to == {f"Delivered-To: {r}".encode() for r in recipients}


# --- refusals carry enhanced status codes ---------------------------------------------------


def test_refused_recipients_carry_enhanced_codes(postfix: PostfixServer) -> None:
    marker = token()
    recipients = ["r@example.test", REJECTED_RECIPIENT, DEFERRED_RECIPIENT, "x@elsewhere.example"]
    with connect(postfix) as session:
        result = session.sendmail("s@example.test", recipients, message_bytes(marker))
        with pytest.raises(PermanentRecipientsRefused) as info:
            session.sendmail("s@example.test", [REJECTED_RECIPIENT], b"x\r\n")
    assert list(result.accepted) == ["r@example.test"]
    codes = {r: (reply.code, reply.enhanced) for r, reply in result.refused.items()}
    assert codes == {
        REJECTED_RECIPIENT: (550, "5.1.1"),
        DEFERRED_RECIPIENT: (450, "4.2.0"),
        "x@elsewhere.example": (554, "5.7.1"),  # relay access denied
    }
    error = info.value
    assert error.reply is not None and error.reply.enhanced == "5.1.1"
    assert str(error).startswith("550 5.1.1 ")
    assert error.result is not None and error.result.refused[REJECTED_RECIPIENT].code == 550
    delivered(postfix, marker)


# --- SMTPUTF8 and IDNA ------------------------------------------------------------------------


def utf8_message(marker: str, sender: str, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Jörg Müller <{sender}>"
    message["To"] = to
    message["Subject"] = f"Grüße {marker}"
    message.set_content(".Grüße aus Köln\n")
    return message


def test_smtputf8_addresses_and_headers(postfix: PostfixServer) -> None:
    marker = token()
    message = utf8_message(marker, "jörg@bücher.example", "jörg@example.test")
    with connect(postfix) as session:
        result = session.send_message(message)
    assert list(result.accepted) == ["jörg@example.test"]
    (stored,) = delivered(postfix, marker)
    assert stored.startswith("Return-Path: <jörg@bücher.example>\n".encode())
    assert strip_added_headers(stored) == serialise(message, utf8=True)
    assert "From: Jörg Müller <jörg@bücher.example>".encode() in stored


def test_without_smtputf8_domains_become_a_labels(postfix_7bit: PostfixServer) -> None:
    marker = token()
    message = utf8_message(marker, "joerg@bücher.example", "r@example.test")
    message.set_content("plain ASCII body\n")
    with connect(postfix_7bit) as session:
        assert "SMTPUTF8" not in session.extensions
        session.send_message(message)
    (stored,) = delivered(postfix_7bit, marker)
    assert stored.startswith(b"Return-Path: <joerg@xn--bcher-kva.example>\n")
    assert stored.isascii()
    assert b"<joerg@xn--bcher-kva.example>" in strip_added_headers(stored)
    assert strip_added_headers(stored) == serialise(message, utf8=False)


def test_without_smtputf8_a_utf8_local_part_is_refused_before_mail(
    postfix_7bit: PostfixServer,
) -> None:
    message = utf8_message(token(), "jörg@example.test", "r@example.test")
    with connect(postfix_7bit) as session:
        with pytest.raises(ExtensionNotSupported) as info:
            session.send_message(message)
        with pytest.raises(ExtensionNotSupported):
            session.sendmail("jörg@example.test", ["r@example.test"], b"x\r\n")
        assert info.value.extension == "SMTPUTF8"
        assert session.noop().code == 250


# --- 8BITMIME -----------------------------------------------------------------------------------


def test_8bit_without_8bitmime_is_refused_or_reencoded(postfix_7bit: PostfixServer) -> None:
    marker = token()
    message = plain_message(marker, "Grüße\n.dot line\n")
    with connect(postfix_7bit) as session:
        assert not session.extensions.eightbitmime
        with pytest.raises(ExtensionNotSupported, match="8BITMIME"):
            session.sendmail("s@example.test", ["r@example.test"], "Grüße\r\n")
        with pytest.raises(ExtensionNotSupported, match="8BITMIME"):
            session.send_message(message)
        session.send_message(message, reencode_8bit=True)
    (stored,) = delivered(postfix_7bit, marker)
    assert stored.isascii()
    body = strip_added_headers(stored)
    assert body == serialise(message, utf8=False, seven_bit=True)
    parsed = email.message_from_bytes(body, policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == "Grüße\n.dot line\n"  # type: ignore[attr-defined]


# --- SIZE ------------------------------------------------------------------------------------------


def test_over_the_size_limit_is_refused_before_mail(postfix_7bit: PostfixServer) -> None:
    big = message_bytes(token(), b"x" * 900 + b"\r\n") * 120  # > 100 000 octets
    with connect(postfix_7bit) as session:
        assert session.extensions.max_size == SMALL_LIMIT
        with pytest.raises(MessageTooLarge):
            session.sendmail("s@example.test", ["r@example.test"], big)
        # A one-shot iterable is judged by the caller's estimate.
        with pytest.raises(MessageTooLarge):
            session.sendmail("s@example.test", ["r@example.test"], iter([big]), size=len(big))
        assert session.noop().code == 250


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
def test_an_undeclared_stream_over_the_limit_is_refused_by_postfix(
    postfix_7bit: PostfixServer, chunking: bool
) -> None:
    chunk = b"y" * 900 + b"\r\n"
    with connect(postfix_7bit, use_chunking=chunking) as session:
        with pytest.raises(DataRefused) as info:
            session.sendmail(
                "s@example.test", ["r@example.test"], iter([chunk] * 200), eight_bit=False
            )
        assert session.noop().code == 250  # the session survives the refusal
    error = info.value
    assert error.reply is not None and (error.reply.code, error.reply.enhanced) == (552, "5.3.4")
    assert error.result is not None and error.result.accepted == {}


# --- DSN ---------------------------------------------------------------------------------------------


def test_dsn_success_report_reaches_the_sender(postfix: PostfixServer) -> None:
    marker = token()
    envid = f"env+{marker}=1"
    sent = message_bytes(marker, b"the body is not returned with RET=HDRS\r\n")
    with connect(postfix) as session:
        session.sendmail(
            "s@example.test",
            [Recipient("r@example.test", notify=("SUCCESS",), orcpt="list+r@example.test")],
            sent,
            dsn=DSN(ret="HDRS", envid=envid),
        )
    stored = delivered(postfix, marker, count=2)
    (original,) = [m for m in stored if b"multipart/report" not in m]
    (report,) = [m for m in stored if b"multipart/report" in m]
    assert strip_added_headers(original) == expected(sent)
    assert b"report-type=delivery-status" in report
    assert f"Original-Envelope-Id: {envid}".encode() in report
    assert b"Original-Recipient: rfc822;list+r@example.test" in report
    assert b"Final-Recipient: rfc822; r@example.test" in report
    assert b"Action: delivered" in report
    assert b"Status: 2.0.0" in report
    assert b"text/rfc822-headers" in report  # RET=HDRS: headers only
    assert b"the body is not returned" not in report


def test_dsn_notify_never_sends_no_report(postfix: PostfixServer) -> None:
    marker = token()
    with connect(postfix) as session:
        session.sendmail(
            "s@example.test",
            ["r@example.test"],
            message_bytes(marker),
            dsn=DSN(notify=("NEVER",), envid=marker),
        )
    delivered(postfix, marker)
    assert postfix.wait_queue_empty()
    assert not [m for m in delivered(postfix, marker) if b"multipart/report" in m]


# --- REQUIRETLS and TLS-Required --------------------------------------------------------------------


def test_requiretls_is_never_sent_to_postfix(
    postfix: PostfixServer, postfix_tls_sasl: PostfixServer
) -> None:
    # Postfix 3.7 does not offer REQUIRETLS: refused before MAIL, plaintext or not.
    with connect(postfix) as session:
        with pytest.raises(TLSRequiredError):
            session.sendmail("s@example.test", ["r@example.test"], b"x\r\n", requiretls=True)
    assert postfix_tls_sasl.certs is not None
    with connect(
        postfix_tls_sasl,
        tls=TLSMode.STARTTLS,
        ssl_context=postfix_tls_sasl.certs.client_context(),
        server_hostname="localhost",
    ) as session:
        assert session.tls is not None and session.tls.verified
        with pytest.raises(ExtensionNotSupported, match="REQUIRETLS"):
            session.sendmail("s@example.test", ["r@example.test"], b"x\r\n", requiretls=True)
        assert session.noop().code == 250


def test_tls_required_no_header_is_delivered(postfix: PostfixServer) -> None:
    marker = token()
    message = plain_message(marker, "hi\n")
    with connect(postfix) as session:
        session.send_message(message, tls_optional=True)
    (stored,) = delivered(postfix, marker)
    body = strip_added_headers(stored)
    assert b"\r\nTLS-Required: No\r\n" in body.split(b"\r\n\r\n")[0] + b"\r\n"
    assert "TLS-Required" not in message  # the caller's message is unchanged


def test_mailer_passes_the_extension_options_through(postfix: PostfixServer) -> None:
    marker = token()
    message = plain_message(marker, "Grüße\n")
    with Mailer(postfix.host, postfix.port, tls=TLSMode.NONE, timeouts=TIMEOUTS) as mailer:
        with pytest.raises(TLSRequiredError):
            mailer.send(message, requiretls=True)
        mailer.send(message, tls_optional=True, reencode_8bit=True)
    (stored,) = delivered(postfix, marker)
    body = strip_added_headers(stored)
    assert b"\r\nTLS-Required: No\r\n" in body
    assert body == serialise(message, utf8=False, extra_headers=[("TLS-Required", "No")])
