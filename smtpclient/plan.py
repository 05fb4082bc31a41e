"""Everything decided before the first byte of a transaction is written.

``build_plan`` checks the message against what the server offers and
encodes every command, so that any refusal that does not need the server's
opinion (a bad address, 8-bit data without 8BITMIME, a message over the
SIZE limit, DSN without DSN) happens before MAIL FROM, with nothing sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpclient.body import Body, BodyInfo
from smtpclient.envelope import Envelope, Recipient
from smtpclient.errors import ExtensionNotSupported, MessageContentError, TLSRequiredError
from smtpclient.protocol import commands
from smtpclient.protocol.data import (  # the size rule: plan.content_size, plan.size_parameter
    MAX_LINE_LENGTH,
    Framing,
    content_size,
    nul_error,
    size_parameter,
)
from smtpclient.protocol.extensions import Extensions
from smtpclient.tls import TLSInfo

__all__ = ["Plan", "build_plan", "content_params", "content_size", "orcpt", "size_parameter"]


def content_params(body: str | None, size: str | None) -> dict[str, str | None]:
    """The MAIL FROM parameters that describe the content, in the order the
    library sends them: BODY, then SIZE."""
    params: dict[str, str | None] = {}
    if body is not None:
        params["BODY"] = body
    if size is not None:
        params["SIZE"] = size
    return params


@dataclass
class Plan:
    """A message ready for the wire: encoded commands and how to frame the content.

    ``check_eight_bit``/``check_lines`` ask the sender to watch a one-shot
    body while streaming it, because it could not be scanned beforehand.
    """

    envelope: Envelope
    body: Body
    info: BodyInfo
    mail_line: bytes
    rcpt_lines: list[tuple[str, bytes]]
    framing: Framing
    check_eight_bit: bool = False
    check_lines: bool = False

    @property
    def addresses(self) -> list[str]:
        """The recipients' addresses, in order."""
        return [address for address, _ in self.rcpt_lines]


def _needs_utf8(envelope: Envelope) -> bool:
    def local_part(address: str) -> str:
        return address.rpartition("@")[0] if "@" in address else address

    if envelope.smtputf8:
        return True
    if envelope.sender.isascii():
        # The usual case, decided without splitting addresses (a loop, not
        # all(): a generator costs a call per item).
        for recipient in envelope.recipients:
            if not recipient.address.isascii():
                break
        else:
            return False
    addresses = [envelope.sender] + [r.address for r in envelope.recipients]
    return any(not local_part(a).isascii() for a in addresses)


def _has_dsn(envelope: Envelope) -> bool:
    if not envelope.dsn.empty:
        return True
    for recipient in envelope.recipients:
        if recipient.notify is not None or recipient.orcpt is not None:
            return True
    return False


def _merge(ours: dict[str, str | None], theirs: dict[str, str | None]) -> dict[str, str | None]:
    """The caller's ESMTP parameters override ours (keywords compare case-insensitively)."""
    if not theirs:
        return ours
    if not ours:
        return theirs
    merged = {k: v for k, v in ours.items() if k.upper() not in {t.upper() for t in theirs}}
    merged.update(theirs)
    return merged


def _unitext(value: str, *, utf8: bool) -> str:
    """RFC 6533 §3: "\\x{HEX}" for what may not appear as is, then xtext
    unless SMTPUTF8 lets UTF-8 through (utf-8-addr-unitext)."""
    out = []
    for char in value:
        special = char in "+=\\" or ord(char) <= 0x20 or ord(char) == 0x7F
        if special or (not char.isascii() and not utf8):
            out.append(f"\\x{{{ord(char):X}}}")
        else:
            out.append(char)
    text = "".join(out)
    return text if utf8 else commands.xtext(text)


def orcpt(address: str, *, utf8: bool) -> str:
    """The ORCPT value for *address* (RFC 3461 §4.2, RFC 6533 §3).

    An ASCII address (or one whose only non-ASCII part is the domain, which
    goes out as an A-label) is ``rfc822;`` + xtext; a non-ASCII local part
    is ``utf-8;`` + unitext, raw UTF-8 only when *utf8* (SMTPUTF8).

    Raises:
        InvalidAddressError: control characters or a malformed domain.
    """
    commands.check_text(address, "ORCPT address")
    local, at, domain = address.rpartition("@")
    if at and local.isascii() and not domain.isascii():
        address = f"{local}@{commands.normalise_domain(domain)}"
    if address.isascii():
        return "rfc822;" + commands.xtext(address)
    return "utf-8;" + _unitext(address, utf8=utf8)


def _rcpt_params(
    recipient: Recipient, envelope: Envelope, dsn: bool, utf8: bool
) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not dsn and not recipient.params:
        return params
    if dsn:
        notify = recipient.notify or envelope.dsn.notify
        if notify:
            params["NOTIFY"] = ",".join(notify)
        original = recipient.orcpt or (recipient.address if envelope.dsn.orcpt else None)
        if original:
            params["ORCPT"] = orcpt(original, utf8=utf8)
    return _merge(params, dict(recipient.params))


def build_plan(
    envelope: Envelope,
    body: Body,
    extensions: Extensions,
    tls: TLSInfo | None,
    *,
    use_chunking: bool = True,
    binary: bool = False,
) -> Plan:
    """Check *envelope* and *body* against *extensions* and encode the commands.

    Raises:
        InvalidAddressError: a malformed address or parameter.
        ExtensionNotSupported: SMTPUTF8, 8BITMIME, BINARYMIME, DSN or
            REQUIRETLS is needed and not offered.
        TLSRequiredError: REQUIRETLS without a verified TLS session.
        MessageTooLarge: over the server's SIZE limit.
        MessageContentError: a line over 998 octets; NulOctetError, a NUL
            octet without *binary*; HeaderInjectionError, see ``Body.info``.
    """
    ext = extensions
    utf8_needed = _needs_utf8(envelope)
    if utf8_needed and not ext.smtputf8:
        raise ExtensionNotSupported(
            "the message needs SMTPUTF8 (a non-ASCII address or header) and the server "
            "does not offer it",
            extension="SMTPUTF8",
        )
    info = body.info()
    if info.nul and not binary:  # RFC 5322 §2.3: NUL only in BINARYMIME
        raise nul_error()
    if binary:
        if not (ext.chunking and ext.binarymime):
            raise ExtensionNotSupported(
                "binary=True needs the server's CHUNKING and BINARYMIME", extension="BINARYMIME"
            )
    elif info.max_line is not None and info.max_line > MAX_LINE_LENGTH:
        raise MessageContentError(
            f"the message has a line of {info.max_line} octets; RFC 5321 allows "
            f"{MAX_LINE_LENGTH}: encode it (quoted-printable or base64), or use send_message() "
            "which does so"
        )
    body_type: str | None = None
    check_eight_bit = False
    if binary:
        body_type = "BINARYMIME"
    elif info.eight_bit:
        if not ext.eightbitmime:
            raise ExtensionNotSupported(
                "the message has 8-bit bytes and the server does not offer 8BITMIME "
                "(encode it as quoted-printable or base64, or use send_message(..., "
                "reencode_8bit=True) which does so)",
                extension="8BITMIME",
            )
        body_type = "8BITMIME"
    elif info.eight_bit is None:
        # An undeclared one-shot body: assume 8-bit where that is allowed,
        # and watch the stream where it is not.
        if ext.eightbitmime:
            body_type = "8BITMIME"
        else:
            check_eight_bit = True
    # BINARYMIME sends the octets as they are; otherwise line ends become CRLF.
    size = body.octets() if binary else info.size
    declared = None if size is None else size_parameter(size, ext.max_size, "SIZE" in ext)
    params = content_params(body_type, declared)
    # Non-ASCII domains alone go out as A-labels: more servers down the
    # line can take them than can take SMTPUTF8.
    use_utf8 = utf8_needed
    if use_utf8:
        params["SMTPUTF8"] = None
    dsn = _has_dsn(envelope)
    if dsn and not ext.dsn:
        if envelope.dsn.required:
            raise ExtensionNotSupported(
                "DSN options were given and the server does not offer DSN "
                "(pass DSN(..., required=False) to drop them instead)",
                extension="DSN",
            )
        dsn = False
    if dsn:
        if envelope.dsn.ret:
            params["RET"] = envelope.dsn.ret
        if envelope.dsn.envid:
            params["ENVID"] = commands.xtext(envelope.dsn.envid)
    if envelope.requiretls:
        if tls is None or not tls.verified:
            raise TLSRequiredError("REQUIRETLS needs a verified TLS session (RFC 8689 §4.1)")
        if not ext.requiretls:
            raise ExtensionNotSupported(
                "REQUIRETLS was asked for and the server does not offer it",
                extension="REQUIRETLS",
            )
        params["REQUIRETLS"] = None
    mail_line = commands.mail(
        envelope.sender, _merge(params, dict(envelope.mail_params)), utf8=use_utf8
    )
    rcpt_lines = [
        (
            r.address,
            commands.rcpt(
                r.address,
                _rcpt_params(r, envelope, dsn, use_utf8) if dsn or r.params else None,
                utf8=use_utf8,
            ),
        )
        for r in envelope.recipients
    ]
    if binary:
        framing = Framing.BINARY
    elif use_chunking and ext.chunking:
        framing = Framing.BDAT
    else:
        framing = Framing.DATA
    return Plan(
        envelope,
        body,
        info,
        mail_line,
        rcpt_lines,
        framing,
        check_eight_bit=check_eight_bit,
        check_lines=info.max_line is None and not binary,
    )
