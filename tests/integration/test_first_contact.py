"""What a new user sees first: errors that name the call they made, say what
happened once, and label the step that failed."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from servers.smtpd import AiosmtpdServer

import smtpclient
from smtpclient import Mailer, Session, TLSMode
from smtpclient.errors import ConnectError, InsecureAuthError, SMTPClientError
from smtpclient.protocol.state import Stage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def plaintext_auth_server() -> Iterator[AiosmtpdServer]:
    """Offers AUTH but no STARTTLS: our AUTH must refuse to send the password."""
    with AiosmtpdServer(users={"u": "p"}, require_tls_for_auth=False) as server:
        yield server


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["To"] = "b@example.test"
    msg.set_content("x")
    return msg


def test_insecure_auth_names_smtpclient_send(plaintext_auth_server: AiosmtpdServer) -> None:
    with pytest.raises(InsecureAuthError) as caught:
        smtpclient.send(
            message(), host="127.0.0.1", port=plaintext_auth_server.port, username="u", password="p"
        )
    text = str(caught.value)
    assert "pass allow_insecure_auth=True to smtpclient.send()" in text
    assert "Session.connect()" not in text
    assert caught.value.stage is Stage.AUTH
    assert plaintext_auth_server.messages == []


def test_insecure_auth_names_mailer(plaintext_auth_server: AiosmtpdServer) -> None:
    with Mailer("127.0.0.1", plaintext_auth_server.port, username="u", password="p") as mailer:
        with pytest.raises(InsecureAuthError) as caught:
            mailer.send(message())
    assert "pass allow_insecure_auth=True to Mailer(...)" in str(caught.value)
    assert plaintext_auth_server.messages == []


def test_insecure_auth_names_session_connect(plaintext_auth_server: AiosmtpdServer) -> None:
    with Session.connect("127.0.0.1", plaintext_auth_server.port) as session:
        with pytest.raises(InsecureAuthError) as caught:
            session.login("u", "p")
    assert "pass allow_insecure_auth=True to Session.connect()" in str(caught.value)


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


def test_connect_failure_names_the_address_once() -> None:
    port = refused_port()
    with pytest.raises(ConnectError) as caught:
        Session.connect("127.0.0.1", port, tls=TLSMode.NONE)
    text = str(caught.value)
    assert text.startswith(f"could not connect to 127.0.0.1 port {port}: ")
    assert f"127.0.0.1:{port}" not in text
    assert "refused" in text.lower()


def test_implicit_tls_failure_is_a_connect_stage_failure() -> None:
    # A plaintext server greets where a TLS ServerHello should be.
    with AiosmtpdServer() as server:
        with pytest.raises(SMTPClientError) as caught:
            Session.connect(
                "127.0.0.1",
                server.port,
                tls=TLSMode.IMPLICIT,
                ssl_context=ssl.create_default_context(),
                server_hostname="localhost",
                timeouts=10,
            )
    assert caught.value.stage is Stage.CONNECT
    assert "stage=starttls" not in str(caught.value)


def test_cli_says_the_login_was_not_attempted(plaintext_auth_server: AiosmtpdServer) -> None:
    env = {"PYTHONPATH": str(REPO), "SMTPCLIENT_PASSWORD": "p", "HOME": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "smtpclient", "send",
         "--server", f"127.0.0.1:{plaintext_auth_server.port}", "--user", "u",
         "--from", "a@example.test", "--to", "b@example.test", "--body", "x"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 77, done.stderr
    lines = [line for line in done.stdout.splitlines() if "b@example.test" in line]
    assert len(lines) == 1
    assert lines[0].startswith("not sent  b@example.test  login not attempted:")
    assert "refused" not in lines[0].split("login not attempted:")[0]
    assert plaintext_auth_server.messages == []
