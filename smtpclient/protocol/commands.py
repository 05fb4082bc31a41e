"""Encode commands to bytes: the one place where str becomes wire bytes.

Every caller-supplied value is checked before anything is encoded: CR, LF,
NUL or any other control character is an ``InvalidAddressError`` (a
``ValueError``), so a command can never be split or smuggled.  Addresses are
checked for syntax (RFC 5321 §4.1.2) but not for length (§4.5.3.1 lets a
client try: SRS and VERP paths exceed 64 octets).  Without SMTPUTF8, domain
labels go out as IDNA A-labels (UTS #46, non-transitional) and a non-ASCII
local part is refused; with it, UTF-8 is sent as is (RFC 6531).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Mapping

import idna

from smtpclient.errors import InvalidAddressError, InvalidArgumentError

__all__ = [
    "auth",
    "bdat",
    "check_text",
    "data",
    "ehlo",
    "encode_address",
    "expn",
    "helo",
    "help_",
    "lhlo",
    "mail",
    "noop",
    "normalise_domain",
    "plain_mail",
    "plain_rcpt",
    "quit_",
    "rcpt",
    "rset",
    "starttls",
    "vrfy",
    "xtext",
]

# C0 controls, DEL, the C1 block (NEL U+0085 among them) and the line and
# paragraph separators: none of them belongs in a command or an address.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Beyond ASCII, by Unicode category: format characters (bidi controls,
# zero-width space, BOM, soft hyphen...) and lone surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# ZWNJ and ZWJ are format characters that IDNA allows in some scripts'
# labels (RFC 5892 CONTEXTJ); the IDNA check judges them.
_JOINERS = frozenset("\u200c\u200d")
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_ATOM_UTF8 = re.compile(rf"(?:[{_ATEXT}]|[^\x00-\x7f])+(?:\.(?:[{_ATEXT}]|[^\x00-\x7f])+)*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[^\x00-\x7f])*"')
_DOTS_ONLY_WRONG = re.compile(rf"[.{_ATEXT}]+")
_LDH_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")  # printable ASCII except "="
_ESMTP_VALUE_UTF8 = re.compile(r"(?:[\x21-\x3c\x3e-\x7e]|[^\x00-\x7f])+")
_SOURCE_ROUTE = re.compile(r"@[^:,]+(?:,@[^:,]+)*:")


def check_text(
    value: str, what: str, error: type[InvalidArgumentError] = InvalidArgumentError
) -> str:
    """Refuse control and format characters in *value*; return it unchanged.

    Refused: C0 controls (CR, LF, NUL ...), DEL, C1 controls (NEL ...),
    U+2028/U+2029, format characters (Unicode category Cf: bidi controls,
    zero-width space, BOM ...) except ZWNJ/ZWJ, and lone surrogates.

    Raises:
        TypeError: *value* is not a str.
        InvalidArgumentError: *value* holds such a character (*error*, which
            address checks make ``InvalidAddressError``).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    found = _CONTROL.search(value)
    character = found.group() if found is not None else None
    if character is None and not value.isascii():
        character = _format_character(value)
    if character is not None:
        raise error(
            f"{what} contains a control character or invisible format character "
            f"U+{ord(character):04X}: {value[:80]!a}"
        )
    return value


def _format_character(value: str) -> str | None:
    for character in value:
        if (
            character > "\x7f"
            and unicodedata.category(character) in _REFUSED_CATEGORIES
            and character not in _JOINERS
        ):
            return character
    return None


def normalise_domain(domain: str, *, utf8: bool = False) -> str:
    """Check a domain (or address literal) and return it as it goes on the wire.

    Non-ASCII labels become A-labels unless *utf8* (SMTPUTF8 negotiated), in
    which case the U-label form is kept but still checked by IDNA.

    Raises:
        InvalidAddressError: the domain is empty, malformed or not valid IDNA.
    """
    check_text(domain, "domain", InvalidAddressError)
    if domain.startswith("[") and domain.endswith("]"):
        _check_address_literal(domain)
        return domain
    if not domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise InvalidAddressError(f"malformed domain: {domain!r}")
    labels = domain.split(".")
    out = []
    for label in labels:
        if label.isascii():
            if _LDH_LABEL.fullmatch(label) is None:
                raise InvalidAddressError(f"malformed domain label {label!r} in {domain!r}")
            out.append(label)
            continue
        try:
            alabel = idna.encode(label, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidAddressError(f"invalid internationalised domain {domain!r}") from exc
        out.append(label if utf8 else alabel)
    return ".".join(out)


def _check_address_literal(literal: str) -> None:
    inner = literal[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError as exc:
        raise InvalidAddressError(f"malformed address literal: {literal!r}") from exc


def _split_address(address: str) -> tuple[str, str]:
    at = address.rfind("@")
    if at <= 0 or at == len(address) - 1:
        raise InvalidAddressError(f"malformed address (want local@domain): {address!r}")
    return address[:at], address[at + 1 :]


def _encode_local_part(local: str, *, utf8: bool) -> str:
    if not utf8 and not local.isascii():
        raise InvalidAddressError(
            f"non-ASCII local part {local!r} needs the server's SMTPUTF8 extension"
        )
    if (_DOT_ATOM_UTF8 if utf8 else _DOT_ATOM).fullmatch(local):
        return local
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        if _QUOTED.fullmatch(local) is None:
            raise InvalidAddressError(f"malformed quoted local part: {local!r}")
        return local
    if _DOTS_ONLY_WRONG.fullmatch(local):
        # Only the dots are out of place ("john..doe", "x."): such addresses
        # exist (some carriers issue them); RFC 5321 §4.1.2 spells them quoted.
        return f'"{local}"'
    raise InvalidAddressError(f"malformed local part {local!r} (quote it if it is meant literally)")


def encode_address(address: str, *, utf8: bool = False, allow_empty: bool = False) -> str:
    """Check *address* and return the path as it goes inside ``<...>``.

    Accepts ``user@example.com`` or ``<user@example.com>``.  An obsolete
    source route (``<@a,@b:user@c>``, RFC 5321 §4.1.4) is dropped, never sent.
    ``allow_empty`` permits the null reverse path ``<>`` (MAIL FROM only).
    A bare local part (``root``, ``Postmaster``) is sent as given, for the
    server to qualify; direct delivery refuses it (no domain to route to).

    Raises:
        InvalidAddressError: control characters, a malformed address, or a
            non-ASCII local part when *utf8* is False.
    """
    # The same few addresses recur on every message a process sends:
    # remember the answers (errors are not cached, they are raised again).
    if not isinstance(address, str):
        raise TypeError(f"address must be str, not {type(address).__name__}")
    return _encode_address(address, utf8, allow_empty)


@functools.lru_cache(maxsize=4096)
def _encode_address(address: str, utf8: bool, allow_empty: bool) -> str:
    check_text(address, "address", InvalidAddressError)
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    route = _SOURCE_ROUTE.match(address)
    if route is not None:
        address = address[route.end() :]
    if not address:
        if allow_empty:
            return ""
        raise InvalidAddressError("an empty address is only allowed as the sender (<>)")
    if address.lower() == "postmaster":
        return address
    if any(ch in address for ch in "<>") or address != address.strip():
        raise InvalidAddressError(f"malformed address: {address!r}")
    if "@" not in address or _QUOTED.fullmatch(address):
        # An unqualified local part ("root"): a submission server qualifies
        # it (Postfix's append_at_myorigin), as smtplib and Django rely on.
        return _encode_local_part(address, utf8=utf8)
    local, domain = _split_address(address)
    return f"{_encode_local_part(local, utf8=utf8)}@{normalise_domain(domain, utf8=utf8)}"


def _params(params: Mapping[str, str | None] | None, *, utf8: bool) -> str:
    if not params:
        return ""
    out = []
    value_pattern = _ESMTP_VALUE_UTF8 if utf8 else _ESMTP_VALUE
    for keyword, value in params.items():
        check_text(keyword, "ESMTP parameter name")
        if _ESMTP_KEYWORD.fullmatch(keyword) is None:
            raise InvalidArgumentError(f"malformed ESMTP parameter name: {keyword!r}")
        if value is None:
            out.append(" " + keyword)
            continue
        check_text(value, f"ESMTP parameter {keyword}")
        if value_pattern.fullmatch(value) is None:
            raise InvalidArgumentError(f"malformed value for ESMTP parameter {keyword}: {value!r}")
        out.append(f" {keyword}={value}")
    return "".join(out)


def _line(text: str, *, utf8: bool = False) -> bytes:
    return (text + "\r\n").encode("utf-8" if utf8 else "ascii")


def _hostname(name: str) -> str:
    # A host name is the caller's setting, not an address: InvalidArgumentError.
    check_text(name, "HELO name")
    if not name or " " in name:
        raise InvalidArgumentError(f"malformed HELO name: {name!r}")
    try:
        if name.startswith("[") or name.endswith("]"):
            # An address literal needs both brackets ("[192.0.2.1>" was sent as is).
            if not (name.startswith("[") and name.endswith("]")):
                raise InvalidArgumentError(f"malformed address literal: {name!r}")
            _check_address_literal(name)
            return name
        return normalise_domain(name)
    except InvalidAddressError as exc:
        raise InvalidArgumentError(f"malformed HELO name {name!r}: {exc}") from None


def ehlo(name: str) -> bytes:
    """``EHLO name`` (an FQDN or an address literal)."""
    return _line(f"EHLO {_hostname(name)}")


def lhlo(name: str) -> bytes:
    """``LHLO name`` (LMTP, RFC 2033)."""
    return _line(f"LHLO {_hostname(name)}")


def helo(name: str) -> bytes:
    """``HELO name``."""
    return _line(f"HELO {_hostname(name)}")


def mail(
    sender: str, params: Mapping[str, str | None] | None = None, *, utf8: bool = False
) -> bytes:
    """``MAIL FROM:<sender> params``; ``sender`` may be "" for the null path."""
    if not params and isinstance(sender, str):
        return _plain_mail(sender, utf8)
    path = encode_address(sender, utf8=utf8, allow_empty=True)
    return _line(f"MAIL FROM:<{path}>{_params(params, utf8=utf8)}", utf8=utf8)


def rcpt(
    recipient: str, params: Mapping[str, str | None] | None = None, *, utf8: bool = False
) -> bytes:
    """``RCPT TO:<recipient> params``."""
    if not params and isinstance(recipient, str):
        return _plain_rcpt(recipient, utf8)
    path = encode_address(recipient, utf8=utf8)
    return _line(f"RCPT TO:<{path}>{_params(params, utf8=utf8)}", utf8=utf8)


# Whole command lines without parameters, remembered like the addresses
# (errors are raised again, never cached): the same senders and recipients
# recur on every message a process sends.
@functools.lru_cache(maxsize=4096)
def _plain_mail(sender: str, utf8: bool) -> bytes:
    return _line(f"MAIL FROM:<{_encode_address(sender, utf8, True)}>", utf8=utf8)


@functools.lru_cache(maxsize=4096)
def _plain_rcpt(recipient: str, utf8: bool) -> bytes:
    return _line(f"RCPT TO:<{_encode_address(recipient, utf8, False)}>", utf8=utf8)


# The same cached encoders under public names: ``plain_mail(sender, utf8)``
# and ``plain_rcpt(recipient, utf8)`` are ``mail``/``rcpt`` without
# parameters, for a caller that cannot afford a Python call per line (the
# sendmail fast path).  Raises: as ``mail`` and ``rcpt``.
plain_mail = _plain_mail
plain_rcpt = _plain_rcpt


def _argument(verb: str, argument: str | None, *, utf8: bool = False) -> bytes:
    if argument is None or argument == "":
        return _line(verb)
    check_text(argument, f"{verb} argument", InvalidAddressError)
    if not utf8 and not argument.isascii():
        raise InvalidAddressError(f"non-ASCII {verb} argument needs SMTPUTF8: {argument!r}")
    return _line(f"{verb} {argument}", utf8=utf8)


def vrfy(argument: str, *, utf8: bool = False) -> bytes:
    """``VRFY argument`` (RFC 5321 §3.5.1; ``SMTPUTF8`` appended by the caller)."""
    if not argument:
        raise InvalidAddressError("VRFY needs an argument")
    return _argument("VRFY", argument, utf8=utf8)


def expn(argument: str, *, utf8: bool = False) -> bytes:
    """``EXPN argument``."""
    if not argument:
        raise InvalidAddressError("EXPN needs an argument")
    return _argument("EXPN", argument, utf8=utf8)


def help_(argument: str | None = None) -> bytes:
    """``HELP [argument]``."""
    return _argument("HELP", argument)


def data() -> bytes:
    """``DATA``."""
    return b"DATA\r\n"


def bdat(size: int, *, last: bool = False) -> bytes:
    """``BDAT size [LAST]`` (RFC 3030); exactly *size* octets must follow."""
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"BDAT size must be a non-negative int, not {size!r}")
    return f"BDAT {size} LAST\r\n".encode() if last else f"BDAT {size}\r\n".encode()


def rset() -> bytes:
    """``RSET``."""
    return b"RSET\r\n"


def noop() -> bytes:
    """``NOOP``."""
    return b"NOOP\r\n"


def quit_() -> bytes:
    """``QUIT``."""
    return b"QUIT\r\n"


def starttls() -> bytes:
    """``STARTTLS``."""
    return b"STARTTLS\r\n"


def auth(mechanism: str, initial_response: str | None = None) -> bytes:
    """``AUTH mechanism [initial-response]``; the response is base64 already ("=" if empty)."""
    check_text(mechanism, "SASL mechanism")
    if re.fullmatch(r"[A-Z0-9_-]{1,20}", mechanism) is None:
        raise InvalidArgumentError(f"malformed SASL mechanism name: {mechanism!r}")
    if initial_response is None:
        return _line(f"AUTH {mechanism}")
    check_text(initial_response, "SASL response")
    if not initial_response.isascii():
        # It is base64 (or "="): anything else would fail to encode as ASCII.
        raise InvalidArgumentError("a SASL initial response must be base64 (ASCII)")
    return _line(f"AUTH {mechanism} {initial_response}")


def xtext(value: str) -> str:
    """Encode *value* as xtext (RFC 3461 §4): "+" "=" and non-printables become +XX.

    Used for ENVID and the address part of ORCPT.  Non-ASCII characters are
    encoded byte by byte from UTF-8.

    Raises:
        InvalidArgumentError: *value* holds a control character.
    """
    check_text(value, "xtext value")
    out = []
    for byte in value.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)
