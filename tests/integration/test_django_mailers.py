"""Django 6.1's MAILERS with our backend, in a project configured only that
way, run with warnings as errors (``python -W error``) in a subprocess (Django
settings are process-wide; the other Django tests use ``EMAIL_*``).

Django 6.1 needs Python 3.12+: these tests run in the nox sessions for 3.12
and 3.13 (where ``pip install .[test]`` brings Django 6.1) and are skipped
with older Django.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from servers.smtpd import AiosmtpdServer

pytestmark = pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1+")

REPO = Path(__file__).resolve().parents[2]

PROJECT = """
import json, sys, warnings
import django
from django.conf import settings

settings.configure(
    DEFAULT_FROM_EMAIL="app@example.test",
    MAILERS={
        "default": {
            "BACKEND": "smtpclient.contrib.django.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": PORT_A, "max_connections": 2},
        },
        "bulk": {
            "BACKEND": "smtpclient.contrib.django.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": PORT_B, "timeout": 20},
        },
        "typo": {
            "BACKEND": "smtpclient.contrib.django.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "max_conections": 2},
        },
        "nohost": {"BACKEND": "smtpclient.contrib.django.EmailBackend", "OPTIONS": {}},
    },
)
django.setup()
from django.core.mail import EmailMessage, InvalidMailer, mailers, send_mail

out = {}
out["sent_default"] = send_mail("one", "body", None, ["to@example.test"])
out["sent_bulk"] = EmailMessage("two", "body", to=["tester"]).send(using="bulk")
a, b = mailers["default"], mailers["default"]
out["same_mailer"] = a is not b and a.mailer is b.mailer
out["other_alias_other_mailer"] = a.mailer is not mailers["bulk"].mailer
out["max_connections"] = a.mailer.pool.max_connections
for alias in ("typo", "nohost"):
    try:
        mailers[alias]
    except InvalidMailer as exc:
        out[alias] = str(exc)
try:
    settings.EMAIL_HOST
except AttributeError as exc:
    out["email_host"] = str(exc)
from smtpclient.contrib.django import close_shared_mailers
close_shared_mailers()
print(json.dumps(out))
"""


@pytest.fixture
def servers() -> Iterator[tuple[AiosmtpdServer, AiosmtpdServer]]:
    with AiosmtpdServer() as first, AiosmtpdServer() as second:
        yield first, second


def run_project(port_a: int, port_b: int) -> dict[str, Any]:
    script = PROJECT.replace("PORT_A", str(port_a)).replace("PORT_B", str(port_b))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_mailers_only_project_sends_through_each_alias_without_warnings(
    servers: tuple[AiosmtpdServer, AiosmtpdServer],
) -> None:
    default, bulk = servers
    out = run_project(default.port, bulk.port)
    assert out["sent_default"] == 1
    assert out["sent_bulk"] == 1
    assert [(m.mail_from, m.rcpt_tos) for m in default.messages] == [
        ("app@example.test", ["to@example.test"])
    ]
    # A bare local part goes out as given (the server qualifies it).
    assert [(m.mail_from, m.rcpt_tos) for m in bulk.messages] == [("app@example.test", ["tester"])]
    assert out["same_mailer"] is True
    assert out["other_alias_other_mailer"] is True
    assert out["max_connections"] == 2


def test_unknown_and_missing_options_are_django_invalid_mailer_errors(
    servers: tuple[AiosmtpdServer, AiosmtpdServer],
) -> None:
    out = run_project(servers[0].port, servers[1].port)
    assert out["typo"] == "MAILERS['typo']: Unknown options 'max_conections'."
    assert out["nohost"] == "MAILERS['nohost']: OPTIONS must define 'host'."
    # With MAILERS defined Django refuses EMAIL_* reads: the backend made none.
    assert "EMAIL_HOST" in out["email_host"]
