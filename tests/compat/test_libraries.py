"""smtplib-based libraries keep working when ``smtplib`` is replaced by
compat: Django's own SMTP backend (``django.core.mail.backends.smtp``)."""

from __future__ import annotations

import pytest
from django.conf import settings
from servers.smtpd import AiosmtpdServer

import smtpclient.compat as compat


@pytest.fixture
def django_on_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8")
    import django.core.mail.backends.smtp as smtp_backend  # noqa: PLC0415 (after configure)

    monkeypatch.setattr(smtp_backend, "smtplib", compat)


@pytest.mark.usefixtures("django_on_compat")
def test_django_smtp_backend_sends_through_compat(smtpd: AiosmtpdServer) -> None:
    from django.core.mail import EmailMessage  # noqa: PLC0415
    from django.core.mail.backends.smtp import EmailBackend  # noqa: PLC0415

    with EmailBackend(host="127.0.0.1", port=smtpd.port, timeout=10) as connection:
        assert isinstance(connection.connection, compat.SMTP)
        messages = [
            EmailMessage(
                f"Subject {n}",
                "h\u00e9llo from Django\n",
                "app@example.test",
                ["a@example.test", "Bee <b@example.test>"],
                bcc=["hidden@example.test"],
            )
            for n in range(2)
        ]
        assert connection.send_messages(messages) == 2
    assert [m.rcpt_tos for m in smtpd.messages] == [
        ["a@example.test", "b@example.test", "hidden@example.test"]
    ] * 2
    assert b"Subject: Subject 1" in smtpd.messages[1].content


@pytest.mark.usefixtures("django_on_compat")
def test_django_refuses_header_injection_before_compat_is_reached(smtpd: AiosmtpdServer) -> None:
    from django.core.mail import EmailMessage  # noqa: PLC0415
    from django.core.mail.backends.smtp import EmailBackend  # noqa: PLC0415

    with EmailBackend(host="127.0.0.1", port=smtpd.port, timeout=10) as connection:
        message = EmailMessage(
            "hi\r\nBcc: evil@example.test", "x", "a@example.test", ["b@example.test"]
        )
        with pytest.raises(ValueError):  # Django's BadHeaderError
            connection.send_messages([message])
    assert smtpd.messages == []
