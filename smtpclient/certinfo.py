"""Read a certificate's subject, issuer and validity from its DER bytes.

Python's ``ssl`` decodes the peer certificate (``getpeercert()``) only when
it was verified, yet an unverified certificate is exactly the one worth
describing: OPPORTUNISTIC sessions with such certificates are common, and
"which certificate did that server show, who issued it, has it expired?" is
the question an operator asks.  ``cryptography`` would answer it but is not
a runtime dependency, and the stdlib's private decoder needs a temporary
file; the handful of DER fields needed here are simple to walk.

This is a reporting aid, not a validator: nothing here decides trust.  It
never raises on malformed input (``summarize`` returns None) and escapes
every control character, since the values end up in logs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CertificateSummary", "summarize"]

_SEQUENCE, _SET, _OID, _INTEGER = 0x30, 0x31, 0x06, 0x02
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION_TAG = 0xA0  # [0] EXPLICIT version, absent in v1 certificates

# Attribute types worth a short name (RFC 4514 §3, plus two common extras).
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
# Directory string types and how their bytes are encoded.
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString (in practice Latin-1)
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Malformed(Exception):
    pass


@dataclass(frozen=True)
class CertificateSummary:
    """The human-readable parts of a certificate.

    Attributes:
        subject, issuer: distinguished names as "CN=mx.example.com, O=Example"
            in the certificate's own order; None when empty.
        not_before, not_after: validity bounds in OpenSSL's format
            ("Jun  1 12:00:00 2030 GMT", as ``ssl.getpeercert()`` gives them,
            readable by ``ssl.cert_time_to_seconds``).
    """

    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None


def summarize(der: bytes | None) -> CertificateSummary | None:
    """Describe the X.509 certificate *der*; None if it cannot be read."""
    if not der:
        return None
    try:
        return _summarize(bytes(der))
    except (_Malformed, ValueError, IndexError):
        return None


def _summarize(der: bytes) -> CertificateSummary:
    tag, start, end = _header(der, 0)
    _expect(tag, _SEQUENCE)
    tag, start, end = _header(der, start)  # TBSCertificate
    _expect(tag, _SEQUENCE)
    fields = list(_children(der, start, end))
    if fields and fields[0][0] == _VERSION_TAG:
        fields = fields[1:]
    if len(fields) < 5:
        raise _Malformed
    (serial, _, _), _signature, issuer, validity, subject = fields[:5]
    _expect(serial, _INTEGER)
    for tag, _, _ in (issuer, validity, subject):
        _expect(tag, _SEQUENCE)
    times = list(_children(der, validity[1], validity[2]))
    if len(times) != 2:
        raise _Malformed
    return CertificateSummary(
        subject=_name(der, subject[1], subject[2]),
        issuer=_name(der, issuer[1], issuer[2]),
        not_before=_time(der, *times[0]),
        not_after=_time(der, *times[1]),
    )


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at *pos* (DER: definite lengths)."""
    if pos + 2 > len(data):
        raise _Malformed
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Malformed  # multi-byte tags never occur in the fields read here
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(data):
            raise _Malformed
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise _Malformed
    return tag, pos, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    pos = start
    while pos < end:
        tag, content, stop = _header(data, pos)
        if stop > end:
            raise _Malformed
        found.append((tag, content, stop))
        pos = stop
    return found


def _expect(tag: int, wanted: int) -> None:
    if tag != wanted:
        raise _Malformed


def _oid(raw: bytes) -> str:
    if not raw:
        raise _Malformed
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if raw[-1] & 0x80:
        raise _Malformed
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _name(data: bytes, start: int, end: int) -> str | None:
    parts = []
    for set_tag, set_start, set_end in _children(data, start, end):
        _expect(set_tag, _SET)
        for seq_tag, seq_start, seq_end in _children(data, set_start, set_end):
            _expect(seq_tag, _SEQUENCE)
            pair = _children(data, seq_start, seq_end)
            if len(pair) != 2:
                raise _Malformed
            (oid_tag, oid_start, oid_end), (value_tag, value_start, value_end) = pair
            _expect(oid_tag, _OID)
            oid = _oid(data[oid_start:oid_end])
            value = _string(value_tag, data[value_start:value_end])
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={value}")
    return ", ".join(parts) or None


def _string(tag: int, raw: bytes) -> str:
    codec = _STRING_CODECS.get(tag)
    if codec is None:
        return "#" + raw.hex()  # RFC 4514 §2.4: unknown types as hex
    text = raw.decode(codec, "replace")
    out = []
    for ch in text:
        if ch in ',+"\\<>;':
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _time(data: bytes, tag: int, start: int, end: int) -> str:
    text = data[start:end].decode("ascii")
    if not text.endswith("Z"):
        raise _Malformed
    digits = text[:-1]
    if tag == _UTC_TIME and len(digits) == 12:
        year = int(digits[:2])
        year += 2000 if year < 50 else 1900  # RFC 5280 §4.1.2.5.1
        rest = digits[2:]
    elif tag == _GENERALIZED_TIME and len(digits) == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        raise _Malformed
    if not rest.isdigit():
        raise _Malformed
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise _Malformed
    return f"{_MONTHS[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d} {year} GMT"
