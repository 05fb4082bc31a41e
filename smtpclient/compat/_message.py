"""``send_message`` helpers: the envelope from a message's headers, and its bytes."""

from __future__ import annotations

import copy
import email.generator
import email.utils
import io
from collections.abc import Sequence
from email.message import Message

from smtpclient.headercheck import check_message_header
from smtpclient.message import serialise
from smtpclient.protocol.data import MAX_LINE_LENGTH, BodyScanner

__all__ = ["envelope", "flatten", "needs_smtputf8"]


def envelope(
    msg: Message, from_addr: str | None, to_addrs: str | Sequence[str] | None
) -> tuple[str, str | Sequence[str]]:
    """The sender and recipients: given ones win, else the headers (RFC 5322
    §3.6.6: the Resent- block when there is exactly one).

    Raises:
        ValueError: more than one block of Resent- headers.
    """
    resent = msg.get_all("Resent-Date")
    if resent is None:
        prefix = ""
    elif len(resent) == 1:
        prefix = "Resent-"
    else:
        raise ValueError("message has more than one 'Resent-' header block")
    if from_addr is None:
        # The Sender field names the submitter when it is present (§3.6.2).
        header = prefix + "Sender" if prefix + "Sender" in msg else prefix + "From"
        from_addr = email.utils.getaddresses([msg[header]])[0][1]
    if to_addrs is None:
        fields = [msg[prefix + name] for name in ("To", "Bcc", "Cc")]
        to_addrs = [pair[1] for pair in email.utils.getaddresses([f for f in fields if f])]
    return from_addr, to_addrs


def needs_smtputf8(sender: str, recipients: str | Sequence[str]) -> bool:
    """True when an address is not ASCII."""
    return not "".join([sender, *recipients]).isascii()


def flatten(msg: Message, *, international: bool) -> bytes:
    """The message as bytes with CRLF line ends, without its Bcc headers.

    Byte for byte what smtplib sends, unless a line is over 998 octets:
    then the native API's serialisation, which re-encodes the parts with
    long lines (quoted-printable or base64).  Either way the header block
    goes through the library's header check (``headercheck``).

    Raises:
        HeaderInjectionError: the header block is not exactly the message's
            header fields (a value with a line break in it); a ``ValueError``.
        MessageContentError: a line stays too long after re-encoding (a
            ``ValueError``).
    """
    data = _smtplib_bytes(msg, international=international)
    scanner = BodyScanner()
    scanner.feed(data)
    if scanner.max_line > MAX_LINE_LENGTH:
        return serialise(msg, utf8=international)
    return data


def _smtplib_bytes(msg: Message, *, international: bool) -> bytes:
    outgoing = copy.copy(msg)
    del outgoing["Bcc"]
    del outgoing["Resent-Bcc"]
    with io.BytesIO() as buffer:
        if international:
            # As smtplib: a compat32-policy message fails here (it has no utf8).
            policy = msg.policy.clone(utf8=True)  # type: ignore[call-arg]
            generator = email.generator.BytesGenerator(buffer, policy=policy)
        else:
            generator = email.generator.BytesGenerator(buffer)
        generator.flatten(outgoing, linesep="\r\n")
        data = buffer.getvalue()
    check_message_header(data, outgoing.keys())
    return data
