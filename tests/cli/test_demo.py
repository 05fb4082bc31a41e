"""`smtpclient demo`, the README's first command, end to end."""

from __future__ import annotations

import re

from cli.helpers import run_cli


def test_demo_sends_through_starttls_and_auth_and_shows_the_stored_message() -> None:
    done = run_cli("demo", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The transcript: STARTTLS, EHLO again, AUTH redacted, SMTPUTF8 and 8BITMIME used.
    assert out.index("C: STARTTLS") < out.index("C: AUTH PLAIN <redacted>") < out.index("C: MAIL")
    assert re.search(r"C: MAIL FROM:<demo@localhost> BODY=8BITMIME SIZE=\d+ SMTPUTF8", out)
    assert "C: RCPT TO:<zoë@example.test>" in out
    assert "S: 235" in out
    assert re.search(r"TLS: TLSv1\.[23] \S+, certificate verified", out)
    assert "accepted  zoë@example.test" in out
    # The message as the server stored it, trace headers first.
    stored = out.split("== the message as the server stored it", 1)[1]
    assert "Return-Path: <demo@localhost>" in stored
    assert "with ESMTPSA" in stored
    assert "Subject: Hello from smtpclient ✉" in stored
    assert "grüße, 你好, Привет." in stored
    assert 'filename="hello.txt"' in stored
    # Nothing but loopback.
    addresses = set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", out))
    assert addresses <= {"127.0.0.1"}, addresses
