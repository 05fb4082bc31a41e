"""What ``probe`` says about a server's certificate.

``TLSInfo`` already carries the subject, issuer and validity (decoded by
the library, verified or not).  With ``cryptography`` installed (the
``cli`` extra) the DER bytes are decoded further: the names the
certificate is valid for (subjectAltName), its key and signature
algorithm, its serial number.  Without it, those lines say they were not
decoded and how to get them.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field

from smtpclient.tls import TLSInfo

__all__ = ["CertificateDetails", "describe_certificate"]

CLI_EXTRA_HINT = 'install the "cli" extra to decode them: pip install "smtpclient[cli]"'


@dataclass(frozen=True)
class CertificateDetails:
    """The certificate as ``probe`` prints it."""

    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    days_left: int | None
    names: tuple[str, ...] | None = None  # None: not decoded
    key: str | None = None
    signature: str | None = None
    serial: str | None = None
    decoded_by: str = "smtpclient"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs for printing."""
        out = [
            ("subject", self.subject or "(empty)"),
            ("issuer", self.issuer or "(empty)"),
            ("valid from", self.not_before or "?"),
            ("expires", _expiry(self.not_after, self.days_left)),
        ]
        if self.names is not None:
            out.append(("names", ", ".join(self.names) or "(no subjectAltName)"))
        else:
            out.append(("names", f"not decoded ({CLI_EXTRA_HINT})"))
        for label, value in (("key", self.key), ("signature", self.signature)):
            if value:
                out.append((label, value))
        if self.serial:
            out.append(("serial", self.serial))
        return out


def _expiry(not_after: str | None, days_left: int | None) -> str:
    if not not_after:
        return "?"
    if days_left is None:
        return not_after
    if days_left < 0:
        return f"{not_after} (EXPIRED {-days_left} days ago)"
    return f"{not_after} (in {days_left} days)"


def _days_left(not_after: str | None) -> int | None:
    if not not_after:
        return None
    try:
        return int((ssl.cert_time_to_seconds(not_after) - time.time()) // 86400)
    except ValueError:
        return None


def describe_certificate(info: TLSInfo) -> CertificateDetails | None:
    """Everything that can be read from the server's certificate; None if it sent none."""
    if info.peer_certificate is None and info.peer_subject is None:
        return None
    base = CertificateDetails(
        subject=info.peer_subject,
        issuer=info.peer_issuer,
        not_before=getattr(info, "not_before", None),
        not_after=info.not_after,
        days_left=_days_left(info.not_after),
    )
    if info.peer_certificate is None:
        return base
    try:
        from cryptography import x509  # noqa: PLC0415 - the optional "cli" extra
    except ImportError:
        return base
    try:
        cert = x509.load_der_x509_certificate(info.peer_certificate)
    except ValueError:
        return base
    return CertificateDetails(
        subject=cert.subject.rfc4514_string() or base.subject,
        issuer=cert.issuer.rfc4514_string() or base.issuer,
        not_before=base.not_before or cert.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT"),
        not_after=base.not_after or cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
        days_left=base.days_left
        if base.days_left is not None
        else int((cert.not_valid_after_utc.timestamp() - time.time()) // 86400),
        names=_names(cert),
        key=_key(cert),
        signature=_signature(cert),
        serial=f"{cert.serial_number:x}",
        decoded_by="cryptography",
    )


def _names(cert: object) -> tuple[str, ...]:
    from cryptography import x509  # noqa: PLC0415

    assert isinstance(cert, x509.Certificate)
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names = extension.value
    return tuple(
        [str(n) for n in names.get_values_for_type(x509.DNSName)]
        + [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    )


def _signature(cert: object) -> str:
    from cryptography import x509  # noqa: PLC0415

    assert isinstance(cert, x509.Certificate)
    digest = cert.signature_hash_algorithm
    return (
        f"{digest.name} ({cert.signature_algorithm_oid.dotted_string})"
        if digest
        else (cert.signature_algorithm_oid.dotted_string)
    )


def _key(cert: object) -> str:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa  # noqa: PLC0415

    assert isinstance(cert, x509.Certificate)
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__
