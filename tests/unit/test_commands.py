"""The command encoder: what goes on the wire, and what is refused before it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.errors import InvalidAddressError, InvalidArgumentError
from smtpclient.protocol import commands


@pytest.mark.parametrize(
    ("address", "utf8", "wire"),
    [
        ("user@example.com", False, "user@example.com"),
        ("<user@example.com>", False, "user@example.com"),
        ("first.last+tag@example.com", False, "first.last+tag@example.com"),
        ("user@b\u00fccher.example", False, "user@xn--bcher-kva.example"),  # IDNA A-label
        ("user@B\u00dcCHER.example", False, "user@xn--bcher-kva.example"),  # UTS #46 mapping
        (
            "user@stra\u00dfe.example",
            False,
            "user@xn--strae-oqa.example",
        ),  # non-transitional: ß stays
        ("user@b\u00fccher.example", True, "user@b\u00fccher.example"),  # SMTPUTF8: U-label kept
        ("j\u00f6rg@example.com", True, "j\u00f6rg@example.com"),
        ("user@[192.0.2.1]", False, "user@[192.0.2.1]"),
        ("user@[IPv6:2001:db8::1]", False, "user@[IPv6:2001:db8::1]"),
        ('"john doe"@example.com', False, '"john doe"@example.com'),
        ("john..doe@example.com", False, '"john..doe"@example.com'),  # quoted, not refused
        ("<@relay.example,@other.example:user@example.com>", False, "user@example.com"),
        ("Postmaster", False, "Postmaster"),
        # Unqualified local parts go out as given: the submission server qualifies them.
        ("tester", False, "tester"),
        ("<root>", False, "root"),
        ("first.last", False, "first.last"),
        ('"john doe"', False, '"john doe"'),
        ("j\u00f6rg", True, "j\u00f6rg"),
        ("under_score@my_host.example.com", False, "under_score@my_host.example.com"),
        # Over-long paths are the server's call (SRS/VERP senders exceed 64).
        ("SRS0=" + "x" * 80 + "@example.com", False, "SRS0=" + "x" * 80 + "@example.com"),
    ],
)
def test_addresses(address: str, utf8: bool, wire: str) -> None:
    assert commands.encode_address(address, utf8=utf8) == wire


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com\r\nRCPT TO:<evil@example.com>",
        "user\n@example.com",
        "user@exa\x00mple.com",
        "us\ter@example.com",
        "user@example.com\x7f",
        "user@example.com\x85",  # C1 control (NEL)
        '"a\rb"@example.com',  # control characters inside a quoted local part too
        "bad local",  # an unqualified local part still has to be well-formed
        "te\rster",
        "j\u00f6rg",  # non-ASCII local part without SMTPUTF8, no domain
        "a(b)",
        "@example.com",
        "user@",
        "user@.example.com",
        "user@example..com",
        "user@example.com.",
        "user@-bad-.example",
        "user@[300.1.1.1]",
        "user@[IPv6:zz::1]",
        "<user@example.com",
        "user @example.com",
        "j\u00f6rg@example.com",  # non-ASCII local part without SMTPUTF8
        "",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidAddressError):
        commands.encode_address(address)


def test_refusals_are_value_errors_not_os_errors() -> None:
    with pytest.raises(ValueError) as info:
        commands.mail("a@b.example\r\n")
    assert not isinstance(info.value, OSError)


def test_null_sender_only_for_mail() -> None:
    assert commands.mail("") == b"MAIL FROM:<>\r\n"
    assert commands.mail("<>") == b"MAIL FROM:<>\r\n"
    with pytest.raises(InvalidAddressError):
        commands.rcpt("")


def test_mail_and_rcpt_with_parameters() -> None:
    assert (
        commands.mail("a@x.example", {"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": None})
        == b"MAIL FROM:<a@x.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n"
    )
    assert (
        commands.rcpt("b@x.example", {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;b@x.example"})
        == b"RCPT TO:<b@x.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@x.example\r\n"
    )
    assert (
        commands.mail("j\u00f6rg@x.example", utf8=True)
        == "MAIL FROM:<j\u00f6rg@x.example>\r\n".encode()
    )


@pytest.mark.parametrize(
    "params",
    [
        {"SIZE": "1\r\nRSET"},
        {"BAD KEY": "x"},
        {"-X": "x"},
        {"K": "a=b"},
        {"K": "has space"},
        {"K": ""},
        {"K\n": "x"},
        {"K": "\u00e9"},  # non-ASCII value without SMTPUTF8
    ],
)
def test_bad_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        commands.mail("a@x.example", params)
    # A parameter is not an address: no caller should read it as a bad recipient.
    assert not isinstance(info.value, InvalidAddressError)


@pytest.mark.parametrize(
    ("call", "wire"),
    [
        (lambda: commands.ehlo("client.example.com"), b"EHLO client.example.com\r\n"),
        (lambda: commands.ehlo("[192.0.2.7]"), b"EHLO [192.0.2.7]\r\n"),
        (lambda: commands.ehlo("h\u00f6st.example"), b"EHLO xn--hst-sna.example\r\n"),
        (lambda: commands.helo("client.example.com"), b"HELO client.example.com\r\n"),
        (lambda: commands.lhlo("client.example.com"), b"LHLO client.example.com\r\n"),
        (commands.data, b"DATA\r\n"),
        (commands.rset, b"RSET\r\n"),
        (commands.noop, b"NOOP\r\n"),
        (commands.quit_, b"QUIT\r\n"),
        (commands.starttls, b"STARTTLS\r\n"),
        (lambda: commands.vrfy("postmaster"), b"VRFY postmaster\r\n"),
        (lambda: commands.expn("staff"), b"EXPN staff\r\n"),
        (commands.help_, b"HELP\r\n"),
        (lambda: commands.help_("MAIL"), b"HELP MAIL\r\n"),
        (lambda: commands.bdat(10), b"BDAT 10\r\n"),
        (lambda: commands.bdat(0, last=True), b"BDAT 0 LAST\r\n"),
        (lambda: commands.auth("PLAIN", "AGEAYg=="), b"AUTH PLAIN AGEAYg==\r\n"),
        (lambda: commands.auth("LOGIN"), b"AUTH LOGIN\r\n"),
    ],
)
def test_simple_commands(call: object, wire: bytes) -> None:
    assert call() == wire  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda: commands.ehlo("bad name"),
        lambda: commands.ehlo("x\r\nMAIL FROM:<a@b>"),
        lambda: commands.ehlo(""),
        lambda: commands.vrfy("a\nb"),
        lambda: commands.vrfy(""),
        lambda: commands.expn("list\x00"),
        lambda: commands.help_("x\r\n"),
        lambda: commands.vrfy("j\u00f6rg"),
        lambda: commands.auth("PLAIN\r\n"),
        lambda: commands.auth("PLAIN", "abc\r\nxyz"),
    ],
)
def test_control_characters_anywhere_are_refused(call: object) -> None:
    with pytest.raises(InvalidArgumentError):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda: commands.ehlo("x\r\nMAIL FROM:<a@b>"),
        lambda: commands.ehlo("bad..name"),
        lambda: commands.helo("[192.0.2.1"),
        lambda: commands.auth("PLAIN\r\n"),
        lambda: commands.auth("no such mechanism"),
        lambda: commands.auth("PLAIN", "é"),
        lambda: commands.check_text("NOOP\r\nRSET", "command"),
        lambda: commands.mail("a@x.example", {"SIZE": "1\r\n"}),
    ],
)
def test_mistakes_that_are_not_addresses_are_not_address_errors(call: object) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        call()  # type: ignore[operator]
    assert not isinstance(info.value, InvalidAddressError)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, OSError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: commands.mail("a\r\n@x.example"),
        lambda: commands.rcpt("b@exa mple.com"),
        lambda: commands.vrfy("a\nb"),
        lambda: commands.normalise_domain("bad..name"),
    ],
)
def test_address_mistakes_are_address_errors(call: object) -> None:
    with pytest.raises(InvalidAddressError):
        call()  # type: ignore[operator]


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        commands.encode_address(b"a@b.example")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        commands.bdat(-1)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("abc", "abc"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("a b", "a+20b"),
        ("\u00e9", "+C3+A9"),
        ("<id@host>", "<id@host>"),
    ],
)
def test_xtext(value: str, encoded: str) -> None:
    assert commands.xtext(value) == encoded


@given(st.text(max_size=60))
def test_any_text_either_encodes_to_one_clean_line_or_is_refused(text: str) -> None:
    for build in (
        lambda: commands.mail(text),
        lambda: commands.rcpt(text + "@example.com"),
        lambda: commands.vrfy(text),
        lambda: commands.ehlo(text),
        lambda: commands.mail("a@b.example", {"X": text}),
    ):
        try:
            wire = build()
        except (InvalidArgumentError, TypeError):
            continue
        assert wire.endswith(b"\r\n")
        body = wire[:-2]
        assert b"\r" not in body and b"\n" not in body and b"\x00" not in body
