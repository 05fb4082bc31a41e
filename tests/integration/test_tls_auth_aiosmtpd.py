"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd on 127.0.0.1, with
trustme certificates: what the session records, which name is verified,
the caller's own contexts and client certificates, and AUTH only over
verified TLS."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.smtpd import AiosmtpdServer
from servers.tlsfaults import Leaf, TestCA

import smtpclient
from smtpclient import OAuth2, Password, Session, TLSMode
from smtpclient.errors import (
    AuthenticationFailed,
    CertificateVerifyError,
    InsecureAuthError,
    ServerDisconnected,
    TLSError,
)
from smtpclient.tls import verifying_context

USERS = {"alice": "secret", "jörg": "pässwörd"}
BODY = b"Subject: tls\r\n\r\nhello over TLS\r\n"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def leaf(ca: TestCA) -> Leaf:
    return ca.leaf()  # mail.example.test, localhost, 127.0.0.1, ::1


class SNIRecorder:
    """Server context that notes the SNI name each client sent."""

    def __init__(self, leaf: Leaf, *, client_ca: TestCA | None = None) -> None:
        self.names: list[str | None] = []
        self.lock = threading.Lock()
        self.context = leaf.server_context()
        self.context.sni_callback = self._seen
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cadata=client_ca.pem.decode())

    def _seen(self, _sock: object, name: str | None, _context: object) -> None:
        with self.lock:
            self.names.append(name)


@pytest.fixture
def handshakes(leaf: Leaf) -> SNIRecorder:
    return SNIRecorder(leaf)


@pytest.fixture
def starttls_server(handshakes: SNIRecorder) -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering STARTTLS and (after it) AUTH PLAIN/LOGIN for USERS."""
    with AiosmtpdServer(tls_context=handshakes.context, users=USERS) as server:
        yield server


def send_one(session: Session) -> smtpclient.SendResult:
    return session.sendmail("a@example.com", ["b@example.com"], BODY)


def verified_starttls(server: AiosmtpdServer, ca: TestCA) -> Session:
    """A session to *server* as "localhost" over STARTTLS, verified against *ca*."""
    return Session.connect(
        "localhost", server.port, tls=TLSMode.STARTTLS, ssl_context=ca.client_context()
    )


# --- STARTTLS and implicit TLS -----------------------------------------------------------


def test_starttls_verifies_and_the_result_records_tls(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    with verified_starttls(starttls_server, ca) as session:
        assert "STARTTLS" not in session.extensions  # the post-TLS EHLO replaced it
        assert "AUTH" in session.extensions
        result = send_one(session)
    tls = result.tls
    assert tls is not None and tls is session.tls
    assert tls.verified is True and tls.verify_error is None
    assert tls.version in ("TLSv1.2", "TLSv1.3") and tls.cipher
    assert tls.peer_subject == "O=Example Mail, OU=Mail, CN=mail.example.test"
    assert tls.peer_issuer is not None and "smtpclient test CA" in tls.peer_issuer
    assert tls.not_after is not None and ssl.cert_time_to_seconds(tls.not_after) > 0
    assert tls.server_hostname == "localhost"
    assert tls.peer_certificate and tls.peer_certificate[0] == 0x30
    assert starttls_server.messages[0].content == BODY


def test_implicit_tls_from_the_first_byte(leaf: Leaf, ca: TestCA) -> None:
    # (aiosmtpd does not count implicit TLS as TLS for its own AUTH rule)
    with AiosmtpdServer(
        implicit_tls=leaf.server_context(), users=USERS, require_tls_for_auth=False
    ) as server:
        with Session.connect(
            "127.0.0.1", server.port, tls=TLSMode.IMPLICIT, ssl_context=ca.client_context()
        ) as session:
            session.login("alice", "secret")
            result = send_one(session)
    assert result.tls is not None and result.tls.verified
    assert result.tls.server_hostname == "127.0.0.1"  # checked against the IP entry
    assert server.messages[0].content == BODY


def test_an_ipv6_literal_is_verified_against_the_certificate(leaf: Leaf, ca: TestCA) -> None:
    with AiosmtpdServer(host="::1", implicit_tls=leaf.server_context()) as server:
        with Session.connect(
            "::1", server.port, tls=TLSMode.IMPLICIT, ssl_context=ca.client_context()
        ) as session:
            assert session.tls is not None and session.tls.verified
            assert session.tls.server_hostname == "::1"
            send_one(session)


def test_the_default_trust_is_certifi_so_a_private_ca_fails(
    starttls_server: AiosmtpdServer,
) -> None:
    with pytest.raises(CertificateVerifyError) as info:
        Session.connect("localhost", starttls_server.port, tls=TLSMode.STARTTLS)
    assert isinstance(info.value, ssl.SSLError) and info.value.is_transient
    assert "certificate" in str(info.value)


def test_sni_and_verification_use_server_hostname_not_the_ip(ca: TestCA) -> None:
    # The certificate names only mail.example.test; the socket goes to 127.0.0.1.
    recorder = SNIRecorder(ca.leaf("mail.example.test"))
    with AiosmtpdServer(tls_context=recorder.context) as server:
        with Session.connect(
            "127.0.0.1",
            server.port,
            tls=TLSMode.STARTTLS,
            ssl_context=ca.client_context(),
            server_hostname="mail.example.test",
        ) as session:
            assert session.tls is not None and session.tls.verified
            assert session.tls.server_hostname == "mail.example.test"
            result = send_one(session)
        assert result.tls is not None and result.tls.verified
        # Without the name, the IP is checked -- and this certificate does not hold it.
        with pytest.raises(CertificateVerifyError, match=r"127\.0\.0\.1|IP address mismatch"):
            Session.connect(
                "127.0.0.1", server.port, tls=TLSMode.STARTTLS, ssl_context=ca.client_context()
            )
    assert recorder.names[0] == "mail.example.test"
    assert recorder.names[1] is None  # no SNI for an address


def test_a_callers_own_ssl_context_is_used(starttls_server: AiosmtpdServer, ca: TestCA) -> None:
    own = ssl.create_default_context(cadata=ca.pem.decode())
    with Session.connect(
        "localhost", starttls_server.port, tls=TLSMode.STARTTLS, ssl_context=own
    ) as session:
        assert session.tls is not None and session.tls.verified
        send_one(session)


def test_a_callers_context_that_does_not_verify_is_reported_as_unverified(
    starttls_server: AiosmtpdServer,
) -> None:
    own = ssl.create_default_context()
    own.check_hostname = False
    own.verify_mode = ssl.CERT_NONE
    with Session.connect(
        "localhost", starttls_server.port, tls=TLSMode.STARTTLS, ssl_context=own
    ) as session:
        assert session.tls is not None and session.tls.verified is False
        with pytest.raises(InsecureAuthError):
            session.login("alice", "secret")


def test_a_ca_file_on_disk(starttls_server: AiosmtpdServer, ca: TestCA, tmp_path: Path) -> None:
    context = verifying_context(cafile=ca.write_ca_file(tmp_path))
    with Session.connect(
        "localhost", starttls_server.port, tls=TLSMode.STARTTLS, ssl_context=context
    ) as session:
        assert session.tls is not None and session.tls.verified


def test_a_client_certificate_is_presented(leaf: Leaf, ca: TestCA, tmp_path: Path) -> None:
    client_ca = TestCA()
    client = client_ca.leaf("client.example.test")
    (tmp_path / "client.pem").write_bytes(client.chain_pem)
    (tmp_path / "client.key").write_bytes(client.key_pem)
    recorder = SNIRecorder(leaf, client_ca=client_ca)  # the server demands a client certificate
    with AiosmtpdServer(tls_context=recorder.context) as server:
        context = ca.client_context(
            certfile=str(tmp_path / "client.pem"), keyfile=str(tmp_path / "client.key")
        )
        with Session.connect(
            "localhost", server.port, tls=TLSMode.STARTTLS, ssl_context=context
        ) as session:
            send_one(session)
        assert len(server.messages) == 1
        # Without one, the server ends the handshake; under TLS 1.3 the client
        # learns it on its first read after the handshake (an alert, or just
        # the close): transient, and nothing was sent.
        with pytest.raises((TLSError, ServerDisconnected)) as info:
            with verified_starttls(server, ca) as session:
                send_one(session)
        assert info.value.is_transient
        assert len(server.messages) == 1


# --- OPPORTUNISTIC -----------------------------------------------------------------------


def test_opportunistic_with_an_unverifiable_certificate_still_encrypts(
    starttls_server: AiosmtpdServer, handshakes: SNIRecorder
) -> None:
    # certifi does not know the test CA: verification fails, encryption does not.
    with Session.connect("localhost", starttls_server.port) as session:  # tls=None: OPPORTUNISTIC
        tls = session.tls
        assert tls is not None and tls.verified is False
        assert tls.verify_error is not None and "certificate" in tls.verify_error
        # Described although unverified: subject, issuer and expiry from the DER bytes.
        assert tls.peer_subject == "O=Example Mail, OU=Mail, CN=mail.example.test"
        assert tls.peer_issuer is not None and "smtpclient test CA" in tls.peer_issuer
        assert tls.not_after is not None
        with pytest.raises(InsecureAuthError) as info:
            session.login("alice", "secret")
        message = str(info.value)
        assert "not verified" in message and "ssl_context=" in message
        assert "allow_insecure_auth=True" in message
        result = send_one(session)
    assert result.tls is not None and result.tls.verified is False
    # A verifying handshake, then this one: two handshakes need two connections.
    assert handshakes.names == ["localhost", "localhost"]


def test_opportunistic_with_a_trusted_certificate_is_verified(
    starttls_server: AiosmtpdServer, ca: TestCA, handshakes: SNIRecorder
) -> None:
    with Session.connect(
        "localhost",
        starttls_server.port,
        tls=TLSMode.OPPORTUNISTIC,
        ssl_context=ca.client_context(),
    ) as session:
        assert session.tls is not None and session.tls.verified
        session.login("alice", "secret")
        send_one(session)
    assert handshakes.names == ["localhost"]


def test_opportunistic_without_starttls_stays_plaintext_and_refuses_auth() -> None:
    with AiosmtpdServer(users=USERS, require_tls_for_auth=False) as server:
        with Session.connect("127.0.0.1", server.port, tls=TLSMode.OPPORTUNISTIC) as session:
            assert session.tls is None
            with pytest.raises(InsecureAuthError) as info:
                session.login("alice", "secret")
            assert "did not offer STARTTLS" in str(info.value)
            assert "tls=TLSMode.STARTTLS" in str(info.value)
            result = send_one(session)
        assert result.tls is None


# --- AUTH --------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize(("user", "password"), list(USERS.items()))
def test_login_over_verified_tls(
    starttls_server: AiosmtpdServer, ca: TestCA, mechanism: str, user: str, password: str
) -> None:
    with verified_starttls(starttls_server, ca) as session:
        reply = session.login(user, password, mechanism=mechanism)
        assert reply.code == 235 and session.authenticated
        send_one(session)


def test_a_wrong_password_is_authentication_failed_without_the_password(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    with verified_starttls(starttls_server, ca) as session:
        with pytest.raises(AuthenticationFailed) as info:
            session.login("alice", "wr0ng-Passw0rd")
        assert info.value.reply is not None and info.value.reply.code == 535
        assert "wr0ng" not in str(info.value) and "wr0ng" not in repr(info.value)
        assert not session.authenticated
        session.login("alice", "secret")  # the session is still usable


def test_a_credentials_provider_is_called_only_when_auth_may_proceed(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    calls: list[str] = []

    def provider() -> Password:
        calls.append("called")
        return Password("alice", "secret")

    with Session.connect("localhost", starttls_server.port) as session:  # unverified
        with pytest.raises(InsecureAuthError):
            session.authenticate(provider)
    assert calls == []  # no secret fetched for a session that may not use it
    with verified_starttls(starttls_server, ca) as session:
        assert session.authenticate(provider).code == 235
        assert "secret" not in repr(session)
    assert calls == ["called"]


def test_plaintext_auth_only_when_explicitly_allowed() -> None:
    with AiosmtpdServer(users=USERS, require_tls_for_auth=False) as server:
        with Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE) as session:
            with pytest.raises(InsecureAuthError, match="allow_insecure_auth=True"):
                session.login("alice", "secret")
        with Session.connect(
            "127.0.0.1", server.port, tls=TLSMode.NONE, allow_insecure_auth=True
        ) as session:
            assert session.login("alice", "secret").code == 235


def test_send_logs_in_with_a_provider(starttls_server: AiosmtpdServer, ca: TestCA) -> None:
    result = smtpclient.send(
        BODY,
        host="localhost",
        port=starttls_server.port,
        tls=TLSMode.STARTTLS,
        ssl_context=ca.client_context(),
        credentials=lambda: Password("jörg", "pässwörd"),
        sender="a@example.com",
        recipients=["b@example.com"],
    )
    assert result.tls is not None and result.tls.verified


def test_a_token_never_goes_to_a_password_mechanism(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    with verified_starttls(starttls_server, ca) as session:
        with pytest.raises(smtpclient.errors.ExtensionNotSupported, match="OAUTHBEARER"):
            session.authenticate(OAuth2("alice", "token"))


def test_the_transcript_redacts_real_exchanges(
    starttls_server: AiosmtpdServer, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpclient")
    for mechanism in ("PLAIN", "LOGIN"):
        with verified_starttls(starttls_server, ca) as session:
            session.login("jörg", "pässwörd", mechanism=mechanism)
    text = caplog.text
    assert "AUTH PLAIN <redacted>" in text and "AUTH LOGIN" in text
    assert "pässwörd" not in text
    assert "cMOkc3N3w7ZyZA" not in text  # base64 of the password
    assert "STARTTLS" in text  # the transcript itself was captured
