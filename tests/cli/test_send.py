"""`smtpclient send` as a subprocess against aiosmtpd and scripted servers."""

from __future__ import annotations

import base64
import email
import email.policy
import subprocess
from pathlib import Path
from typing import Any

from servers.certs import TestCertificates
from servers.scripted import Conn, ScriptedServer
from servers.smtpd import AiosmtpdServer

from cli.conftest import PASSWORD, USER
from cli.helpers import cli_env, refused_port, run_cli


def send(server: AiosmtpdServer | ScriptedServer, *args: str, **kwargs: Any) -> Completed:
    return run_cli("send", "--server", f"127.0.0.1:{server.port}", "--tls", "none", *args,
                   **kwargs)


Completed = subprocess.CompletedProcess[str]


def outcome_lines(stdout: str) -> dict[str, str]:
    """recipient -> its status word, from the per-recipient lines."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("accepted", "refused", "deferred", "unknown"):
            found[words[1]] = words[0]
    return found


def test_send_composes_and_delivers_with_attachment_and_bcc(
    smtpd: AiosmtpdServer, tmp_path: Path
) -> None:
    attachment = tmp_path / "report.csv"
    attachment.write_text("a,b\n1,2\n")
    done = run_cli(
        "send", "--server", f"127.0.0.1:{smtpd.port}", "--tls", "none",
        "--from", "Ann <ann@example.test>", "--to", "bo@example.test",
        "--cc", "cy@example.test", "--bcc", "di@example.test",
        "--subject", "Grüße", "--body", "hello ✓", "--attach", str(attachment),
        "--header", "X-Test: yes",
    )
    assert done.returncode == 0, done.stderr
    assert outcome_lines(done.stdout) == {
        "bo@example.test": "accepted", "cy@example.test": "accepted", "di@example.test": "accepted"
    }
    (received,) = smtpd.messages
    assert received.mail_from == "ann@example.test"
    assert received.rcpt_tos == ["bo@example.test", "cy@example.test", "di@example.test"]
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    assert message["Subject"] == "Grüße"
    assert message["X-Test"] == "yes"
    assert "Bcc" not in message and b"di@example.test" not in received.content
    body = message.get_body(("plain",))
    assert body is not None and body.get_content() == "hello ✓\r\n"
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "report.csv"
    assert part.get_content().replace("\r\n", "\n") == "a,b\n1,2\n"


def test_body_from_stdin_and_from_file(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    args = ("--from", "a@example.test", "--to", "b@example.test", "--subject", "s")
    assert send(smtpd, *args, input="piped body\n").returncode == 0
    path = tmp_path / "body.txt"
    path.write_text("file body\n")
    assert send(smtpd, *args, "--body-file", str(path)).returncode == 0
    bodies = [m.content.split(b"\r\n\r\n", 1)[1] for m in smtpd.messages]
    assert bodies == [b"piped body\r\n", b"file body\r\n"]


def test_eml_is_sent_with_its_own_envelope(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(
        b"From: x@example.test\r\nTo: y@example.test\r\nBcc: z@example.test\r\n"
        b"Subject: ready\r\nMessage-ID: <fixed@example.test>\r\n\r\nready-made\r\n"
    )
    done = send(smtpd, "--eml", str(eml))
    assert done.returncode == 0, done.stderr
    (received,) = smtpd.messages
    assert received.mail_from == "x@example.test"
    assert received.rcpt_tos == ["y@example.test", "z@example.test"]
    assert b"Message-ID: <fixed@example.test>" in received.content
    assert b"Bcc" not in received.content


def test_exit_codes_follow_each_recipients_outcome(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse.update({
        "gone@example.test": "550 5.1.1 No such user",
        "later@example.test": "450 4.2.1 Mailbox busy",
    })
    base = ("--from", "a@example.test", "--body", "x")
    cases = [
        (["ok@example.test"], 0),
        (["ok@example.test", "gone@example.test"], 79),  # partial
        (["gone@example.test"], 69),  # permanent
        (["later@example.test"], 75),  # transient
        (["gone@example.test", "later@example.test"], 75),  # none accepted, one may pass later
    ]
    for recipients, expected in cases:
        to = [arg for r in recipients for arg in ("--to", r)]
        done = send(smtpd, *base, *to)
        assert done.returncode == expected, (recipients, done.stdout, done.stderr)
        lines = outcome_lines(done.stdout)
        assert set(lines) == set(recipients)
    done = send(smtpd, *base, "--to", "ok@example.test", "--to", "gone@example.test")
    assert "refused   gone@example.test  550 5.1.1 No such user" in done.stdout


def test_input_errors_have_their_own_exit_codes(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    base = ("--from", "a@example.test", "--to", "b@example.test")
    assert send(smtpd, *base, "--body-file", str(tmp_path / "missing")).returncode == 66
    assert send(smtpd, "--from", "a@example.test", "--to", "not-an-address",
                "--body", "x").returncode == 65
    assert send(smtpd, *base, "--eml", str(tmp_path / "missing.eml")).returncode == 66
    assert send(smtpd, *base, "--body", "x", "--eml", "m.eml").returncode == 64  # conflict
    assert send(smtpd, *base, "--body", "x", "--dsn-notify", "NEVER,SUCCESS").returncode == 64
    assert smtpd.messages == []


def test_refused_connection_is_transient_and_suggests_direct() -> None:
    done = run_cli("send", "--server", f"127.0.0.1:{refused_port()}", "--from", "a@example.test",
                   "--to", "b@example.test", "--body", "x")
    assert done.returncode == 75
    assert "could not connect" in done.stderr
    assert "use --direct" in done.stderr
    assert outcome_lines(done.stdout) == {"b@example.test": "deferred"}


def test_transcript_over_starttls_with_auth_hides_the_password(
    tls_smtpd: AiosmtpdServer, server_certs: TestCertificates
) -> None:
    done = run_cli(
        "send", "--server", f"127.0.0.1:{tls_smtpd.port}", "--tls", "starttls",
        "--cafile", str(server_certs.ca_file), "--user", USER, "--transcript",
        "--from", "a@example.test", "--to", "b@example.test", "--body", "secret stuff",
        env=cli_env(SMTPCLIENT_PASSWORD=PASSWORD),
    )
    assert done.returncode == 0, done.stderr
    transcript = done.stderr
    assert "C: STARTTLS" in transcript
    assert "C: AUTH PLAIN <redacted>" in transcript or "C: AUTH LOGIN" in transcript
    assert "S: 235" in transcript
    assert "octets of message content" in transcript
    everything = done.stdout + done.stderr
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in everything and plain not in everything
    assert len(tls_smtpd.messages) == 1


def test_auth_without_password_source_is_a_usage_error(tls_smtpd: AiosmtpdServer) -> None:
    done = run_cli(
        "send", "--server", f"127.0.0.1:{tls_smtpd.port}", "--user", USER,
        "--from", "a@example.test", "--to", "b@example.test", "--body", "x",
        env=cli_env(),
    )
    assert done.returncode == 64
    assert "SMTPCLIENT_PASSWORD" in done.stderr


def test_wrong_password_is_noperm(tls_smtpd: AiosmtpdServer, server_certs: TestCertificates) -> None:
    done = run_cli(
        "send", "--server", f"127.0.0.1:{tls_smtpd.port}", "--tls", "starttls",
        "--cafile", str(server_certs.ca_file), "--user", USER,
        "--from", "a@example.test", "--to", "b@example.test", "--body", "x",
        env=cli_env(SMTPCLIENT_PASSWORD="wrong password"),
    )
    assert done.returncode == 77
    assert tls_smtpd.messages == []


def test_untrusted_certificate_fails_with_a_hint(tls_smtpd: AiosmtpdServer) -> None:
    done = run_cli(
        "send", "--server", f"127.0.0.1:{tls_smtpd.port}", "--tls", "starttls",
        "--from", "a@example.test", "--to", "b@example.test", "--body", "x",
    )
    assert done.returncode == 75
    assert "certificate" in done.stderr and "--cafile" in done.stderr
    assert tls_smtpd.messages == []


def test_protocol_violation_is_ex_protocol() -> None:
    def garbage(conn: Conn) -> None:
        conn.send(b"this is not SMTP\r\n")
        conn.wait_closed(5)

    with ScriptedServer(garbage) as server:
        done = send(server, "--from", "a@example.test", "--to", "b@example.test", "--body", "x")
    assert done.returncode == 76, done.stderr
