"""From an ``email.message.Message`` to an envelope and wire-ready bytes.

The envelope comes from the headers (Resent-* first, RFC 5322 §3.6.6), as
smtplib's ``send_message`` takes it; Bcc and Resent-Bcc are removed from the
copy that is sent.  The serialisation follows what the server negotiated:
UTF-8 headers only with SMTPUTF8 (RFC 6531 §3.4), otherwise the 7-bit-safe
encodings of the ``email`` package, with non-ASCII domains in address
headers written as IDNA A-labels; a body line over 998 octets (RFC 5321
§4.5.3.1.6) is re-encoded as quoted-printable or base64, never sent raw.
On request, 8-bit parts are re-encoded the same way for a server without
8BITMIME (RFC 6152), and a ``TLS-Required: No`` header (RFC 8689 §5) is
added.

Whatever the generator wrote, the header block of the bytes that go out
is checked against the message object (``headercheck``): exactly its
header fields, in order, no bare CR, LF or NUL -- a header value with a
line break in it (a compat32 value, or CVE-2024-6923's encoded word on
an unpatched interpreter) cannot add a field.
"""

from __future__ import annotations

import copy
import email.encoders
import email.utils
import quopri
import re
from collections.abc import Iterable, Sequence
from email.generator import BytesGenerator
from email.headerregistry import Address, Group
from email.message import Message
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.policy import EmailPolicy, Policy
from io import BytesIO
from typing import Protocol

from smtpclient.body import Body
from smtpclient.envelope import DSN, Envelope
from smtpclient.errors import ExtensionNotSupported, InvalidAddressError, MessageContentError
from smtpclient.headercheck import check_message_header
from smtpclient.protocol.commands import check_text, normalise_domain
from smtpclient.protocol.data import MAX_LINE_LENGTH, BodyScanner
from smtpclient.protocol.extensions import Extensions

__all__ = ["ADDRESS_HEADERS", "Signer", "envelope_addresses", "prepare_message", "serialise"]

# Headers whose values are address lists (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
ADDRESS_HEADERS = (
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
)


class Signer(Protocol):
    """Adds a signature header field (``dkim.DKIMSigner``)."""

    def sign(self, message: bytes) -> bytes:
        """The DKIM-Signature header field for *message*, CRLF-terminated."""
        ...


# Content-Transfer-Encodings that may carry 8-bit octets (or that lie about it).
_EIGHT_BIT_CTES = ("8bit", "binary", "7bit", "")


def envelope_addresses(
    message: Message, from_addr: str | None = None, to_addrs: str | Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """Sender and recipients for *message*, from its headers where not given.

    Control and format characters are refused first, in given addresses and
    in the header fields the envelope is taken from (display names too).

    Raises:
        InvalidAddressError: a control or format character (``check_text``).
        ValueError: more than one Resent- block, or no sender/recipient found.
    """
    resent = message.get_all("Resent-Date")
    if resent is None:
        prefix = ""
    elif len(resent) == 1:
        prefix = "Resent-"
    else:
        raise ValueError("message has more than one 'Resent-' header block")
    if from_addr is None:
        field = prefix + "Sender" if (prefix + "Sender") in message else prefix + "From"
        values = _checked_values(message, field)
        found = [addr for _, addr in email.utils.getaddresses(values) if addr]
        if not found:
            raise ValueError(f"the message has no {field} header to take the sender from")
        from_addr = found[0]
    else:
        check_text(from_addr, "sender", InvalidAddressError)
    if to_addrs is None:
        values = []
        for name in ("To", "Bcc", "Cc"):
            values += _checked_values(message, prefix + name)
        to_addrs = [addr for _, addr in email.utils.getaddresses(values) if addr]
    elif isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    recipients = list(to_addrs)
    for recipient in recipients:
        check_text(recipient, "recipient address", InvalidAddressError)
    if not recipients:
        raise ValueError("the message has no recipients (no To, Cc or Bcc)")
    return from_addr, recipients


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _checked_values(message: Message, field: str) -> list[str]:
    """The values of *field*, unfolded, refused if they hold a control or
    format character (a tab is folding white space, not a control)."""
    values = [_FOLD.sub("", str(value)) for value in message.get_all(field, [])]
    for value in values:
        check_text(value.replace("\t", " "), f"the {field} header", InvalidAddressError)
    return values


def _headers_ascii(message: Message) -> bool:
    return all(str(value).isascii() for _, value in message.items())


def _generate(message: Message, policy: Policy) -> bytes:
    out = BytesIO()
    BytesGenerator(out, policy=policy).flatten(message, linesep="\r\n")
    return out.getvalue()


def _scan(data: bytes) -> BodyScanner:
    scanner = BodyScanner()
    scanner.feed(data)
    return scanner


def _reencode_parts(message: Message, *, long_lines: bool, eight_bit: bool) -> None:
    """Give leaf parts a 7-bit-safe encoding (quoted-printable for text,
    base64 otherwise): those with lines over 998 octets when *long_lines*,
    those with 8-bit octets when *eight_bit*."""
    for part in message.walk():
        if part.is_multipart():
            if eight_bit and part.get("Content-Transfer-Encoding", "").lower() in (
                "8bit",
                "binary",
            ):
                # A container's encoding only states what its parts use.
                del part["Content-Transfer-Encoding"]
                part["Content-Transfer-Encoding"] = "7bit"
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        too_long = long_lines and _scan(payload).long_lines
        unannounced = eight_bit and not payload.isascii() and cte in _EIGHT_BIT_CTES
        if not (too_long or unannounced):
            continue
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            # Text is canonically CRLF; quopri would quote a CR as =0D.
            text = payload.replace(b"\r\n", b"\n")
            part.set_payload(quopri.encodestring(text).decode("ascii"))
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            part.set_payload(payload)
            email.encoders.encode_base64(part)


def _alabel(address: Address) -> Address:
    if not address.username.isascii():
        raise ExtensionNotSupported(
            f"the header address {address.addr_spec!r} has a non-ASCII local part and the "
            "server does not offer SMTPUTF8",
            extension="SMTPUTF8",
        )
    if address.domain.isascii():
        return address
    try:
        domain = normalise_domain(address.domain)
    except InvalidAddressError as exc:
        raise InvalidAddressError(f"invalid domain in header address {address!s}") from exc
    return Address(address.display_name, address.username, domain)


def _ascii_address_headers(message: Message) -> None:
    """Rewrite non-ASCII domains in address headers as A-labels (in place).

    Without SMTPUTF8 a U-label cannot appear in a header, and the email
    package would otherwise put an encoded word inside the address.

    Raises:
        ExtensionNotSupported: a header address has a non-ASCII local part.
    """
    for name in ADDRESS_HEADERS:
        values = message.get_all(name)
        if not values or all(str(value).isascii() for value in values):
            continue
        rewritten: list[str] = []
        for value in values:
            groups = getattr(value, "groups", None)
            if groups is None:  # a Compat32 message: plain strings
                pairs = email.utils.getaddresses([str(value)])
                parts = [str(_alabel(Address(n, addr_spec=a))) for n, a in pairs if a]
            else:
                parts = [
                    str(Group(g.display_name, [_alabel(a) for a in g.addresses]))
                    if g.display_name is not None
                    else ", ".join(str(_alabel(a)) for a in g.addresses)
                    for g in groups
                ]
            rewritten.append(", ".join(parts))
        del message[name]
        for text in rewritten:
            message[name] = text


def _policy_for(message: Message, utf8: bool) -> Policy:
    """The message's own policy with CRLF line ends (and UTF-8 headers if *utf8*)."""
    policy = message.policy
    if isinstance(policy, EmailPolicy):
        return policy.clone(linesep="\r\n", utf8=utf8)
    if utf8:
        return SMTPUTF8_POLICY  # Compat32 has no UTF-8 mode
    return policy.clone(linesep="\r\n")


def serialise(
    message: Message,
    *,
    utf8: bool,
    seven_bit: bool = False,
    extra_headers: Sequence[tuple[str, str]] = (),
    signers: Sequence[Signer] = (),
) -> bytes:
    """The message as CRLF bytes, without Bcc/Resent-Bcc, lines within 998 octets.

    *utf8* writes UTF-8 headers (SMTPUTF8); without it non-ASCII domains in
    address headers become A-labels.  *seven_bit* re-encodes 8-bit parts
    as quoted-printable or base64.  *extra_headers* replace any header of
    the same name.  Each of *signers* signs the result and its
    DKIM-Signature goes on top.  *message* itself is never modified.

    Raises:
        HeaderInjectionError: the header block of the result is not exactly
            the message's header fields (a value with a line break in it).
        MessageContentError: a line is still too long after re-encoding (a
            header that cannot be folded), or 8-bit octets remain with
            *seven_bit* (raw 8-bit header bytes).
        ExtensionNotSupported: without *utf8*, a header address has a
            non-ASCII local part.
    """
    copied = copy.copy(message)
    # A shallow copy shares the header list; deleting rebinds it, so the
    # additions below never reach the caller's message.
    for name in ("Bcc", "Resent-Bcc", *(name for name, _ in extra_headers)):
        del copied[name]
    for name, value in extra_headers:
        copied[name] = value
    if not utf8:
        _ascii_address_headers(copied)
    policy = _policy_for(message, utf8)
    data = _generate(copied, policy)
    scanner = _scan(data)
    eight_bit = seven_bit and scanner.eight_bit
    if scanner.long_lines or eight_bit:
        copied = copy.deepcopy(copied)
        _reencode_parts(copied, long_lines=scanner.long_lines, eight_bit=eight_bit)
        data = _generate(copied, policy)
        scanner = _scan(data)
        if scanner.long_lines:
            raise MessageContentError(
                f"the message has a line of {scanner.max_line} octets that cannot be "
                f"re-encoded below RFC 5321's {MAX_LINE_LENGTH}"
            )
        if seven_bit and scanner.eight_bit:
            raise MessageContentError(
                "the message still has 8-bit octets after re-encoding its parts "
                "(raw 8-bit bytes in a header?)"
            )
    names = copied.keys()
    check_message_header(data, names)
    if signers:
        if not data.endswith(b"\r\n"):
            data += b"\r\n"  # signed exactly as sent: the encoder would add it
        fields = [signer.sign(data) for signer in signers]
        data = b"".join(fields) + data
        check_message_header(data, ["DKIM-Signature"] * len(fields) + names)
    return data


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def prepare_message(
    message: Message,
    extensions: Extensions,
    *,
    from_addr: str | None = None,
    to_addrs: str | Sequence[str] | None = None,
    mail_options: Iterable[str] = (),
    rcpt_options: Iterable[str] = (),
    dsn: DSN | None = None,
    requiretls: bool = False,
    tls_optional: bool = False,
    reencode_8bit: bool = False,
) -> tuple[Envelope, Body]:
    """Build the envelope and body for sending *message* to a server that
    offers *extensions*.

    *tls_optional* adds ``TLS-Required: No`` (RFC 8689 §5).  *reencode_8bit*
    re-encodes 8-bit parts as quoted-printable or base64 when the server
    does not offer 8BITMIME (without it, such a message is refused before
    MAIL by ``build_plan``).

    Raises:
        TypeError: *message* is not an email Message.
        ValueError: the envelope cannot be found in the headers, or both
            *requiretls* and *tls_optional* were asked for.
        ExtensionNotSupported: a non-ASCII local part (envelope or header)
            without SMTPUTF8.
        MessageContentError: a line that cannot be re-encoded.
    """
    if not isinstance(message, Message):
        raise TypeError(
            f"send_message() needs an email.message.Message, not {type(message).__name__}"
        )
    if requiretls and tls_optional:
        raise ValueError("requiretls and tls_optional ask for opposite things (RFC 8689)")
    sender, recipients = envelope_addresses(message, from_addr, to_addrs)
    international = not all(_local_part(a).isascii() for a in [sender, *recipients])
    utf8_headers = not _headers_ascii(message)
    if international and not extensions.smtputf8:
        raise ExtensionNotSupported(
            "the message has non-ASCII addresses and the server does not offer SMTPUTF8",
            extension="SMTPUTF8",
        )
    # RFC 6531 §3.4: UTF-8 in headers only with SMTPUTF8; otherwise the email
    # package writes RFC 2047 encoded words, and domains go out as A-labels.
    utf8 = extensions.smtputf8 and (international or utf8_headers)
    data = serialise(
        message,
        utf8=utf8,
        seven_bit=reencode_8bit and not extensions.eightbitmime,
        extra_headers=[("TLS-Required", "No")] if tls_optional else (),
    )
    envelope = Envelope.build(
        sender,
        recipients,
        dsn=dsn,
        mail_options=mail_options,
        rcpt_options=rcpt_options,
        smtputf8=utf8,
        requiretls=requiretls,
    )
    return envelope, Body(data)
