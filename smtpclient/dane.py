"""DANE for SMTP (RFC 7672, with RFC 6698 and RFC 7671): TLSA records decide
how a mail host must be reached and which certificate it must show.

Only a resolver the caller trusts to validate DNSSEC counts
(``Resolver(..., dnssec=True)``): its AD bit is the only evidence that an
answer is authentic.  ``host_policy()`` is the per-host decision:

===============================================  ==========================================
what DNS said                                     what the connection must do
===============================================  ==========================================
resolver not validating; MX or address insecure   nothing from DANE (the usual TLS policy)
TLSA: secure "no such record"                     nothing from DANE
TLSA lookup failed (SERVFAIL: bogus, timeout)     do not use this host (defer, next MX)
TLSA records, none usable (§3.1: PKIX-TA/EE,      STARTTLS mandatory, unauthenticated
unknown selector or matching type, bad length)    (RFC 7672 §2.2: never plaintext)
usable TLSA records                               STARTTLS mandatory, certificate must match
===============================================  ==========================================

``open_session()`` then connects as the decision demands and authenticates:

* DANE-EE (``3 x x``): the leaf certificate (or its public key) must match;
  names and dates are ignored (RFC 7672 §3.1.1).
* DANE-TA (``2 x x``): a certificate the server presents (or the full
  certificate of a ``2 0 0`` record) must match, and the chain must verify
  up to it for the MX host name (RFC 7672 §3.1.2, §3.2).  The stdlib cannot
  verify a chain against an anchor after a handshake, so this is a second
  handshake on a new connection with a context whose only trust anchor is
  the matched certificate (``VERIFY_X509_PARTIAL_CHAIN``: an intermediate
  may be the anchor) and whose host name check is the MX name.  With only
  ``2 0 0`` records that is the first and only handshake.

SNI is the MX host name.  Every failure is a ``DANEError`` (transient: the
recipient is deferred, RFC 7672 §2.2) whose message names DANE and TLSA.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import ssl
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smtpclient.dnslookup import DNSError, Records
from smtpclient.errors import DANEError, InvalidAddressError, TLSError  # DANEError re-exported
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage

if TYPE_CHECKING:
    from smtpclient.resolver import Resolver
    from smtpclient.session import Session

__all__ = [
    "DANEError",
    "DANEStatus",
    "HostPolicy",
    "TLSARecord",
    "host_policy",
    "open_session",
    "spki_of",
    "tlsa_name",
]

log = logging.getLogger(__name__)

PKIX_TA, PKIX_EE, DANE_TA, DANE_EE = 0, 1, 2, 3  # certificate usages (RFC 7218 names)
FULL_CERT, SPKI = 0, 1  # selectors
EXACT, SHA256, SHA512 = 0, 1, 2  # matching types
_DIGEST_SIZES = {SHA256: 32, SHA512: 64}


def _error(message: str, host: str) -> DANEError:
    return DANEError(
        message, reply=Reply.build(451, message, "4.7.5"), stage=Stage.STARTTLS, host=host
    )


# --- records (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class TLSARecord:
    """One TLSA record: ``usage selector mtype data``."""

    usage: int
    selector: int
    mtype: int
    data: bytes = field(repr=False)

    @property
    def usable(self) -> bool:
        """Usable for SMTP (RFC 7672 §3.1): DANE-TA or DANE-EE, a known
        selector and matching type, a digest of the right length, and a
        full certificate that is one."""
        if self.usage not in (DANE_TA, DANE_EE) or self.selector not in (FULL_CERT, SPKI):
            return False
        if self.mtype == EXACT:
            return spki_of(self.data) is not None if self.selector == FULL_CERT else bool(self.data)
        return len(self.data) == _DIGEST_SIZES.get(self.mtype, -1)

    def matches(self, certificate: bytes) -> bool:
        """Does *certificate* (DER) match this record's selector and data?
        A certificate whose public key cannot be found matches nothing."""
        if self.selector == SPKI:
            selected = spki_of(certificate)
            if selected is None:
                return False
        else:
            selected = certificate
        if self.mtype == SHA256:
            return hashlib.sha256(selected).digest() == self.data
        if self.mtype == SHA512:
            return hashlib.sha512(selected).digest() == self.data
        return self.mtype == EXACT and selected == self.data

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def usable_records(values: Iterable[tuple[int, int, int, bytes]]) -> tuple[TLSARecord, ...]:
    """The records of a TLSA answer that SMTP can use (RFC 7672 §3.1)."""
    records = (TLSARecord(*value) for value in values)
    return tuple(record for record in records if record.usable)


def _der_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at *pos*."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def spki_of(certificate: bytes) -> bytes | None:
    """The DER SubjectPublicKeyInfo of a DER certificate (RFC 5280 §4.1),
    None when the bytes are not a certificate."""
    try:
        tag, start, _ = _der_header(certificate, 0)  # Certificate
        if tag != 0x30:
            return None
        tag, pos, end = _der_header(certificate, start)  # TBSCertificate
        if tag != 0x30:
            return None
        fields: list[tuple[int, int, int]] = []
        while pos < end and len(fields) < 7:
            tag, _, after = _der_header(certificate, pos)
            fields.append((tag, pos, after))
            pos = after
        if fields and fields[0][0] == 0xA0:  # [0] version: absent in v1 certificates
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
        if len(fields) < 6 or fields[5][0] != 0x30:
            return None
        return certificate[fields[5][1] : fields[5][2]]
    except ValueError:
        return None


def tlsa_name(host: str, port: int = 25) -> str:
    """Where a host's TLSA records are: ``_25._tcp.mx.example.com``."""
    return f"_{port}._tcp.{host}"


# --- the per-host decision ------------------------------------------------------------


class DANEStatus(enum.Enum):
    """What DANE says about one mail host."""

    NOT_VALIDATED = "not checked"  # Resolver(dnssec=False): DANE is off
    INSECURE = "insecure"  # MX or address records not signed: the usual policy
    NO_TLSA = "no TLSA records"  # secure denial: the usual policy
    UNUSABLE = "unusable TLSA records"  # STARTTLS mandatory, no authentication
    ACTIVE = "active"  # STARTTLS mandatory, certificate must match
    FAILED = "TLSA lookup failed"  # do not use this host

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HostPolicy:
    """What the connection to one mail host must do under DANE.

    Attributes:
        host: the MX host name (SNI and, for DANE-TA, the name checked).
        status: ``DANEStatus``.
        records: the usable TLSA records (ACTIVE only).
        reason: why, in one line (the lookup failure for FAILED).
        name: where the TLSA records are (``_25._tcp.<host>``).
    """

    host: str
    status: DANEStatus
    records: tuple[TLSARecord, ...] = ()
    reason: str = ""
    name: str = ""

    @property
    def applies(self) -> bool:
        """True when DANE decides this host's connection (STARTTLS mandatory,
        or the host must not be used at all)."""
        return self.status in (DANEStatus.UNUSABLE, DANEStatus.ACTIVE, DANEStatus.FAILED)


def _secure(resolver: Resolver, name: str, rdtypes: Iterable[str]) -> bool:
    return all(resolver.lookup(name, rdtype).secure for rdtype in rdtypes)


def host_policy(resolver: Resolver, domain: str, host: str, port: int = 25) -> HostPolicy:
    """Decide what DANE demands for mail *host* of *domain* on *port*
    (RFC 7672 §2.2).  Never raises for DNS trouble: a failed lookup that
    could hide TLSA records gives ``DANEStatus.FAILED``."""
    name = tlsa_name(host, port)
    if not resolver.dnssec or host.startswith("[") or domain.startswith("["):
        return HostPolicy(host, DANEStatus.NOT_VALIDATED, name=name)
    address_types = {"any": ("A", "AAAA"), "ipv4": ("A",), "ipv6": ("AAAA",)}[resolver.family]
    try:
        # Postfix's rule: an MX name that is not authentic cannot authenticate
        # its host; the domain's own address records stand in for an implicit MX.
        if not resolver.lookup(domain, "MX").secure or not _secure(resolver, host, address_types):
            reason = "MX or address records unsigned"
            return HostPolicy(host, DANEStatus.INSECURE, reason=reason, name=name)
        answer: Records = resolver.lookup(name, "TLSA")
    except (DNSError, InvalidAddressError) as exc:
        reason = f"DANE: TLSA lookup for {name} failed: {exc}"
        return HostPolicy(host, DANEStatus.FAILED, reason=reason, name=name)
    if not answer.secure:
        reason = f"TLSA records at {name} unsigned"
        return HostPolicy(host, DANEStatus.INSECURE, reason=reason, name=name)
    if not answer.values:
        return HostPolicy(host, DANEStatus.NO_TLSA, reason=f"no TLSA records at {name}", name=name)
    usable = usable_records(answer.values)
    if not usable:
        reason = f"{len(answer.values)} TLSA records at {name}, none usable"
        return HostPolicy(host, DANEStatus.UNUSABLE, reason=reason, name=name)
    reason = f"{len(usable)} usable TLSA records at {name}"
    return HostPolicy(host, DANEStatus.ACTIVE, usable, reason, name)


# --- connecting and authenticating ----------------------------------------------------


class _ChainSocket(ssl.SSLSocket):
    """An SSLSocket that can say which certificates the server presented."""

    def presented_chain(self) -> tuple[bytes, ...]:
        """The server's certificates as sent (leaf first), DER; () when the
        runtime cannot tell.  Python 3.13 has a public method; 3.10-3.12
        have the same method only on the C object inside the socket."""
        public = getattr(ssl.SSLSocket, "get_unverified_chain", None)
        try:
            if public is not None:
                return tuple(bytes(der) for der in public(self))
            chain = self._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
            return tuple(ssl.PEM_cert_to_DER_cert(cert.public_bytes()) for cert in chain or ())
        except (AttributeError, ValueError, ssl.SSLError):
            return ()


class _RecordingContext(ssl.SSLContext):
    """A client context that encrypts without PKIX verification (DANE does
    the authenticating) and remembers the socket it wrapped last."""

    sslsocket_class = _ChainSocket
    last: weakref.ref[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.last = weakref.ref(sock)
        return sock

    def presented_chain(self) -> tuple[bytes, ...]:
        sock = self.last() if hasattr(self, "last") else None
        return sock.presented_chain() if isinstance(sock, _ChainSocket) else ()


def _client_context(cls: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    context = cls(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def anchor_context(anchors: Iterable[bytes], host: str) -> ssl.SSLContext:
    """A context that trusts only *anchors* (DER certificates; an
    intermediate may be one) and checks the host name.

    Raises:
        DANEError: OpenSSL cannot read an anchor.
    """
    context = _client_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_verify_locations(cadata=b"".join(anchors))
    except (ssl.SSLError, ValueError) as exc:
        raise _error(
            f"DANE: a TLSA trust anchor of {host} is not a usable certificate", host
        ) from exc
    return context


def _verified(session: Session, how: str) -> Session:
    if session.tls is not None:
        session.tls = replace(session.tls, verified=True, verify_error=None)
    log.info("%s: DANE authenticated (%s)", session.host, how)
    return session


def _discard(session: Session) -> None:
    if session.usable:
        session.quit()
    else:
        session.close()


def open_session(policy: HostPolicy, connect: Callable[[ssl.SSLContext], Session]) -> Session:
    """Open and authenticate a session to ``policy.host`` as DANE demands.

    *connect(context)* must make a NEW connection each time it is called
    and open a session with ``tls=TLSMode.STARTTLS``, *context* and
    ``server_hostname=policy.host``.  The returned session has
    ``tls.verified`` True when the certificate matched (False for
    ``DANEStatus.UNUSABLE``: encrypted, not authenticated).

    Raises:
        DANEError: the lookup had failed, STARTTLS was not offered or
            failed, or the certificate matched no usable TLSA record.
        SMTPClientError: anything else *connect* raised (greeting, EHLO...).
    """
    host, records = policy.host, policy.records
    if policy.status is DANEStatus.FAILED:
        raise _error(policy.reason or f"DANE: TLSA lookup for {host} failed", host)
    ta_certs = [r.data for r in records if (r.usage, r.selector, r.mtype) == (DANE_TA, 0, EXACT)]
    if records and len(ta_certs) == len(records):
        # Only full trust-anchor certificates: one verifying handshake does it all.
        session = _handshake(connect, anchor_context(ta_certs, host), host)
        return _verified(session, "DANE-TA, 2 0 0")
    context = _client_context(_RecordingContext)
    session = _handshake(connect, context, host)
    if policy.status is not DANEStatus.ACTIVE:
        return session
    leaf = session.tls.peer_certificate if session.tls is not None else None
    if leaf and any(r.usage == DANE_EE and r.matches(leaf) for r in records):
        return _verified(session, "DANE-EE")
    presented = context.presented_chain() if isinstance(context, _RecordingContext) else ()
    anchors = ta_certs + [
        cert for cert in presented if any(r.usage == DANE_TA and r.matches(cert) for r in records)
    ]
    if not anchors:
        _discard(session)
        raise _error(
            f"DANE: the certificate of {host} matches none of the {len(records)} usable "
            f"TLSA records at {policy.name}",
            host,
        )
    # DANE-TA: verify the chain to the matched anchor and the name, on a new connection.
    _discard(session)
    session = _handshake(connect, anchor_context(anchors, host), host)
    return _verified(session, "DANE-TA")


def _handshake(
    connect: Callable[[ssl.SSLContext], Session], context: ssl.SSLContext, host: str
) -> Session:
    try:
        return connect(context)
    except TLSError as exc:  # not offered, handshake failed, chain or name not verified
        message = f"DANE: the TLSA records of {host} require authenticated TLS: {exc}"
        raise _error(message, host) from exc
