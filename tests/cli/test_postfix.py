"""The CLI against a real MTA: Postfix (and Dovecot for AUTH), started by the fixtures."""

from __future__ import annotations

import base64
import email
import email.policy
import json

import pytest
from servers.certs import TestCertificates
from servers.dovecot import USERS
from servers.postfix import DEFERRED_RECIPIENT, REJECTED_RECIPIENT, PostfixServer

from cli.helpers import cli_env, run_cli

pytestmark = pytest.mark.postfix


def test_send_through_postfix_lands_in_the_maildir(postfix: PostfixServer) -> None:
    postfix.clear_maildir()
    done = run_cli(
        "send", "--server", f"{postfix.host}:{postfix.port}", "--tls", "none",
        "--from", "cli@example.test", "--to", "bob@example.test",
        "--subject", "from the CLI", "--body", "through Postfix ✓",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accepted  bob@example.test  250 2.0.0 Ok: ")
    assert "queued as " in done.stdout
    (stored,) = postfix.maildir_messages(count=1)
    message = email.message_from_bytes(stored, policy=email.policy.default)
    assert message["Subject"] == "from the CLI"
    body = message.get_body(("plain",))
    assert body is not None and "through Postfix ✓" in body.get_content()


def test_postfix_per_recipient_outcomes_and_exit_codes(postfix: PostfixServer) -> None:
    base = ("send", "--server", f"{postfix.host}:{postfix.port}", "--tls", "none",
            "--from", "cli@example.test", "--body", "x")
    partial = run_cli(*base, "--to", "bob@example.test", "--to", REJECTED_RECIPIENT)
    assert partial.returncode == 79
    assert f"refused   {REJECTED_RECIPIENT}" in partial.stdout
    assert "5.1.1" in partial.stdout
    deferred = run_cli(*base, "--to", DEFERRED_RECIPIENT)
    assert deferred.returncode == 75
    assert f"deferred  {DEFERRED_RECIPIENT}  450 4.2.0" in deferred.stdout
    refused = run_cli(*base, "--to", REJECTED_RECIPIENT)
    assert refused.returncode == 69


@pytest.mark.dovecot
def test_send_with_starttls_and_auth_through_postfix_and_dovecot(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    server = postfix_tls_sasl
    server.clear_maildir()
    user, password = "bob@example.test", USERS["bob@example.test"]
    done = run_cli(
        "send", "--server", f"{server.host}:{server.port}", "--tls", "starttls",
        "--cafile", str(server_certs.ca_file), "--tls-name", "mail.example.test",
        "--user", user, "--transcript", "--dsn-notify", "FAILURE,DELAY", "--dsn-ret", "HDRS",
        "--from", user, "--to", "alice@example.test", "--subject", "authenticated",
        "--body", "hello", env=cli_env(SMTPCLIENT_PASSWORD=password),
    )
    assert done.returncode == 0, done.stderr
    transcript = done.stderr
    assert "C: STARTTLS" in transcript and "S: 235" in transcript
    assert "NOTIFY=FAILURE,DELAY" in transcript and "RET=HDRS" in transcript
    for secret in (password, base64.b64encode(f"\0{user}\0{password}".encode()).decode()):
        assert secret not in done.stdout + done.stderr
    (stored,) = server.maildir_messages(count=1)
    assert b"Subject: authenticated" in stored


@pytest.mark.dovecot
def test_probe_postfix_starttls_and_implicit_tls(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    server = postfix_tls_sasl
    done = run_cli("probe", f"{server.host}:{server.port}", "--cafile", str(server_certs.ca_file),
                   "--tls-name", "mail.example.test", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "PIPELINING" in report["ehlo"] and "STARTTLS" in report["ehlo"]
    assert "CHUNKING" in report["ehlo_tls"]
    assert report["tls"]["verified"] is True
    assert {"PLAIN", "SCRAM-SHA-256"} <= set(report["auth"])
    assert server.implicit_port is not None
    implicit = run_cli("probe", f"{server.host}:{server.implicit_port}", "--tls", "implicit",
                       "--cafile", str(server_certs.ca_file), "--tls-name", "mail.example.test")
    assert implicit.returncode == 0, implicit.stderr
    assert "verified for mail.example.test" in implicit.stdout


def test_sendmail_through_postfix(postfix: PostfixServer) -> None:
    postfix.clear_maildir()
    env = cli_env(SMTPCLIENT_HOST=postfix.host, SMTPCLIENT_PORT=str(postfix.port),
                  SMTPCLIENT_TLS="none")
    message = b"To: carol@example.test\nBcc: bob@example.test\nSubject: via sendmail\n\nbody\n"
    done = run_cli("sendmail", "-t", "-i", "-f", "cron@example.test", input=message, env=env)
    assert done.returncode == 0, done.stderr
    stored = postfix.maildir_messages(count=2)
    assert len(stored) == 2  # carol and the blind copy to bob
    assert all(b"Subject: via sendmail" in m and b"Bcc" not in m for m in stored)
