"""Throwaway TLS certificates for the test servers, made with trustme.

One CA signs a server certificate valid for every name the tests connect
with (localhost, 127.0.0.1, ::1, mail.example.test), written to PEM files
because Postfix and Dovecot read certificates from files.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "mail.example.test")


@dataclass(frozen=True)
class TestCertificates:
    """A CA and one server certificate on disk.

    ``cert_file`` holds the leaf followed by the chain, ``key_file`` the
    private key, ``ca_file`` the CA certificate a client must trust.
    """

    __test__ = False  # not a pytest test class despite the name

    ca: trustme.CA
    cert_file: Path
    key_file: Path
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_test_certificates(
    directory: str | os.PathLike[str], names: tuple[str, ...] = SERVER_NAMES
) -> TestCertificates:
    """Create a CA and a server certificate for ``names`` under ``directory``.

    The files are world-readable: Postfix's smtpd reads its key after
    dropping to the postfix user, so a root-only key would break STARTTLS.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*names)
    cert_file = directory / "server-cert.pem"
    key_file = directory / "server-key.pem"
    ca_file = directory / "ca.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_file.write_bytes(leaf.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    for path in (cert_file, key_file, ca_file):
        path.chmod(0o644)
    return TestCertificates(ca, cert_file, key_file, ca_file)
