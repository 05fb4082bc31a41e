"""Control and format characters in addresses: caller input, refused first.

Every character that cannot appear in an address -- C0, DEL, C1 (NEL
U+0085 among them), U+2028/U+2029, format characters (Cf: bidi controls,
zero-width space, BOM, soft hyphen, ...) and lone surrogates -- is an
``InvalidAddressError`` (a ``ValueError``), raised before anything else is
considered: before SMTPUTF8, before IDNA, before a connection is used.
"""

from __future__ import annotations

from email.message import Message

import pytest

from smtpclient.envelope import Envelope, Recipient
from smtpclient.errors import InvalidAddressError
from smtpclient.message import envelope_addresses, prepare_message
from smtpclient.protocol.commands import check_text, encode_address
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply

REFUSED = {
    "NUL": "\x00",
    "TAB": "\t",
    "CR": "\r",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "PAD U+0080": "\x80",
    "NEL U+0085": "\x85",
    "APC U+009F": "\x9f",
    "soft hyphen U+00AD": "\u00ad",
    "arabic letter mark U+061C": "\u061c",
    "zero-width space U+200B": "\u200b",
    "left-to-right mark U+200E": "\u200e",
    "line separator U+2028": "\u2028",
    "paragraph separator U+2029": "\u2029",
    "right-to-left override U+202E": "\u202e",
    "word joiner U+2060": "\u2060",
    "first strong isolate U+2068": "\u2068",
    "BOM U+FEFF": "\ufeff",
    "interlinear annotation U+FFF9": "\ufff9",
    "tag character U+E0041": "\U000e0041",
    "lone surrogate U+D800": "\ud800",
}

ALLOWED = {
    "ASCII": "user@example.com",
    "UTF-8 local part": "jörg@example.com",
    "U-label domain": "user@bücher.example",
    "ZWNJ (IDNA CONTEXTJ)": "user@\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.example",
    "emoji": "\U0001f600@example.com",
}


@pytest.mark.parametrize("name", list(REFUSED), ids=list(REFUSED))
def test_check_text_refuses(name: str) -> None:
    with pytest.raises(InvalidAddressError, match=f"U\\+{ord(REFUSED[name]):04X}"):
        check_text(f"us{REFUSED[name]}er@example.com", "address", InvalidAddressError)


@pytest.mark.parametrize("name", list(ALLOWED), ids=list(ALLOWED))
def test_check_text_allows(name: str) -> None:
    assert check_text(ALLOWED[name], "address") == ALLOWED[name]


@pytest.mark.parametrize("name", list(REFUSED), ids=list(REFUSED))
def test_the_envelope_refuses_before_smtputf8_is_considered(name: str) -> None:
    bad = f"us{REFUSED[name]}er@example.com"
    with pytest.raises(InvalidAddressError):
        Envelope.build(bad, ["b@example.com"])
    with pytest.raises(InvalidAddressError):
        Envelope.build("a@example.com", ["b@example.com", bad])
    with pytest.raises(InvalidAddressError):
        Recipient(bad)
    with pytest.raises(InvalidAddressError):
        encode_address(bad, utf8=True)


def _message(**headers: str) -> Message:
    # compat32: EmailMessage itself refuses NEL and U+2028 (they split lines).
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_payload("x")
    return message


NO_SMTPUTF8 = Extensions.parse(Reply(250, ("scripted.test", "8BITMIME")))


@pytest.mark.parametrize(
    "headers",
    [
        {"From": "a@example.com", "To": "b\x85@example.com"},
        {"From": "Mallory \u202eevil\u202c <a@example.com>", "To": "b@example.com"},
        {"From": "a@example.com", "To": "Bob\u2028 <b@example.com>"},
        {"From": "a@example.com", "To": "b@example.com", "Bcc": "c\u200b@example.com"},
        {"Resent_Date": "x", "Resent_From": "a@example.com", "Resent_To": "d\x85@example.com"},
    ],
    ids=[
        "NEL in To",
        "RLO in the From display name",
        "U+2028 in a To display name",
        "ZWSP in Bcc",
        "NEL in Resent-To",
    ],
)
def test_header_fields_that_become_the_envelope_are_checked(headers: dict[str, str]) -> None:
    message = _message(**headers)
    with pytest.raises(InvalidAddressError):
        envelope_addresses(message)
    # Before the SMTPUTF8 decision (which would be ExtensionNotSupported here).
    with pytest.raises(InvalidAddressError):
        prepare_message(message, NO_SMTPUTF8)


def test_given_envelope_addresses_are_checked_before_smtputf8() -> None:
    message = _message(From="a@example.com", To="b@example.com")
    with pytest.raises(InvalidAddressError):
        prepare_message(message, NO_SMTPUTF8, to_addrs=["b\x85é@example.com"])
    with pytest.raises(InvalidAddressError):
        prepare_message(message, NO_SMTPUTF8, from_addr="\u202ea@example.com")


def test_a_folded_header_and_a_tab_are_not_control_characters() -> None:
    message = _message(From="a@example.com", To="b@example.com,\r\n\tc@example.com")
    assert envelope_addresses(message)[1] == ["b@example.com", "c@example.com"]
