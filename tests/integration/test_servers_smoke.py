"""The real-server fixtures work: proved with the stdlib (smtplib, dnspython),
so a failure here is about the fixtures, never about smtpclient itself."""

from __future__ import annotations

import smtplib
import ssl
import uuid

import dns.rdatatype
import dns.resolver
import pytest
from servers.certs import TestCertificates
from servers.dovecot import USERS, DovecotServer
from servers.knot import KnotServer
from servers.postfix import (
    DEFERRED_RECIPIENT,
    REJECTED_RECIPIENT,
    PostfixServer,
    strip_added_headers,
)


def make_message(recipient: str) -> bytes:
    # A leading dot and no Date/Message-ID header: what is stored must still
    # be exactly this (dot-unstuffed, nothing added but the trace headers).
    return (
        f"From: sender@example.test\r\nTo: {recipient}\r\n"
        f"Subject: smoke {uuid.uuid4().hex}\r\n\r\n"
        "first line\r\n.leading dot\r\nlast line\r\n"
    ).encode()


def find(stored: list[bytes], sent: bytes) -> bytes:
    """The stored message whose unique Subject matches ``sent``'s."""
    subject = next(line for line in sent.split(b"\r\n") if line.startswith(b"Subject:"))
    (match,) = [m for m in stored if subject in m]
    return match


@pytest.mark.postfix
def test_postfix_stores_what_was_sent(postfix: PostfixServer) -> None:
    postfix.clear_maildir()
    sent = make_message("bob@example.test")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("smtputf8") and client.has_extn("chunking")
        assert not client.has_extn("starttls") and not client.has_extn("auth")
        refused = client.sendmail("sender@example.test", ["bob@example.test"], sent)
    assert refused == {}
    (stored,) = postfix.maildir_messages(count=1)
    assert strip_added_headers(stored) == sent
    assert postfix.wait_queue_empty()
    assert "status=sent" in postfix.maillog()


@pytest.mark.postfix
def test_postfix_fixed_refusals(postfix: PostfixServer) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.ehlo()
        client.mail("sender@example.test")
        assert client.rcpt(REJECTED_RECIPIENT)[0] == 550
        assert client.rcpt(DEFERRED_RECIPIENT)[0] == 450
        assert client.rcpt("someone@elsewhere.test")[0] == 554  # no open relay
        assert client.rcpt("bob@example.test")[0] == 250
        client.rset()


@pytest.mark.postfix
@pytest.mark.dovecot
def test_postfix_auth_plain_after_starttls(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    server = postfix_tls_sasl
    server.clear_maildir()
    sent = make_message("alice@example.test")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # AUTH only after STARTTLS
        client.starttls(context=server_certs.client_context())
        client.ehlo()
        mechanisms = client.esmtp_features["auth"].split()
        assert set(mechanisms) >= {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}
        client.user, client.password = "alice@example.test", USERS["alice@example.test"]
        code, _ = client.auth("PLAIN", client.auth_plain)
        assert code == 235
        # Authenticated, so even a foreign domain is accepted (then refused
        # later by delivery, which this test does not wait for).
        client.sendmail("alice@example.test", ["alice@example.test"], sent)
    (stored,) = server.maildir_messages(count=1)
    assert strip_added_headers(stored) == sent


@pytest.mark.postfix
@pytest.mark.dovecot
def test_postfix_implicit_tls_and_wrong_password(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    server = postfix_tls_sasl
    assert server.implicit_port is not None
    context = server_certs.client_context()
    with smtplib.SMTP_SSL(server.host, server.implicit_port, context=context, timeout=10) as client:
        client.ehlo()
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in {"TLSv1.2", "TLSv1.3"}
        client.user, client.password = "alice@example.test", "not the password"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth("PLAIN", client.auth_plain)
        assert refused.value.smtp_code == 535


@pytest.mark.dovecot
def test_dovecot_lmtp_over_unix_socket(dovecot: DovecotServer) -> None:
    dovecot.clear_messages("bob@example.test")
    sent = make_message("bob@example.test")
    # One recipient per transaction: smtplib reads only the first of LMTP's
    # per-recipient replies to DATA.
    with smtplib.LMTP(str(dovecot.lmtp_socket), timeout=10) as client:
        client.ehlo()
        assert client.sendmail("sender@example.test", ["bob@example.test"], sent) == {}
    (stored,) = dovecot.messages("bob@example.test", count=1)
    assert strip_added_headers(stored) == sent


@pytest.mark.dovecot
def test_dovecot_lmtp_over_tcp_refuses_unknown_user(dovecot: DovecotServer) -> None:
    with smtplib.LMTP(dovecot.lmtp_host, dovecot.lmtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("sender@example.test")
        assert client.rcpt("nobody@example.test")[0] == 550
        assert client.rcpt("alice@example.test")[0] == 250
        client.rset()


@pytest.mark.knot
def test_knot_answers_mx(knot: KnotServer) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [knot.host]
    resolver.port = knot.port
    resolver.lifetime = 5.0
    answer = resolver.resolve("multi.example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.multi.example.test."),
        (20, "mx2a.multi.example.test."),
        (20, "mx2b.multi.example.test."),
        (30, "mx3.multi.example.test."),
    ]
    (null_mx,) = resolver.resolve("nullmx.example.test", "MX")
    assert (null_mx.preference, null_mx.exchange.to_text()) == (0, ".")
    hosts = resolver.resolve("multihomed.example.test", "A")
    assert sorted(r.to_text() for r in hosts) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert resolver.resolve("multihomed.example.test", "AAAA")[0].to_text() == "::1"
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("does-not-exist.example.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("implicit.example.test", dns.rdatatype.MX)
