"""The header checks of ``headercheck``: tables of bytes in, refusal or not out,
and the email package's own output for the attacks they exist for."""

from __future__ import annotations

import sys
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.policy import compat32
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpclient.errors import HeaderInjectionError
from smtpclient.headercheck import (
    RAW_HEAD_LIMIT,
    check_message_header,
    check_raw_header,
    header_block,
)
from smtpclient.message import serialise

NAMES = ["From", "To", "Subject"]

MESSAGE_CASES: dict[str, tuple[bytes, bool]] = {
    "exact fields": (b"From: a\r\nTo: b\r\nSubject: s\r\n\r\nbody\n\x00", True),
    "folded value": (b"From: a\r\nTo: b,\r\n c\r\nSubject: s\r\n\r\n", True),
    "names differ in case only": (b"from: a\r\nTO: b\r\nsubject: s\r\n\r\n", True),
    "no body": (b"From: a\r\nTo: b\r\nSubject: s\r\n", True),
    "unterminated last field": (b"From: a\r\nTo: b\r\nSubject: s", True),
    "unterminated extra field": (b"From: a\r\nTo: b\r\nSubject: s\r\nBcc: v", False),
    "empty header": (b"\r\nFrom: a\r\n", False),
    "an extra field": (b"From: a\r\nTo: b\r\nSubject: s\r\nBcc: v\r\n\r\n", False),
    "field with WSP before the colon": (
        b"From: a\r\nTo: b\r\nSubject: s\r\nBcc : v\r\n\r\n",
        False,
    ),
    "a field missing": (b"From: a\r\nTo: b\r\n\r\nSubject: s\r\n", False),
    "fields out of order": (b"To: b\r\nFrom: a\r\nSubject: s\r\n\r\n", False),
    "bare LF in a value": (b"From: a\r\nTo: b\nBcc: v\r\nSubject: s\r\n\r\n", False),
    "bare CR in a value": (b"From: a\r\nTo: b\rBcc: v\r\nSubject: s\r\n\r\n", False),
    "NUL in a value": (b"From: a\r\nTo: b\x00\r\nSubject: s\r\n\r\n", False),
    "a line that is no field": (b"From: a\r\nTo: b\r\nSubject: s\r\nplain text\r\n\r\n", False),
    "continuation before any field": (b" From: a\r\nTo: b\r\nSubject: s\r\n\r\n", False),
}


@pytest.mark.parametrize("case", list(MESSAGE_CASES), ids=list(MESSAGE_CASES))
def test_the_message_header_holds_exactly_the_message_fields(case: str) -> None:
    data, passes = MESSAGE_CASES[case]
    if passes:
        check_message_header(data, NAMES)
    else:
        with pytest.raises(HeaderInjectionError):
            check_message_header(data, NAMES)


RAW_CASES: dict[str, tuple[bytes, bool]] = {
    "CRLF throughout": (b"Subject: s\r\nTo: b\r\n\r\nbody\r\n", True),
    "LF throughout (a file)": (b"Subject: s\nTo: b\n\nbody\n", True),
    "LF header, mixed body": (b"Subject: s\n\nline\r\nbare\rcr\n", True),
    "CRLF header, bare LF in the body": (b"Subject: s\r\n\r\nline\nline\r\n", True),
    "no header block": (b"just text\nand\r\nmore\r", True),
    "folded CRLF header": (b"Subject: s\r\n t\r\n\r\n", True),
    "unterminated last header": (b"Subject: s", True),
    "NUL is not this check's": (b"Subject: s\r\n\r\n\x00", True),
    "bare LF in a CRLF header": (b"Subject: s\nBcc: v\r\nTo: b\r\n\r\n", False),
    "bare LF after the first field": (b"From: a\r\nSubject: s\nBcc: v\r\n\r\n", False),
    "CRLF in an LF header": (b"Subject: s\nBcc: v\r\nTo: b\n\n", False),
    "bare CR in a header": (b"Subject: s\rBcc: v\r\n\r\n", False),
    "bare CR in an LF header": (b"From: a\nSubject: s\rBcc: v\n\n", False),
    "bare LF before a continuation": (b"Subject: s\r\nTo: a,\n b\r\n\r\n", False),
    "CR CR LF": (b"Subject: s\r\r\nTo: b\r\n\r\n", False),
}


@pytest.mark.parametrize("case", list(RAW_CASES), ids=list(RAW_CASES))
def test_raw_content_keeps_one_kind_of_line_end_in_its_header(case: str) -> None:
    data, passes = RAW_CASES[case]
    if passes:
        check_raw_header(data)
    else:
        with pytest.raises(HeaderInjectionError):
            check_raw_header(data)


def test_a_cr_at_the_end_of_a_partial_head_is_not_judged() -> None:
    check_raw_header(b"From: a\r\nSubject: s\r", complete=False)
    with pytest.raises(HeaderInjectionError):
        check_raw_header(b"From: a\r\nSubject: s\r")


def test_only_the_head_of_large_content_is_examined() -> None:
    # Bounded work: a bad line end past RAW_HEAD_LIMIT is not looked at, one
    # inside it is, whatever the content's size.
    fields = b"X-Filler: " + b"y" * 900 + b"\r\n"
    many = fields * (RAW_HEAD_LIMIT // len(fields) + 1)
    check_raw_header(many + b"Subject: late\nBcc: v\r\n\r\n")
    with pytest.raises(HeaderInjectionError):
        check_raw_header(b"Subject: early\nBcc: v\r\n" + b"x" * 10 * RAW_HEAD_LIMIT)


def test_header_block_ends_at_the_first_empty_line() -> None:
    assert header_block(b"A: 1\r\n\r\nB: 2\r\n") == b"A: 1\r\n"
    assert header_block(b"\r\nA: 1\r\n") == b""
    assert header_block(b"A: 1\r\n") == b"A: 1\r\n"


CVE_SUBJECT = "=?utf-8?q?Invoice=0D=0ABcc=3A_victim@bank.test?="


def _cve_message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"] = "shop@shop.test", "client@client.test"
    message["Subject"] = CVE_SUBJECT
    message.set_content("Your invoice")
    return message


def _generated(message: EmailMessage) -> bytes:
    out = BytesIO()
    BytesGenerator(out).flatten(message, linesep="\r\n")
    return out.getvalue()


# True on interpreters without the fix (3.11.7, this project's default python3).
VULNERABLE = b"\r\nBcc: victim@bank.test\r\n" in header_block(_generated(_cve_message()))


def test_this_interpreter_is_known_to_be_vulnerable_or_not() -> None:
    # The attack the check exists for, reproduced where it exists: no control
    # character in the value, yet the generator writes a real Bcc line.
    patched = sys.version_info >= (3, 12, 5) or (3, 11, 10) <= sys.version_info < (3, 12)
    assert VULNERABLE is not patched


def test_cve_2024_6923_never_adds_a_header_line() -> None:
    if VULNERABLE:
        with pytest.raises(HeaderInjectionError, match="unexpected Bcc"):
            serialise(_cve_message(), utf8=False)
    else:  # a patched interpreter encodes the CRLF instead
        data = serialise(_cve_message(), utf8=False)
        assert b"\nBcc:" not in header_block(data)


def test_a_compat32_value_with_crlf_is_refused() -> None:
    message = MIMEText("Please pay")
    message["From"], message["To"] = "shop@shop.test", "client@client.test"
    message["Subject"] = "Invoice 42\r\nReply-To : payments@attacker.test"
    with pytest.raises(HeaderInjectionError, match="Reply-To"):
        serialise(message, utf8=False)


def test_a_compat32_value_with_a_lone_line_is_refused() -> None:
    message = MIMEText("x")
    message["Subject"] = "a\nb"
    with pytest.raises(HeaderInjectionError, match="neither a header field"):
        serialise(message, utf8=False)


def test_headers_the_library_adds_pass() -> None:
    message = _cve_message()
    message.replace_header("Subject", "fine")
    data = serialise(message, utf8=False, extra_headers=[("TLS-Required", "No")])
    assert b"\r\nTLS-Required: No\r\n" in header_block(data)


@given(st.text(max_size=60), st.sampled_from(["compat32", "default"]))
@settings(max_examples=300)
def test_whatever_the_subject_no_other_header_line_goes_out(subject: str, kind: str) -> None:
    message: Message = Message() if kind == "compat32" else EmailMessage()
    message["From"], message["To"] = "a@example.test", "b@example.test"
    try:
        message["Subject"] = subject
    except ValueError:
        return  # the email package itself refused the value
    message.set_payload("x")
    try:
        data = serialise(message, utf8=False)
    except HeaderInjectionError:
        return
    parsed = BytesParser(policy=compat32).parsebytes(data, headersonly=True)
    assert [name.lower() for name in parsed] == ["from", "to", "subject"]
    block = header_block(data)
    assert b"\x00" not in block
    assert block.replace(b"\r\n", b"").count(b"\r") == block.replace(b"\r\n", b"").count(b"\n") == 0
