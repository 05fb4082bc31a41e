"""Fixtures for the smtplib compatibility tests: aiosmtpd servers with TLS and AUTH."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from servers.smtpd import AiosmtpdServer

from .twin import USERS, TLSFiles


@pytest.fixture(scope="session")
def tls() -> TLSFiles:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    return TLSFiles(ca, server_context)


@pytest.fixture
def auth_server() -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering AUTH PLAIN/LOGIN without TLS (as smtplib allows)."""
    with AiosmtpdServer(users=dict(USERS), require_tls_for_auth=False) as server:
        yield server


@pytest.fixture
def tls_server(tls: TLSFiles) -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering STARTTLS with a certificate from the test CA."""
    with AiosmtpdServer(tls_context=tls.server_context) as server:
        yield server


@pytest.fixture
def implicit_tls_server(tls: TLSFiles) -> Iterator[AiosmtpdServer]:
    """aiosmtpd speaking TLS from the first byte (for SMTP_SSL)."""
    with AiosmtpdServer(implicit_tls=tls.server_context) as server:
        yield server
