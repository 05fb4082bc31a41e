"""Pre-flight: what MAIL FROM and RCPT TO carry for each offer, and what is
refused before a byte is written (a table per extension)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpclient.body import Body
from smtpclient.envelope import DSN, Envelope, Recipient
from smtpclient.errors import (
    ExtensionNotSupported,
    InvalidAddressError,
    InvalidArgumentError,
    MessageContentError,
    MessageTooLarge,
    TLSRequiredError,
)
from smtpclient.plan import Plan, build_plan, orcpt
from smtpclient.protocol.data import Framing
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.tls import TLSInfo

POSTFIX = ("PIPELINING", "SIZE 1000", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")
VERIFIED = TLSInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", verified=True)
UNVERIFIED = TLSInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", verified=False)


def offer(*keywords: str) -> Extensions:
    return Extensions.parse(Reply(250, ("mx.test", *keywords)))


def plan(
    data: object = b"hello\r\n",
    keywords: tuple[str, ...] = POSTFIX,
    *,
    sender: str = "a@example.com",
    recipients: object = ("b@example.com",),
    tls: TLSInfo | None = None,
    size: int | None = None,
    eight_bit: bool | None = None,
    **options: object,
) -> Plan:
    use_chunking = bool(options.pop("use_chunking", True))
    binary = bool(options.pop("binary", False))
    envelope = Envelope.build(sender, recipients, **options)  # type: ignore[arg-type]
    body = Body(data, size=size, eight_bit=eight_bit)  # type: ignore[arg-type]
    return build_plan(
        envelope, body, offer(*keywords), tls, use_chunking=use_chunking, binary=binary
    )


def one_shot() -> Iterator[bytes]:
    yield b"hello\r\n"


# --- MAIL FROM parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "keywords", "kwargs", "mail"),
    [
        # SIZE is declared from the scan, only when offered (RFC 1870).
        (b"hello\r\n", POSTFIX, {}, b"MAIL FROM:<a@example.com> SIZE=7\r\n"),
        (b"hello\r\n", ("8BITMIME",), {}, b"MAIL FROM:<a@example.com>\r\n"),
        (b"hi", ("SIZE",), {}, b"MAIL FROM:<a@example.com> SIZE=4\r\n"),  # + CRLF
        # 8-bit content declares BODY=8BITMIME (RFC 6152).
        (b"\xe9\r\n", POSTFIX, {}, b"MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=3\r\n"),
        # A one-shot iterable: the caller's declarations, or 8BITMIME to be safe.
        (one_shot, POSTFIX, {}, b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\n"),
        (one_shot, POSTFIX, {"size": 99, "eight_bit": False}, b"MAIL FROM:<a@example.com> SIZE=99\r\n"),
        # A UTF-8 local part asks for SMTPUTF8 (RFC 6531 §3.4) ...
        (
            b"x\r\n",
            POSTFIX,
            {"sender": "jörg@bücher.example"},
            "MAIL FROM:<jörg@bücher.example> SIZE=3 SMTPUTF8\r\n".encode(),
        ),
        # ... a UTF-8 domain alone goes out as an A-label, even when SMTPUTF8 is offered.
        (
            b"x\r\n",
            POSTFIX,
            {"sender": "a@bücher.example"},
            b"MAIL FROM:<a@xn--bcher-kva.example> SIZE=3\r\n",
        ),
        (b"x\r\n", POSTFIX, {"smtputf8": True}, b"MAIL FROM:<a@example.com> SIZE=3 SMTPUTF8\r\n"),
        # DSN: RET and ENVID (xtext) when offered (RFC 3461).
        (
            b"x\r\n",
            POSTFIX,
            {"dsn": DSN(ret="hdrs", envid="id+1=2 x")},
            b"MAIL FROM:<a@example.com> SIZE=3 RET=HDRS ENVID=id+2B1+3D2+20x\r\n",
        ),
        # Options the caller passes smtplib-style override ours.
        (
            b"x\r\n",
            POSTFIX,
            {"mail_options": ["SIZE=5000", "X-TRACE=1"]},
            b"MAIL FROM:<a@example.com> SIZE=5000 X-TRACE=1\r\n",
        ),
        (b"x\r\n", POSTFIX, {"sender": ""}, b"MAIL FROM:<> SIZE=3\r\n"),  # a bounce
    ],
)
def test_mail_from_parameters(
    data: object, keywords: tuple[str, ...], kwargs: dict[str, object], mail: bytes
) -> None:
    source = data() if callable(data) else data
    assert plan(source, keywords, **kwargs).mail_line == mail


def test_binary_sends_binarymime_with_bdat() -> None:
    p = plan(b"\x00\xff\r.\n", (*POSTFIX, "BINARYMIME"), binary=True)
    # The octets as given: BINARYMIME converts no line ends.
    assert p.mail_line == b"MAIL FROM:<a@example.com> BODY=BINARYMIME SIZE=5\r\n"
    assert p.framing is Framing.BINARY


def test_requiretls_over_verified_tls() -> None:
    p = plan(keywords=(*POSTFIX, "REQUIRETLS"), requiretls=True, tls=VERIFIED)
    assert p.mail_line == b"MAIL FROM:<a@example.com> SIZE=7 REQUIRETLS\r\n"


# --- RCPT TO parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "kwargs", "rcpt"),
    [
        ("b@example.com", {}, b"RCPT TO:<b@example.com>\r\n"),
        (
            Recipient("b@example.com", notify=("success", "failure")),
            {},
            b"RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE\r\n",
        ),
        ("b@example.com", {"dsn": DSN(notify="never")}, b"RCPT TO:<b@example.com> NOTIFY=NEVER\r\n"),
        # The recipient's own NOTIFY wins over the message's default.
        (
            Recipient("b@example.com", notify=("DELAY",)),
            {"dsn": DSN(notify=("NEVER",))},
            b"RCPT TO:<b@example.com> NOTIFY=DELAY\r\n",
        ),
        (
            "b+tag@example.com",
            {"dsn": DSN(orcpt=True)},
            b"RCPT TO:<b+tag@example.com> ORCPT=rfc822;b+2Btag@example.com\r\n",
        ),
        (
            Recipient("b@example.com", orcpt="list=x@example.org"),
            {},
            b"RCPT TO:<b@example.com> ORCPT=rfc822;list+3Dx@example.org\r\n",
        ),
        ("b@bücher.example", {}, b"RCPT TO:<b@xn--bcher-kva.example>\r\n"),
        ("b@example.com", {"rcpt_options": ["X-PRIO=1"]}, b"RCPT TO:<b@example.com> X-PRIO=1\r\n"),
    ],
)
def test_rcpt_to_parameters(recipient: object, kwargs: dict[str, object], rcpt: bytes) -> None:
    (line,) = [line for _, line in plan(recipients=[recipient], **kwargs).rcpt_lines]
    assert line == rcpt


@pytest.mark.parametrize(
    ("address", "utf8", "value"),
    [
        ("a@example.com", False, "rfc822;a@example.com"),
        ("a+b=c@example.com", False, "rfc822;a+2Bb+3Dc@example.com"),
        ("a@bücher.example", False, "rfc822;a@xn--bcher-kva.example"),  # A-label, still rfc822
        ("jörg@example.com", True, "utf-8;jörg@example.com"),  # RFC 6533 unitext
        ("jörg+x@example.com", True, "utf-8;jörg\\x{2B}x@example.com"),
        ("jörg@example.com", False, "utf-8;j\\x{F6}rg@example.com"),  # 7-bit form
    ],
)
def test_orcpt_encoding(address: str, utf8: bool, value: str) -> None:
    assert orcpt(address, utf8=utf8) == value


def test_dsn_is_dropped_when_not_required_and_not_offered() -> None:
    p = plan(
        keywords=("PIPELINING",),
        recipients=[Recipient("b@example.com", notify=("SUCCESS",))],
        dsn=DSN(ret="FULL", envid="x", required=False),
    )
    assert p.mail_line == b"MAIL FROM:<a@example.com>\r\n"
    assert p.rcpt_lines == [("b@example.com", b"RCPT TO:<b@example.com>\r\n")]


# --- framing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "kwargs", "framing"),
    [
        (POSTFIX, {}, Framing.BDAT),  # CHUNKING offered: used
        (POSTFIX, {"use_chunking": False}, Framing.DATA),  # ... unless switched off
        (("PIPELINING", "8BITMIME"), {}, Framing.DATA),
        ((*POSTFIX, "BINARYMIME"), {"binary": True}, Framing.BINARY),
        # BINARYMIME is offered but not asked for: plain BDAT.
        ((*POSTFIX, "BINARYMIME"), {}, Framing.BDAT),
    ],
)
def test_framing(keywords: tuple[str, ...], kwargs: dict[str, object], framing: Framing) -> None:
    assert plan(keywords=keywords, **kwargs).framing is framing


# --- refused before MAIL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "keywords", "kwargs", "error", "match"),
    [
        (b"\xe9\r\n", ("PIPELINING", "SIZE"), {}, ExtensionNotSupported, "8BITMIME"),
        (b"x\r\n", ("8BITMIME",), {"sender": "jörg@example.com"}, ExtensionNotSupported, "SMTPUTF8"),
        (b"x\r\n", ("8BITMIME",), {"smtputf8": True}, ExtensionNotSupported, "SMTPUTF8"),
        (b"x\r\n" * 334, POSTFIX, {}, MessageTooLarge, "1002 octets.*at most 1000"),
        (b"x" * 999, ("SIZE",), {}, MessageContentError, "line of 999 octets"),
        (b"x\r\n", POSTFIX, {"binary": True}, ExtensionNotSupported, "BINARYMIME"),
        (b"x\r\n", ("BINARYMIME",), {"binary": True}, ExtensionNotSupported, "CHUNKING"),
        (b"x\r\n", ("SIZE",), {"dsn": DSN(ret="FULL")}, ExtensionNotSupported, "DSN"),
        (b"x\r\n", (*POSTFIX, "REQUIRETLS"), {"requiretls": True}, TLSRequiredError, "verified"),
        (
            b"x\r\n",
            (*POSTFIX, "REQUIRETLS"),
            {"requiretls": True, "tls": UNVERIFIED},
            TLSRequiredError,
            "verified",
        ),
        (b"x\r\n", POSTFIX, {"requiretls": True, "tls": VERIFIED}, ExtensionNotSupported, "REQUIRETLS"),
        (b"x\r\n", POSTFIX, {"sender": "a@b@"}, InvalidAddressError, "malformed"),
        (b"x\r\n", POSTFIX, {"recipients": ["b@exa mple.com"]}, InvalidAddressError, "malformed"),
        (b"x\r\n", POSTFIX, {"mail_options": ["X=a\r\nRSET"]}, InvalidArgumentError, "control"),
    ],
)
def test_refused_before_mail(
    data: bytes,
    keywords: tuple[str, ...],
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        plan(data, keywords, **kwargs)


@pytest.mark.parametrize(
    ("advertised", "limit"),
    [("SIZE", None), ("SIZE 0", None), ("SIZE 1000", 1000), ("SIZE junk", None)],
)
def test_size_zero_or_missing_means_no_limit(advertised: str, limit: int | None) -> None:
    ext = offer(advertised)
    assert ext.max_size == limit
    data = b"y" * 98 + b"\r\n"
    if limit is None:
        assert plan(data * 50, (advertised,)).mail_line.endswith(b" SIZE=5000\r\n")
    else:
        assert plan(data * 10, (advertised,)).mail_line.endswith(b" SIZE=1000\r\n")
        with pytest.raises(MessageTooLarge):
            plan(data * 10 + b"z", (advertised,))


def test_undeclared_iterable_is_watched_when_8bitmime_is_missing() -> None:
    # Nothing to scan and no 8BITMIME: declare nothing, check while streaming.
    p = plan(one_shot(), ("PIPELINING",))
    assert p.mail_line == b"MAIL FROM:<a@example.com>\r\n"
    assert p.check_eight_bit and p.check_lines


def test_size_estimate_of_an_iterable_is_checked_against_the_limit() -> None:
    with pytest.raises(MessageTooLarge):
        plan(one_shot(), POSTFIX, size=5000)
