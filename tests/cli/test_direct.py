"""`smtpclient send --direct`: MX lookup on a real DNS server (Knot), delivery to aiosmtpd."""

from __future__ import annotations

from subprocess import CompletedProcess

import pytest
from servers.knot import KnotServer
from servers.smtpd import AiosmtpdServer

from cli.helpers import run_cli

pytestmark = pytest.mark.knot


def direct(knot: KnotServer, smtpd: AiosmtpdServer, *args: str) -> CompletedProcess[str]:
    return run_cli(
        "send", "--direct", "--nameserver", "127.0.0.1", "--dns-port", str(knot.port),
        "--mx-port", str(smtpd.port), "--target-policy", "any", "--timeout", "10", "--from", "cli@example.org",
        "--body", "straight to the MX", *args,
    )


def test_direct_delivers_to_the_domains_mx_and_reports_each_recipient(
    knot: KnotServer, smtpd: AiosmtpdServer
) -> None:
    done = direct(knot, smtpd, "--to", "bob@example.test", "--to", "nobody@nullmx.example.test")
    assert done.returncode == 79, done.stderr
    lines = done.stdout.splitlines()
    delivered = [line for line in lines if line.startswith("delivered ")]
    refused = [line for line in lines if line.startswith("refused ")]
    assert len(delivered) == 1 and "bob@example.test" in delivered[0]
    assert "queued as TEST123" in delivered[0]
    assert len(refused) == 1 and "nobody@nullmx.example.test" in refused[0]
    (received,) = smtpd.messages
    assert received.rcpt_tos == ["bob@example.test"]
    assert received.mail_from == "cli@example.org"


def test_direct_to_a_domain_that_takes_no_mail_is_permanent(
    knot: KnotServer, smtpd: AiosmtpdServer
) -> None:
    done = direct(knot, smtpd, "--to", "nobody@nullmx.example.test")
    assert done.returncode == 69, done.stderr
    assert smtpd.messages == []
