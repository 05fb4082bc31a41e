"""Certificates for TLS tests: a trusted test CA, and the bad certificates
real servers present (self-signed, expired, issued for another name).

Made with trustme; the self-signed one with ``cryptography`` (trustme always
signs with a CA).  Contexts are built in memory, no files, except where a
test needs a CA file on disk.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smtpclient.tls import verifying_context

NAMES = ("mail.example.test", "localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Leaf:
    """A server certificate: PEM chain and key, ready for an SSLContext."""

    chain_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with _files(self.chain_pem, self.key_pem) as (cert, key):
            context.load_cert_chain(cert, key)
        return context


@contextmanager
def _files(*blobs: bytes) -> Iterator[list[str]]:
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for index, blob in enumerate(blobs):
            path = Path(directory) / f"{index}.pem"
            path.write_bytes(blob)
            paths.append(str(path))
        yield paths


class TestCA:
    """A CA the client is told to trust, and the certificates it issues."""

    __test__ = False

    def __init__(self) -> None:
        self.ca = trustme.CA(organization_name="smtpclient test CA")

    @property
    def pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def leaf(
        self,
        *names: str,
        common_name: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Leaf:
        cert = self.ca.issue_cert(
            *(names or NAMES),
            common_name=common_name or (names or NAMES)[0],
            organization_name="Example Mail",
            organization_unit_name="Mail",
            not_before=not_before,
            not_after=not_after,
        )
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return Leaf(chain, cert.private_key_pem.bytes())

    def expired(self) -> Leaf:
        now = datetime.datetime.now(datetime.UTC)
        return self.leaf(
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )

    def wrong_name(self) -> Leaf:
        return self.leaf("other.example.test")

    def client_context(self, **kwargs: object) -> ssl.SSLContext:
        """The library's verifying context, trusting only this CA."""
        return verifying_context(cadata=self.pem.decode("ascii"), **kwargs)  # type: ignore[arg-type]

    def write_ca_file(self, directory: Path) -> Path:
        path = directory / "ca.pem"
        path.write_bytes(self.pem)
        return path


def self_signed(name: str = "mail.example.test") -> Leaf:
    """A certificate that is its own issuer (no CA anyone trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Self Signed Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Leaf(cert.public_bytes(serialization.Encoding.PEM), key_pem)
