"""TLS policy: the four modes, verifying contexts, and what a handshake yielded.

Defaults are the safe ones (RFC 8314, RFC 8997): certificates verified
against certifi's CA bundle, host names checked, TLS 1.2 or newer.  The
certificate is checked against the host *name* (``server_hostname``), also
when the socket was opened to a pre-resolved IP address.
"""

from __future__ import annotations

import enum
import functools
import os
import ssl
import threading
from dataclasses import dataclass, field

from smtpclient.certinfo import CertificateSummary, summarize

__all__ = [
    "TLSInfo",
    "TLSMode",
    "default_mode",
    "shared_verifying_context",
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
    cafile: str | os.PathLike[str] | None = None,
    capath: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    password: str | None = None,
) -> ssl.SSLContext:
    """A client context that verifies: CERT_REQUIRED, host name checked, TLS
    1.2 minimum, trusting certifi's CA bundle -- or, when *cafile*, *capath*
    or *cadata* is given, only those CAs (a private CA should not widen
    into "any public CA too").  *certfile*/*keyfile* add a client certificate.

    Raises:
        OSError, ssl.SSLError: a file is missing or not a certificate/key.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996, RFC 8997
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if cafile is None and capath is None and cadata is None:
        import certifi  # noqa: PLC0415 (only when a context is built: start-up stays light)

        context.load_verify_locations(cafile=certifi.where())
    else:
        context.load_verify_locations(cafile=cafile, capath=capath, cadata=cadata)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    return context


_shared_lock = threading.Lock()
_shared: ssl.SSLContext | None = None


def shared_verifying_context() -> ssl.SSLContext:
    """The process's one ``verifying_context()``, used when the caller gives
    no ``ssl_context``: loading certifi's bundle costs about 20 ms, and TLS
    sessions resume only with the context that made them (see tlsresume).

    Internal: it is shared by every such connection, so it is never handed
    to callers (who may change a context); ``verifying_context()`` still
    returns a new one each call.

    Raises:
        OSError, ssl.SSLError: certifi's bundle cannot be loaded.
    """
    global _shared  # noqa: PLW0603 (one lazily built value per process)
    context = _shared
    if context is None:
        with _shared_lock:
            if _shared is None:
                _shared = verifying_context()
            context = _shared
    return context


def unverified_context(base: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A context that encrypts without verifying: the second try of
    OPPORTUNISTIC mode after a certificate failed verification.

    It keeps *base*'s protocol bounds (never below TLS 1.2); a client
    certificate loaded into *base* cannot be copied (``ssl`` offers no way),
    so a caller who needs one with unverifiable servers passes a
    non-verifying context of their own.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    minimum = base.minimum_version if base is not None else ssl.TLSVersion.TLSv1_2
    if minimum in (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED):
        minimum = ssl.TLSVersion.TLSv1_2
    context.minimum_version = max(minimum, ssl.TLSVersion.TLSv1_2)
    if base is not None and base.maximum_version is not ssl.TLSVersion.MAXIMUM_SUPPORTED:
        context.maximum_version = base.maximum_version
    return context


@dataclass(frozen=True)
class TLSInfo:
    """What the TLS handshake produced.

    Attributes:
        version: protocol version, e.g. "TLSv1.3".
        cipher: cipher suite name.
        verified: True when the certificate chain and host name were verified.
        peer_subject: the certificate's subject as "CN=mx.example.com, O=...",
            also for an unverified certificate (read from its DER bytes).
        peer_issuer: the issuer, formatted the same way.
        not_before, not_after: the validity period as OpenSSL prints it
            ("Jun  1 12:00:00 2030 GMT"; ``ssl.cert_time_to_seconds`` reads it).
        server_hostname: the name that was verified (or would have been).
        verify_error: why verification failed, when an OPPORTUNISTIC session
            fell back to an unverified handshake (e.g. "certificate has expired").
        peer_certificate: the certificate's DER bytes, for tools that decode it.
        resumed: True when the handshake resumed an earlier TLS session of
            this process (same server name, host, port and context; see
            ``smtpclient.tlsresume``); the certificate fields then describe
            the certificate verified by that earlier handshake.
    """

    version: str
    cipher: str
    verified: bool
    peer_subject: str | None = None
    peer_issuer: str | None = None
    not_after: str | None = None
    server_hostname: str | None = None
    peer_certificate: bytes | None = field(default=None, repr=False)
    not_before: str | None = None
    verify_error: str | None = None
    resumed: bool = False

    def __str__(self) -> str:
        state = "verified" if self.verified else "NOT verified"
        if self.verify_error:
            state += f" ({self.verify_error})"
        return f"{self.version} {self.cipher}, certificate {state}"


@functools.lru_cache(maxsize=32)
def _summary(der: bytes) -> CertificateSummary | None:
    """``summarize``, remembered: a client reconnecting to the same servers
    sees the same few certificates (the summary is a frozen value)."""
    return summarize(der)


def tls_info(
    sock: ssl.SSLSocket,
    *,
    verified: bool,
    server_hostname: str | None,
    verify_error: str | None = None,
) -> TLSInfo:
    """Describe an established TLS connection (the certificate is described
    whether or not it was verified)."""
    cipher = sock.cipher()
    der = sock.getpeercert(binary_form=True)
    summary = _summary(der) if der else None
    return TLSInfo(
        version=sock.version() or "",
        cipher=cipher[0] if cipher else "",
        verified=verified,
        peer_subject=summary.subject if summary else None,
        peer_issuer=summary.issuer if summary else None,
        not_after=summary.not_after if summary else None,
        server_hostname=server_hostname,
        peer_certificate=der,
        not_before=summary.not_before if summary else None,
        verify_error=verify_error,
        resumed=bool(sock.session_reused),
    )
