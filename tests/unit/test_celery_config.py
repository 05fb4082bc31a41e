"""The worker's Mailer settings from the Celery setting ``smtpclient``."""

from __future__ import annotations

from typing import Any

import pytest

import smtpclient.contrib.django as backends
from smtpclient import TLSMode
from smtpclient.contrib.celery import mailer_options
from smtpclient.contrib.celery_django import CeleryEmailBackend
from smtpclient.ratelimit import RateLimit


def test_strings_and_numbers_become_mailer_values() -> None:
    options = mailer_options(
        {"host": "smtp.example.test", "port": 587, "tls": "STARTTLS", "timeouts": 30,
         "rate_limit": {"per_second": 5, "burst": 2}, "max_connections": 3}
    )  # fmt: skip
    assert options["tls"] is TLSMode.STARTTLS
    assert options["rate_limit"] == RateLimit(per_second=5, burst=2)
    assert options["timeouts"] == 30  # Mailer coerces a number itself
    assert options["max_connections"] == 3


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"port": 25}, ValueError, "needs a 'host'"),
        ({"host": "h", "tls": "ssl"}, ValueError, "'tls' must be one of"),
        ({"host": "h", "retry": 3}, ValueError, "smtpclient_retry"),
        ({"host": "h", "rate_limit": {"per_second": -1}}, ValueError, "per_second"),
        ("smtp.example.test", TypeError, "dict of Mailer arguments"),
    ],
)
def test_bad_settings_are_clear_errors(config: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        mailer_options(config)


def test_ca_file_makes_a_verifying_context(tmp_path: Any) -> None:
    with pytest.raises(OSError):  # a missing file is an error at once, not at first send
        mailer_options({"host": "h", "tls": "starttls", "ca_file": str(tmp_path / "none.pem")})


def test_ca_file_trusts_that_ca(tmp_path: Any) -> None:
    import ssl  # noqa: PLC0415

    import trustme  # noqa: PLC0415

    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    options = mailer_options({"host": "h", "tls": "starttls", "ca_file": str(ca_file)})
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1  # only that CA, not certifi's as well


def test_the_queueing_backend_is_importable_from_the_django_module() -> None:
    assert backends.CeleryEmailBackend is CeleryEmailBackend
    with pytest.raises(AttributeError):
        backends.NoSuchBackend  # noqa: B018
