"""`smtpclient probe`: greeting, capabilities, STARTTLS and the certificate, no mail."""

from __future__ import annotations

import json

from servers.certs import TestCertificates
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo
from servers.smtpd import AiosmtpdServer

from cli.helpers import refused_port, run_cli


def test_probe_shows_the_certificate_even_when_it_does_not_verify(
    tls_smtpd: AiosmtpdServer,
) -> None:
    done = run_cli("probe", f"127.0.0.1:{tls_smtpd.port}")
    assert done.returncode == 0, done.stderr  # opportunistic: reported, not fatal
    out = done.stdout
    assert "greeting      220 aiosmtpd.test" in out
    assert "STARTTLS" in out and "TLSv1." in out
    assert "NOT verified: certificate verification failed" in out
    assert "subject:" in out and "issuer:" in out and "expires:" in out
    (names,) = [line for line in out.splitlines() if line.strip().startswith("names:")]
    assert "mail.example.test" in names and "127.0.0.1" in names  # subjectAltName (cryptography)
    assert "AUTH          LOGIN PLAIN (over TLS)" in out
    assert "no mail was sent" in out
    assert tls_smtpd.messages == []


def test_probe_with_the_ca_verifies_and_json_is_complete(
    tls_smtpd: AiosmtpdServer, server_certs: TestCertificates
) -> None:
    done = run_cli("probe", f"127.0.0.1:{tls_smtpd.port}", "--cafile",
                   str(server_certs.ca_file), "--tls-name", "localhost", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["greeting"].startswith("220 ")
    assert "STARTTLS" in report["ehlo"]
    assert not any(line.startswith("AUTH") for line in report["ehlo"])  # AUTH only after TLS
    assert report["tls"]["verified"] is True
    assert report["tls"]["server_hostname"] == "localhost"
    assert "localhost" in report["tls"]["certificate"]["names"]
    assert report["tls"]["certificate"]["days_left"] > 0
    assert report["auth"] == ["LOGIN", "PLAIN"]
    assert report["exit_code"] == 0


def test_required_tls_that_does_not_verify_fails_like_a_send_would(
    tls_smtpd: AiosmtpdServer,
) -> None:
    done = run_cli("probe", f"127.0.0.1:{tls_smtpd.port}", "--tls", "starttls")
    assert done.returncode == 75
    assert "NOT verified" in done.stdout


def test_probe_without_starttls_and_without_a_server() -> None:
    def no_tls(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "SIZE 1000", "AUTH PLAIN"))
        conn.expect(b"QUIT")
        conn.reply("221 bye")

    with ScriptedServer(no_tls) as server:
        done = run_cli("probe", f"127.0.0.1:{server.port}")
        required = run_cli("probe", f"127.0.0.1:{server.port}", "--tls", "starttls")
    assert done.returncode == 0
    assert "STARTTLS      not offered" in done.stdout
    assert "AUTH          PLAIN (without TLS)" in done.stdout
    assert required.returncode == 75
    gone = run_cli("probe", f"127.0.0.1:{refused_port()}")
    assert gone.returncode == 75
    assert "could not connect" in gone.stderr
