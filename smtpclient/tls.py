"""TLS policy: the four modes, verifying contexts, and what a handshake yielded.

Defaults are the safe ones (RFC 8314, RFC 8997): certificates verified
against certifi's CA bundle, host names checked, TLS 1.2 or newer.  The
certificate is checked against the host *name* (``server_hostname``), also
when the socket was opened to a pre-resolved IP address.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from typing import Any

import certifi

__all__ = [
    "TLSInfo",
    "TLSMode",
    "default_mode",
    "tls_info",
    "unverified_context",
    "verifying_context",
]


class TLSMode(enum.Enum):
    """How a session uses TLS.

    * ``NONE`` -- never (plaintext).
    * ``OPPORTUNISTIC`` -- Postfix's ``may`` (RFC 7435): STARTTLS when offered;
      the certificate is verified and the outcome recorded, but an
      unverifiable one still gets encryption rather than plaintext.
    * ``STARTTLS`` -- STARTTLS is required and the certificate must verify.
    * ``IMPLICIT`` -- TLS from the first byte (RFC 8314, port 465), verified.
    """

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


SUBMISSIONS_PORT = 465


def default_mode(port: int) -> TLSMode:
    """The mode used when the caller gives none: port 465 is implicit TLS,
    anything else opportunistic STARTTLS."""
    return TLSMode.IMPLICIT if port == SUBMISSIONS_PORT else TLSMode.OPPORTUNISTIC


def verifying_context(
    *,
    cafile: str | None = None,
    capath: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    password: str | None = None,
) -> ssl.SSLContext:
    """A client context that verifies: certifi's CAs (or *cafile*/*capath*),
    CERT_REQUIRED, host name checked, TLS 1.2 minimum; optionally a client
    certificate (*certfile*, *keyfile*)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if cafile is None and capath is None:
        context.load_verify_locations(cafile=certifi.where())
    else:
        context.load_verify_locations(cafile=cafile, capath=capath)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    return context


def unverified_context(base: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A context that encrypts without verifying: the second try of
    OPPORTUNISTIC mode after a certificate failed verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    minimum = base.minimum_version if base is not None else ssl.TLSVersion.TLSv1_2
    context.minimum_version = max(minimum, ssl.TLSVersion.TLSv1_2)
    return context


@dataclass(frozen=True)
class TLSInfo:
    """What the TLS handshake produced.

    Attributes:
        version: protocol version, e.g. "TLSv1.3".
        cipher: cipher suite name.
        verified: True when the certificate chain and host name were verified.
        peer_subject: the certificate's subject as "CN=mx.example.com, O=...",
            when verified (an unverified certificate is not decoded).
        peer_issuer: the issuer, formatted the same way.
        not_after: the certificate's expiry as OpenSSL prints it.
        server_hostname: the name that was verified (or would have been).
    """

    version: str
    cipher: str
    verified: bool
    peer_subject: str | None = None
    peer_issuer: str | None = None
    not_after: str | None = None
    server_hostname: str | None = None
    peer_certificate: bytes | None = None  # DER, for tools that decode it


def _format_name(name: Any) -> str | None:
    if not name:
        return None
    parts = []
    for rdn in name:
        for key, value in rdn:
            short = {
                "commonName": "CN",
                "organizationName": "O",
                "countryName": "C",
                "organizationalUnitName": "OU",
                "localityName": "L",
                "stateOrProvinceName": "ST",
            }.get(key, key)
            parts.append(f"{short}={value}")
    return ", ".join(parts)


def tls_info(sock: ssl.SSLSocket, *, verified: bool, server_hostname: str | None) -> TLSInfo:
    """Describe an established TLS connection."""
    cipher = sock.cipher()
    cert: dict[str, Any] = dict(sock.getpeercert() or {}) if verified else {}
    return TLSInfo(
        version=sock.version() or "",
        cipher=cipher[0] if cipher else "",
        verified=verified,
        peer_subject=_format_name(cert.get("subject")),
        peer_issuer=_format_name(cert.get("issuer")),
        not_after=cert.get("notAfter"),
        server_hostname=server_hostname,
        peer_certificate=sock.getpeercert(binary_form=True),
    )
