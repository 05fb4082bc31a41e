"""Real SASL interop: Postfix with Dovecot behind it (``smtpd_sasl_type =
dovecot``), over STARTTLS and implicit TLS with a trustme CA.  Every mechanism
logs in, non-ASCII names and passwords work, and Postfix's own log confirms
the mechanism and user of each delivery.  A wrong password is one failed
attempt, never a second mechanism."""

from __future__ import annotations

import logging
import re
import time
import uuid

import pytest
from servers.certs import TestCertificates
from servers.dovecot import USERS
from servers.postfix import PostfixServer

from smtpclient import Session, TLSMode
from smtpclient.errors import AuthenticationFailed, InsecureAuthError
from smtpclient.mechanisms import PASSWORD_ORDER, VERIFIED_TLS_PASSWORD_ORDER

pytestmark = [pytest.mark.postfix, pytest.mark.dovecot]

MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
ACCOUNTS = [
    pytest.param("alice@example.test", id="ascii"),
    pytest.param("carol@example.test", id="non-ascii-password"),
    pytest.param("jörg@example.test", id="non-ascii-user"),
]


def connect(server: PostfixServer, certs: TestCertificates, *, implicit: bool = False) -> Session:
    port = server.implicit_port if implicit else server.port
    assert port is not None
    return Session.connect(
        "127.0.0.1",
        port,
        tls=TLSMode.IMPLICIT if implicit else TLSMode.STARTTLS,
        ssl_context=certs.client_context(),
        server_hostname="mail.example.test",
        timeouts=20,
    )


def sasl_log_line(server: PostfixServer, queue_id: str, wait: float = 10.0) -> str:
    """Postfix's "<queue id>: client=..., sasl_method=..., sasl_username=..." line."""
    end = time.monotonic() + wait
    while True:
        for line in server.maillog().splitlines():
            if f"{queue_id}: client=" in line:
                return line
        if time.monotonic() > end:
            raise AssertionError(f"no log line for {queue_id}:\n{server.maillog()[-3000:]}")
        time.sleep(0.1)


def send_marked(session: Session) -> str:
    """Send a small message to alice; return Postfix's queue id."""
    body = f"Subject: sasl {uuid.uuid4().hex}\r\n\r\nhello\r\n".encode()
    result = session.sendmail("alice@example.test", ["alice@example.test"], body)
    assert result.queue_id is not None
    return result.queue_id


@pytest.mark.parametrize("user", ACCOUNTS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_mechanism_logs_in_over_starttls(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates, mechanism: str, user: str
) -> None:
    with connect(postfix_tls_sasl, server_certs) as session:
        assert session.tls is not None and session.tls.verified
        assert set(MECHANISMS) <= session.extensions.auth_mechanisms
        reply = session.login(user, USERS[user], mechanism=mechanism)
        assert reply.code == 235 and session.authenticated
        queue_id = send_marked(session)
    line = sasl_log_line(postfix_tls_sasl, queue_id)
    assert f"sasl_method={mechanism}, sasl_username={user}" in line


def test_plain_is_chosen_by_default_over_verified_tls(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    # Over verified TLS PLAIN is as safe as SCRAM against everyone but the
    # server, and spares both sides PBKDF2 (docs/guide/tls.md).
    with connect(postfix_tls_sasl, server_certs, implicit=True) as session:
        session.login("bob@example.test", USERS["bob@example.test"])
        queue_id = send_marked(session)
    assert VERIFIED_TLS_PASSWORD_ORDER[0] == "PLAIN"
    assert PASSWORD_ORDER[0] == "SCRAM-SHA-256"  # without verified TLS
    assert "sasl_method=PLAIN," in sasl_log_line(postfix_tls_sasl, queue_id)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_fails_once_without_another_mechanism(
    postfix_tls_sasl: PostfixServer,
    server_certs: TestCertificates,
    mechanism: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpclient")
    before = postfix_tls_sasl.maillog().count("authentication failed")
    with connect(postfix_tls_sasl, server_certs) as session:
        with pytest.raises(AuthenticationFailed) as info:
            session.login("alice@example.test", "Not-The-Passw0rd", mechanism=mechanism)
        assert info.value.reply is not None and info.value.reply.code == 535
        assert "Not-The-Passw0rd" not in str(info.value)
        assert session.usable and not session.authenticated
        # The session stays usable: the right password still works on it.
        session.login("alice@example.test", USERS["alice@example.test"], mechanism=mechanism)
    sent_auth = re.findall(r"C: AUTH (\S+)", caplog.text)
    assert sent_auth == [mechanism, mechanism]  # the failure, then the deliberate retry
    deadline = time.monotonic() + 5
    while postfix_tls_sasl.maillog().count("authentication failed") == before:
        assert time.monotonic() < deadline, "Postfix did not log the failure"
        time.sleep(0.1)
    assert postfix_tls_sasl.maillog().count("authentication failed") == before + 1
    assert "Not-The-Passw0rd" not in caplog.text


def test_auth_is_not_offered_before_tls_and_never_sent_in_plaintext(
    postfix_tls_sasl: PostfixServer,
) -> None:
    with Session.connect(
        "127.0.0.1", postfix_tls_sasl.port, tls=TLSMode.NONE, timeouts=20
    ) as session:
        assert "AUTH" not in session.extensions  # smtpd_tls_auth_only = yes
        with pytest.raises(InsecureAuthError):
            session.login("alice@example.test", USERS["alice@example.test"])


def test_opportunistic_with_the_default_trust_encrypts_but_refuses_auth(
    postfix_tls_sasl: PostfixServer,
) -> None:
    # certifi does not know the test CA: encrypted, unverified, no AUTH.
    with Session.connect("127.0.0.1", postfix_tls_sasl.port, timeouts=20) as session:
        tls = session.tls
        assert tls is not None and not tls.verified and tls.verify_error
        assert tls.peer_subject is not None
        with pytest.raises(InsecureAuthError, match="not verified"):
            session.login("alice@example.test", USERS["alice@example.test"])
