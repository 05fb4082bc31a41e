"""From an ``email.message.Message`` to an envelope and wire-ready bytes.

The envelope comes from the headers (Resent-* first, RFC 5322 §3.6.6), as
smtplib's ``send_message`` takes it; Bcc and Resent-Bcc are removed from the
copy that is sent.  The serialisation follows what the server negotiated:
UTF-8 headers only with SMTPUTF8 (RFC 6531 §3.4), otherwise the 7-bit-safe
encodings of the ``email`` package; a body line over 998 octets (RFC 5321
§4.5.3.1.6) is re-encoded as quoted-printable or base64, never sent raw.
"""

from __future__ import annotations

import copy
import email.encoders
import email.utils
import quopri
from collections.abc import Iterable, Sequence
from email.generator import BytesGenerator
from email.message import Message
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.policy import EmailPolicy, Policy
from io import BytesIO

from smtpclient.body import Body
from smtpclient.envelope import DSN, Envelope
from smtpclient.errors import ExtensionNotSupported, MessageContentError
from smtpclient.protocol.data import MAX_LINE_LENGTH, BodyScanner
from smtpclient.protocol.extensions import Extensions

__all__ = ["envelope_addresses", "prepare_message", "serialise"]


def envelope_addresses(
    message: Message, from_addr: str | None = None, to_addrs: str | Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """Sender and recipients for *message*, from its headers where not given.

    Raises:
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
        values = [str(v) for v in message.get_all(field, [])]
        found = [addr for _, addr in email.utils.getaddresses(values) if addr]
        if not found:
            raise ValueError(f"the message has no {field} header to take the sender from")
        from_addr = found[0]
    if to_addrs is None:
        values = []
        for name in ("To", "Bcc", "Cc"):
            values += [str(v) for v in message.get_all(prefix + name, [])]
        to_addrs = [addr for _, addr in email.utils.getaddresses(values) if addr]
    elif isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    recipients = list(to_addrs)
    if not recipients:
        raise ValueError("the message has no recipients (no To, Cc or Bcc)")
    return from_addr, recipients


def _headers_ascii(message: Message) -> bool:
    return all(str(value).isascii() for _, value in message.items())


def _generate(message: Message, policy: Policy) -> bytes:
    out = BytesIO()
    BytesGenerator(out, policy=policy).flatten(message, linesep="\r\n")
    return out.getvalue()


def _reencode_long_lines(message: Message) -> None:
    """Give every leaf part whose lines are too long a 7-bit-safe encoding."""
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        scanner = BodyScanner()
        scanner.feed(payload)
        if not scanner.long_lines:
            continue
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            part.set_payload(quopri.encodestring(payload).decode("ascii"))
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            part.set_payload(payload)
            email.encoders.encode_base64(part)


def _policy_for(message: Message, utf8: bool) -> Policy:
    """The message's own policy with CRLF line ends (and UTF-8 headers if *utf8*)."""
    policy = message.policy
    if isinstance(policy, EmailPolicy):
        return policy.clone(linesep="\r\n", utf8=utf8)
    if utf8:
        return SMTPUTF8_POLICY  # Compat32 has no UTF-8 mode
    return policy.clone(linesep="\r\n")


def serialise(message: Message, *, utf8: bool) -> bytes:
    """The message as CRLF bytes, without Bcc/Resent-Bcc, lines within 998 octets.

    Raises:
        MessageContentError: a line is still too long after re-encoding (a
            header that cannot be folded).
    """
    copied = copy.copy(message)
    del copied["Bcc"]
    del copied["Resent-Bcc"]
    policy = _policy_for(message, utf8)
    data = _generate(copied, policy)
    scanner = BodyScanner()
    scanner.feed(data)
    if scanner.long_lines:
        copied = copy.deepcopy(copied)
        _reencode_long_lines(copied)
        data = _generate(copied, policy)
        scanner = BodyScanner()
        scanner.feed(data)
        if scanner.long_lines:
            raise MessageContentError(
                f"the message has a line of {scanner.max_line} octets that cannot be "
                f"re-encoded below RFC 5321's {MAX_LINE_LENGTH}"
            )
    return data


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
) -> tuple[Envelope, Body]:
    """Build the envelope and body for sending *message* to a server that
    offers *extensions*.

    Raises:
        TypeError: *message* is not an email Message.
        ValueError: the envelope cannot be found in the headers.
        ExtensionNotSupported: UTF-8 headers or addresses without SMTPUTF8.
    """
    if not isinstance(message, Message):
        raise TypeError(
            f"send_message() needs an email.message.Message, not {type(message).__name__}"
        )
    sender, recipients = envelope_addresses(message, from_addr, to_addrs)
    international = not all(a.isascii() for a in [sender, *recipients])
    utf8_headers = not _headers_ascii(message)
    if international and not extensions.smtputf8:
        raise ExtensionNotSupported(
            "the message has non-ASCII addresses and the server does not offer SMTPUTF8",
            extension="SMTPUTF8",
        )
    # RFC 6531 §3.4: UTF-8 in headers only with SMTPUTF8; otherwise the email
    # package writes RFC 2047 encoded words.
    utf8 = extensions.smtputf8 and (international or utf8_headers)
    data = serialise(message, utf8=utf8)
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
