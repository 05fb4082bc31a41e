"""From an email message to envelope and bytes: policy per offer, A-labels,
re-encoding, the TLS-Required header; the caller's message is never changed."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from smtpclient.errors import ExtensionNotSupported
from smtpclient.message import prepare_message, serialise
from smtpclient.protocol.data import BodyScanner
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply

FULL = Extensions.parse(Reply(250, ("mx.test", "8BITMIME", "SMTPUTF8", "SIZE")))
EIGHT_BIT_ONLY = Extensions.parse(Reply(250, ("mx.test", "8BITMIME")))
SEVEN_BIT = Extensions.parse(Reply(250, ("mx.test", "SIZE")))


def make(
    sender: str = "a@example.com",
    to: str = "b@example.com",
    subject: str = "hello",
    body: str = "hi\n",
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def scan(data: bytes) -> BodyScanner:
    scanner = BodyScanner()
    scanner.feed(data)
    return scanner


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


# --- which policy, which envelope ---------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "extensions", "smtputf8", "in_headers"),
    [
        # ASCII everywhere: no SMTPUTF8 even where offered.
        (make(), FULL, False, b"Subject: hello"),
        # A UTF-8 subject with SMTPUTF8 offered: raw UTF-8 (RFC 6531 §3.4)...
        (make(subject="Grüße"), FULL, True, "Subject: Grüße".encode()),
        # ...and without it an RFC 2047 encoded word.
        (make(subject="Grüße"), EIGHT_BIT_ONLY, False, b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?="),
        # A UTF-8 local part needs SMTPUTF8.
        (make(to="jörg@example.com"), FULL, True, "To: jörg@example.com".encode()),
        # A UTF-8 domain with SMTPUTF8: kept as a U-label in the header.
        (make(to="b@bücher.example"), FULL, True, "To: b@bücher.example".encode()),
        # Without SMTPUTF8 the header gets the A-label (not an encoded word).
        (make(to="b@bücher.example"), SEVEN_BIT, False, b"To: b@xn--bcher-kva.example"),
        (
            make(to="Jörg Müller <b@bücher.example>"),
            SEVEN_BIT,
            False,
            b"To: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <b@xn--bcher-kva.example>",
        ),
        (
            make(to="team: b@bücher.example, c@example.com;"),
            SEVEN_BIT,
            False,
            b"To: team: b@xn--bcher-kva.example, c@example.com;",
        ),
    ],
)
def test_policy_follows_the_offer(
    message: EmailMessage, extensions: Extensions, smtputf8: bool, in_headers: bytes
) -> None:
    envelope, body = prepare_message(message, extensions)
    assert envelope.smtputf8 is smtputf8
    data = b"".join(body.blocks())
    assert in_headers in header_block(data)
    if not smtputf8:
        assert header_block(data).isascii()


def test_envelope_domain_becomes_an_a_label_without_smtputf8() -> None:
    envelope, _ = prepare_message(make(sender="a@bücher.example"), SEVEN_BIT)
    assert envelope.sender == "a@bücher.example"  # encoded on the wire, by commands.mail
    assert not envelope.smtputf8


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (make(to="jörg@example.com"), "non-ASCII addresses"),
        (make(Reply_To="jörg@example.com"), "non-ASCII local part"),
    ],
)
def test_utf8_local_parts_without_smtputf8_are_refused(message: EmailMessage, match: str) -> None:
    with pytest.raises(ExtensionNotSupported, match=match) as caught:
        prepare_message(message, EIGHT_BIT_ONLY)
    assert caught.value.extension == "SMTPUTF8"


def test_compat32_message_with_a_utf8_domain_gets_an_a_label() -> None:
    message = Message()
    message["From"] = "a@example.com"
    message["To"] = "b@bücher.example"
    message.set_payload("hi\n")
    _, body = prepare_message(message, SEVEN_BIT)
    assert b"To: b@xn--bcher-kva.example\r\n" in b"".join(body.blocks())


# --- what is dropped, added and re-encoded ----------------------------------------------------


def test_bcc_is_never_sent_and_the_callers_message_is_untouched() -> None:
    message = make(Bcc="hidden@example.com", TLS_Required="Yes")
    before = message.as_bytes()
    envelope, body = prepare_message(message, FULL, tls_optional=True)
    data = b"".join(body.blocks())
    assert b"hidden" not in data
    assert "hidden@example.com" in [r.address for r in envelope.recipients]
    assert header_block(data).count(b"TLS-Required") == 1
    assert b"TLS-Required: No\r\n" in data
    assert message.as_bytes() == before


def test_tls_optional_and_requiretls_contradict_each_other() -> None:
    with pytest.raises(ValueError, match="opposite"):
        prepare_message(make(), FULL, requiretls=True, tls_optional=True)


def test_long_lines_are_reencoded_as_quoted_printable_without_stray_cr() -> None:
    text = ("word " * 300 + "\n") * 2
    _, body = prepare_message(make(body=text), FULL)
    data = b"".join(body.blocks())
    assert not scan(data).long_lines
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    assert b"=0D" not in data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extensions", "reencode", "eight_bit", "cte"),
    [
        (EIGHT_BIT_ONLY, False, True, b"8bit"),  # 8BITMIME offered: sent as 8bit
        (EIGHT_BIT_ONLY, True, True, b"8bit"),  # ... re-encoding is only for its absence
        (SEVEN_BIT, False, True, b"8bit"),  # not asked: build_plan refuses it later
        (SEVEN_BIT, True, False, b"quoted-printable"),  # asked: 7-bit on the wire
    ],
)
def test_8bit_reencoding_is_opt_in(
    extensions: Extensions, reencode: bool, eight_bit: bool, cte: bytes
) -> None:
    text = "Grüße aus Köln\n"
    _, body = prepare_message(make(body=text), extensions, reencode_8bit=reencode)
    data = b"".join(body.blocks())
    assert scan(data).eight_bit is eight_bit
    assert b"Content-Transfer-Encoding: " + cte in data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == text  # type: ignore[attr-defined]


def test_8bit_reencoding_of_a_multipart_message() -> None:
    message = make(body="Grüße\n")
    message.add_attachment(b"\x00\xffbinary", maintype="application", subtype="octet-stream")
    message.add_attachment("Köln\n", subtype="plain", cte="8bit")
    _, body = prepare_message(message, SEVEN_BIT, reencode_8bit=True)
    data = b"".join(body.blocks())
    assert data.isascii()
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    parts = [part.get_content() for part in parsed.iter_parts()]  # type: ignore[attr-defined]
    parts = [p.replace("\r\n", "\n") if isinstance(p, str) else p for p in parts]
    assert parts == ["Grüße\n", b"\x00\xffbinary", "Köln\n"]


def test_8bit_parsed_message_is_reencoded_too() -> None:
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"caf\xc3\xa9\r\n"
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    _, body = prepare_message(message, SEVEN_BIT, reencode_8bit=True)
    data = b"".join(body.blocks())
    assert data.isascii()
    assert b"caf=C3=A9" in data


def test_serialise_uses_crlf_and_keeps_dots() -> None:
    data = serialise(make(body=".leading dot\n..two\n"), utf8=False)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.endswith(b"\r\n.leading dot\r\n..two\r\n")  # dot-stuffing is the wire's job
