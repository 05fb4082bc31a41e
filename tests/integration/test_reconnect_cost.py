"""Reopening a connection is cheap: TLS sessions resume (aiosmtpd, and Postfix
with its TLS 1.3 tickets) only for the same server name, host, port and
context, and SCRAM's derived keys are reused for a repeat login to Dovecot
(through Postfix) and dropped when a login fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers.certs import TestCertificates
from servers.dovecot import DovecotServer
from servers.postfix import PostfixServer
from servers.smtpd import AiosmtpdServer
from servers.tlsfaults import Leaf, TestCA

import smtpclient
import smtpclient.tlsresume
from smtpclient import Session, TLSMode
from smtpclient.errors import AuthenticationFailed
from smtpclient.scramcache import scram_keys
from smtpclient.tlsresume import sessions

BODY = b"Subject: again\r\n\r\nhello again\r\n"
SCRAM_USER = "sam@example.test"
ITERATIONS = 4096
PBKDF2 = hashlib.pbkdf2_hmac  # not the counted one (see derivations)


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    sessions.clear()
    scram_keys.clear()
    yield
    sessions.clear()
    scram_keys.clear()


# --- TLS session resumption against aiosmtpd ------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def leaf(ca: TestCA) -> Leaf:
    return ca.leaf()  # mail.example.test, localhost, 127.0.0.1, ::1


@pytest.fixture
def starttls_server(leaf: Leaf) -> Iterator[AiosmtpdServer]:
    with AiosmtpdServer(tls_context=leaf.server_context()) as server:
        yield server


def starttls_send(
    server: AiosmtpdServer, context: ssl.SSLContext, name: str = "localhost"
) -> smtpclient.SendResult:
    with Session.connect(
        "127.0.0.1",
        server.port,
        tls=TLSMode.STARTTLS,
        ssl_context=context,
        server_hostname=name,
    ) as session:
        return session.sendmail("a@example.com", ["b@example.com"], BODY)


def test_the_second_connection_resumes_and_is_still_verified(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    context = ca.client_context()
    first = starttls_send(starttls_server, context)
    second = starttls_send(starttls_server, context)
    third = starttls_send(starttls_server, context)
    assert first.tls is not None and second.tls is not None and third.tls is not None
    assert not first.tls.resumed
    assert second.tls.resumed and third.tls.resumed
    assert second.tls.verified and second.tls.server_hostname == "localhost"
    assert second.tls.peer_subject == first.tls.peer_subject
    assert len(starttls_server.messages) == 3


@pytest.mark.parametrize("tickets", [True, False], ids=["ticket", "session-id"])
def test_tls_1_2_sessions_resume_too(leaf: Leaf, ca: TestCA, tickets: bool) -> None:
    server_context = leaf.server_context()
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    if not tickets:
        server_context.options |= ssl.OP_NO_TICKET  # the server's session cache
    context = ca.client_context()
    with AiosmtpdServer(tls_context=server_context) as server:
        first = starttls_send(server, context)
        second = starttls_send(server, context)
    assert first.tls is not None and second.tls is not None
    assert first.tls.version == second.tls.version == "TLSv1.2"
    assert not first.tls.resumed and second.tls.resumed and second.tls.verified


def test_another_server_name_gets_a_full_handshake(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    context = ca.client_context()
    starttls_send(starttls_server, context, "localhost")
    other = starttls_send(starttls_server, context, "mail.example.test")
    assert other.tls is not None and not other.tls.resumed and other.tls.verified
    # Each name resumes its own session.
    again = starttls_send(starttls_server, context, "localhost")
    assert again.tls is not None and again.tls.resumed


def test_another_context_gets_a_full_handshake(starttls_server: AiosmtpdServer, ca: TestCA) -> None:
    starttls_send(starttls_server, ca.client_context())
    other = starttls_send(starttls_server, ca.client_context())
    assert other.tls is not None and not other.tls.resumed


def test_sessions_of_unverified_handshakes_are_not_kept(
    starttls_server: AiosmtpdServer,
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for _ in range(2):
        result = starttls_send(starttls_server, context)
        assert result.tls is not None and not result.tls.verified and not result.tls.resumed
    assert len(sessions) == 0


def test_at_most_a_few_contexts_are_kept_alive(starttls_server: AiosmtpdServer, ca: TestCA) -> None:
    # A caller building a new context per connection pins no more than
    # MAX_CONTEXTS of them (each holds its CA bundle).
    contexts = [ca.client_context() for _ in range(smtpclient.tlsresume.MAX_CONTEXTS + 1)]
    for context in contexts:
        starttls_send(starttls_server, context)
    assert len(sessions) == smtpclient.tlsresume.MAX_CONTEXTS
    oldest = starttls_send(starttls_server, contexts[0])
    newest = starttls_send(starttls_server, contexts[-1])
    assert oldest.tls is not None and not oldest.tls.resumed
    assert newest.tls is not None and newest.tls.resumed


def test_a_context_that_does_not_trust_the_server_never_resumes_its_session(
    starttls_server: AiosmtpdServer, ca: TestCA
) -> None:
    context = ca.client_context()
    starttls_send(starttls_server, context)
    stranger = TestCA().client_context()  # trusts another CA only
    with pytest.raises(smtpclient.errors.CertificateVerifyError):
        starttls_send(starttls_server, stranger)
    resumed = starttls_send(starttls_server, context)
    assert resumed.tls is not None and resumed.tls.resumed


def test_a_certificate_verified_too_long_ago_gets_a_full_handshake(
    starttls_server: AiosmtpdServer, ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = ca.client_context()
    starttls_send(starttls_server, context)
    # Every resumption goes back to the full handshake that verified the
    # certificate; past MAX_AGE the certificate is checked again.
    monkeypatch.setattr(smtpclient.tlsresume, "MAX_AGE", 0.0)
    again = starttls_send(starttls_server, context)
    assert again.tls is not None and not again.tls.resumed and again.tls.verified


def test_implicit_tls_resumes_too(leaf: Leaf, ca: TestCA) -> None:
    context = ca.client_context()
    with AiosmtpdServer(implicit_tls=leaf.server_context()) as server:
        results = [
            smtpclient.send(
                BODY,
                host="127.0.0.1",
                port=server.port,
                tls=TLSMode.IMPLICIT,
                ssl_context=context,
                sender="a@example.com",
                recipients=["b@example.com"],
            )
            for _ in range(2)
        ]
    assert [r.tls.resumed for r in results if r.tls is not None] == [False, True]


# --- Postfix: tickets after STARTTLS, SCRAM through Dovecot ------------------------------


def scram_entry(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """Dovecot's stored SCRAM-SHA-256 credentials for *password*."""
    salted = PBKDF2("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    parts = [base64.b64encode(x).decode() for x in (salt, stored_key, server_key)]
    return f"{{SCRAM-SHA-256}}{iterations},{','.join(parts)}"


class ScramPassdb:
    """A passwd-file whose one user has stored SCRAM credentials (the salt
    stays the same between logins, as with any server storing SCRAM keys)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o755)
        self.path = directory / "scram-users"
        self.salt = os.urandom(16)
        self.dovecot: DovecotServer | None = None  # to ask after a change
        self.version = 0
        self.store("first-password")

    def store(self, password: str) -> None:
        entry = scram_entry(password, self.salt)
        self.path.write_text(f"{SCRAM_USER}:{entry}::::::\n")
        shutil.chown(self.path, user="root", group="dovecot")
        self.path.chmod(0o640)
        # Dovecot's auth process reads the file again when its modification
        # time (whole seconds) has changed, at most once a second.
        self.version += 1
        stamp = self.path.stat().st_mtime + 10 * self.version
        os.utime(self.path, (stamp, stamp))
        if self.dovecot is not None:
            self.wait_for(password)

    def wait_for(self, password: str) -> None:
        """Wait until Dovecot accepts *password* (it checks the file's time
        at most once a second)."""
        assert self.dovecot is not None
        test = ["doveadm", "-c", str(self.dovecot.config_file), "auth", "test"]
        for _ in range(100):
            done = subprocess.run(
                [*test, SCRAM_USER, password], check=False, timeout=20, capture_output=True
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("Dovecot did not take the new SCRAM credentials")


@pytest.fixture(scope="module")
def scram_passdb() -> Iterator[ScramPassdb]:
    # Not under pytest's tmp_path: its parent is private to root, and
    # Dovecot reads the file as its own user.
    base = Path(tempfile.mkdtemp(prefix="smtpclient-scram-"))
    base.chmod(0o755)
    try:
        yield ScramPassdb(base / "passdb")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def scram_postfix(
    scram_passdb: ScramPassdb, server_certs: TestCertificates
) -> Iterator[PostfixServer]:
    second_passdb = f"""
passdb {{
  driver = passwd-file
  args = username_format=%u {scram_passdb.path}
  default_fields = nodelay=yes
}}
"""
    try:
        dovecot = DovecotServer(extra_config=second_passdb).start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    scram_passdb.dovecot = dovecot
    try:
        postfix = PostfixServer(
            tls=True, certs=server_certs, sasl=True, dovecot_auth_socket=dovecot.auth_socket
        ).start()
    except BaseException:
        dovecot.stop()
        raise
    try:
        yield postfix
    finally:
        try:
            postfix.stop()
        finally:
            dovecot.stop()


def postfix_session(server: PostfixServer, context: ssl.SSLContext) -> Session:
    return Session.connect(
        "127.0.0.1",
        server.port,
        tls=TLSMode.STARTTLS,
        ssl_context=context,
        server_hostname="mail.example.test",
        timeouts=20,
    )


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts PBKDF2 runs (each SCRAM login that misses the cache runs one)."""
    calls: list[int] = []
    real: Callable[..., bytes] = PBKDF2

    def counted(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counted)
    return calls


def test_postfix_resumes_after_starttls(
    scram_postfix: PostfixServer, server_certs: TestCertificates
) -> None:
    context = server_certs.client_context()
    outcomes = []
    for _ in range(3):
        result = smtpclient.send(
            BODY,
            host="127.0.0.1",
            port=scram_postfix.port,
            tls=TLSMode.STARTTLS,
            ssl_context=context,
            server_hostname="mail.example.test",
            username="alice@example.test",
            password="secret",
            sender="alice@example.test",
            recipients=["alice@example.test"],
        )
        assert result.tls is not None and result.tls.verified
        outcomes.append(result.tls.resumed)
    assert outcomes == [False, True, True]
    other = smtpclient.send(
        BODY,
        host="127.0.0.1",
        port=scram_postfix.port,
        tls=TLSMode.STARTTLS,
        ssl_context=context,
        server_hostname="localhost",
        sender="alice@example.test",
        recipients=["alice@example.test"],
    )
    assert other.tls is not None and not other.tls.resumed


def test_a_repeat_scram_login_reuses_the_derived_keys(
    scram_postfix: PostfixServer, server_certs: TestCertificates, derivations: list[int]
) -> None:
    context = server_certs.client_context()
    for expected_derivations in (1, 1, 1):
        with postfix_session(scram_postfix, context) as session:
            reply = session.login(SCRAM_USER, "first-password", mechanism="SCRAM-SHA-256")
            assert reply.code == 235
        assert len(derivations) == expected_derivations
    assert len(scram_keys) == 1


def test_a_failed_login_drops_the_cached_keys(
    scram_postfix: PostfixServer,
    server_certs: TestCertificates,
    scram_passdb: ScramPassdb,
    derivations: list[int],
) -> None:
    context = server_certs.client_context()
    try:
        with postfix_session(scram_postfix, context) as session:
            session.login(SCRAM_USER, "first-password", mechanism="SCRAM-SHA-256")
        assert len(derivations) == 1 and len(scram_keys) == 1
        # Same salt and count, another password: the cached keys are used and refused.
        scram_passdb.store("second-password")
        with postfix_session(scram_postfix, context) as session:
            with pytest.raises(AuthenticationFailed):
                session.login(SCRAM_USER, "first-password", mechanism="SCRAM-SHA-256")
        assert len(derivations) == 1  # the cached keys were what failed
        assert len(scram_keys) == 0
        # Nothing cached now: the old password is derived afresh and fails again.
        with postfix_session(scram_postfix, context) as session:
            with pytest.raises(AuthenticationFailed):
                session.login(SCRAM_USER, "first-password", mechanism="SCRAM-SHA-256")
        assert len(derivations) == 2 and len(scram_keys) == 0
        with postfix_session(scram_postfix, context) as session:
            session.login(SCRAM_USER, "second-password", mechanism="SCRAM-SHA-256")
        assert len(derivations) == 3 and len(scram_keys) == 1
    finally:
        scram_passdb.store("first-password")


def test_a_plaintext_passdb_salts_afresh_so_scram_derives_every_time(
    scram_postfix: PostfixServer, server_certs: TestCertificates, derivations: list[int]
) -> None:
    context = server_certs.client_context()
    for _ in range(2):
        with postfix_session(scram_postfix, context) as session:
            session.login("alice@example.test", "secret", mechanism="SCRAM-SHA-256")
    assert len(derivations) == 2


def test_over_verified_tls_plain_is_the_default(
    scram_postfix: PostfixServer, server_certs: TestCertificates, derivations: list[int]
) -> None:
    with postfix_session(scram_postfix, server_certs.client_context()) as session:
        assert session.tls is not None and session.tls.verified
        session.login("alice@example.test", "secret")
    assert derivations == []
    assert "sasl_method=PLAIN, sasl_username=alice@example.test" in scram_postfix.maillog()
