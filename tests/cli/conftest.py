"""Servers for the CLI tests (the CLI itself always runs as a subprocess)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers.certs import TestCertificates
from servers.smtpd import AiosmtpdServer

from cli.helpers import server_context

USER = "carol"
PASSWORD = "Corr3ct-H0rse-battery"  # long and unusual: easy to spot if it leaked


@pytest.fixture
def tls_smtpd(server_certs: TestCertificates) -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering STARTTLS (the test CA's certificate) and AUTH after it."""
    context = server_context(server_certs.cert_file, server_certs.key_file)
    with AiosmtpdServer(tls_context=context, users={USER: PASSWORD}) as server:
        yield server
