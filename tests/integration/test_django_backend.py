"""The Django email backend against real servers, counting on the server side.

Django is configured here with ``settings.configure()`` and the backend is
reached through ``django.core.mail`` (``send_mail``, ``get_connection``),
never through Django's test runner, whose in-memory backend would replace it.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from django.conf import settings
from django.core.mail import EmailMessage, get_connection, send_mail, send_mass_mail
from servers.metering import MeteredAiosmtpd, message_id
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo

from smtpclient import SendResult
from smtpclient.contrib.django import EmailBackend, close_shared_mailers
from smtpclient.errors import (
    AuthenticationFailed,
    ConnectError,
    PermanentRecipientsRefused,
    SMTPClientError,
    SMTPTimeoutError,
    TLSRequiredError,
)

BACKEND = "smtpclient.contrib.django.EmailBackend"


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> None:
    if not settings.configured:
        settings.configure(EMAIL_BACKEND=BACKEND, DEFAULT_CHARSET="utf-8")
    settings.EMAIL_BACKEND = BACKEND


@pytest.fixture(autouse=True)
def fresh_mailers() -> Iterator[None]:
    yield
    close_shared_mailers()


@contextmanager
def email_settings(**values: Any) -> Iterator[None]:
    """Set Django settings for the duration (restored afterwards)."""
    saved = {name: getattr(settings, name, None) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


@pytest.fixture
def server() -> Iterator[MeteredAiosmtpd]:
    with MeteredAiosmtpd() as smtpd:
        yield smtpd


@pytest.fixture
def start_server() -> Iterator[Callable[..., MeteredAiosmtpd]]:
    """Start servers; at the end close the pooled connections *before* the
    servers stop (a TLS server stopped under an open client connection
    cannot finish closing its side)."""
    started: list[MeteredAiosmtpd] = []

    def start(**kwargs: Any) -> MeteredAiosmtpd:
        started.append(MeteredAiosmtpd(**kwargs).start())  # type: ignore[arg-type]
        return started[-1]

    yield start
    close_shared_mailers()
    for item in started:
        item.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """Install the CA where the system trust store is looked up (as for Django)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return ca


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def at(port: int, **values: Any) -> Any:
    base = {
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": port,
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": False,
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_TIMEOUT": None,
        "EMAIL_SSL_CERTFILE": None,
        "EMAIL_SSL_KEYFILE": None,
        "SMTPCLIENT_MAILER_OPTIONS": None,
    }
    base.update(values)
    return email_settings(**base)


# --- sending ---------------------------------------------------------------------------


def test_send_mail_and_send_mass_mail_share_one_connection(server: MeteredAiosmtpd) -> None:
    with at(server.port):
        assert isinstance(get_connection(), EmailBackend)
        assert send_mail("hello", "body", "from@example.test", ["to@example.test"]) == 1
        mass = tuple(
            (f"mass {n}", "body", "from@example.test", [f"r{n}@example.test"]) for n in range(20)
        )
        assert send_mass_mail(mass) == 20
    assert len(server.messages) == 21
    assert [m.rcpt_tos for m in server.messages[1:]] == [[f"r{n}@example.test"] for n in range(20)]
    assert server.meter.total == 1  # backend objects come and go; the connection stays


def test_requests_in_many_threads_share_a_bounded_pool(server: MeteredAiosmtpd) -> None:
    errors: list[BaseException] = []

    def request(index: int) -> None:
        try:
            for number in range(10):
                sent = send_mail(f"t{index} {number}", "x", "a@example.test", ["b@example.test"])
                assert sent == 1
        except BaseException as exc:
            errors.append(exc)

    with at(server.port, SMTPCLIENT_MAILER_OPTIONS={"max_connections": 2}):
        threads = [threading.Thread(target=request, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not errors
    ids = Counter(message_id(m.content) for m in server.messages)
    assert len(ids) == 60 and set(ids.values()) == {1} and None not in ids
    assert server.meter.peak <= 2 and server.meter.total <= 2


def test_bcc_goes_in_the_envelope_only(server: MeteredAiosmtpd) -> None:
    with at(server.port):
        message = EmailMessage(
            "s", "b", "Sender <from@example.test>", ["To <to@example.test>"], bcc=["hidden@x.test"]
        )
        assert message.send() == 1
    (received,) = server.messages
    assert received.mail_from == "from@example.test"
    assert received.rcpt_tos == ["to@example.test", "hidden@x.test"]
    assert b"hidden@x.test" not in received.content


def test_messages_without_recipients_are_skipped(server: MeteredAiosmtpd) -> None:
    with at(server.port):
        backend = get_connection()
        nobody = EmailMessage("s", "b", "from@example.test", [])
        somebody = EmailMessage("s", "b", "from@example.test", ["to@example.test"])
        assert backend.send_messages([nobody]) == 0
        assert backend.send_messages([nobody, somebody]) == 1
        assert backend.send_messages([]) == 0
    assert len(server.messages) == 1


def test_fail_silently_is_honoured(server: MeteredAiosmtpd) -> None:
    server.recorder.refuse["nobody@example.test"] = "550 5.1.1 no such user"
    with at(server.port):
        assert send_mail("s", "b", "a@example.test", ["nobody@example.test"], True) == 0
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send_mail("s", "b", "a@example.test", ["nobody@example.test"])
        assert isinstance(caught.value, PermanentRecipientsRefused)
        batch = [
            EmailMessage("s", "b", "a@example.test", [to])
            for to in ("one@example.test", "nobody@example.test", "two@example.test")
        ]
        assert get_connection(fail_silently=True).send_messages(batch) == 2
    assert len(server.messages) == 2


def test_no_server_fails_loudly_or_silently() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once it is closed
    with at(port):
        assert send_mail("s", "b", "a@example.test", ["b@example.test"], fail_silently=True) == 0
        with pytest.raises(ConnectError):
            send_mail("s", "b", "a@example.test", ["b@example.test"])


def _silent_after_mail(conn: Conn) -> None:
    greet_and_ehlo(conn, ())
    conn.expect(b"MAIL")
    conn.stall(30)  # never answers MAIL


def test_a_reply_timeout_is_what_djangos_own_backend_raises() -> None:
    # Django's SMTP backend (smtplib) raises SMTPServerDisconnected when a
    # reply does not come; handler code written for it must catch ours too.
    with ScriptedServer(_silent_after_mail) as silent, at(silent.port, EMAIL_TIMEOUT=1):
        with pytest.raises(smtplib.SMTPServerDisconnected) as caught:
            send_mail("s", "b", "a@example.test", ["b@example.test"])
        assert isinstance(caught.value, SMTPTimeoutError)
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.stage is not None and str(caught.value.stage) == "mail"
        assert send_mail("s", "b", "a@example.test", ["b@example.test"], fail_silently=True) == 0


def test_open_checks_a_pooled_connection_and_reports_failure(server: MeteredAiosmtpd) -> None:
    with at(server.port):
        backend = get_connection()
        assert backend.open() is True  # a new pooled connection
        assert backend.open() is False  # the idle one, healthy
        backend.close()  # closes nothing: the pool outlives the backend
        assert get_connection().open() is False
    assert server.meter.total == 1
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with at(port):
        with pytest.raises(ConnectionError):
            get_connection().open()
        assert get_connection(fail_silently=True).open() is None


def test_unqualified_sender_and_recipients_go_out_as_given(server: MeteredAiosmtpd) -> None:
    # Django's own suite sends "tester" -> "django" (#15042); smtplib does too.
    with at(server.port):
        assert send_mail("s", "b", "tester", ["django"]) == 1
        with pytest.raises(ValueError, match="Invalid address"):
            send_mail("s", "b", "tester", ["bad local"])
    assert [(m.mail_from, m.rcpt_tos) for m in server.messages] == [("tester", ["django"])]


def test_a_forked_worker_opens_its_own_connection(server: MeteredAiosmtpd) -> None:
    """gunicorn --preload: the parent sent (and pooled a connection) before forking."""
    with at(server.port):
        assert send_mail("parent", "b", "a@example.test", ["b@example.test"]) == 1
        pid = os.fork()
        if pid == 0:
            try:
                sent = send_mail("child", "b", "a@example.test", ["b@example.test"])
                os._exit(0 if sent == 1 else 1)
            except BaseException:
                os._exit(2)
        end = time.monotonic() + 30
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < end:
            time.sleep(0.02)
        if not done[0]:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done[0] and os.waitstatus_to_exitcode(done[1]) == 0
        assert send_mail("parent again", "b", "a@example.test", ["b@example.test"]) == 1
    assert len(server.messages) == 3
    assert server.meter.total == 2  # the parent's connection, still in use, and the child's


# --- Django's settings, with Django's meaning ---------------------------------------------


def test_use_tls_means_starttls_is_required(server: MeteredAiosmtpd) -> None:
    with at(server.port, EMAIL_USE_TLS=True):
        with pytest.raises(TLSRequiredError):
            send_mail("s", "b", "a@example.test", ["b@example.test"])
        assert send_mail("s", "b", "a@example.test", ["b@example.test"], True) == 0
    assert server.messages == []


def test_use_tls_upgrades_with_starttls_and_verifies(
    trusted_ca: trustme.CA, start_server: Callable[..., MeteredAiosmtpd]
) -> None:
    server = start_server(tls_context=server_context(trusted_ca))
    with at(server.port, EMAIL_USE_TLS=True):
        assert send_mail("s", "b", "a@example.test", ["b@example.test"]) == 1
        result = get_connection().mailer.send_many([("a@x.test", ["b@x.test"], b"x\r\n")])[0]
    assert len(server.messages) == 2
    assert isinstance(result, SendResult) and result.tls is not None and result.tls.verified


def test_use_ssl_means_implicit_tls(
    trusted_ca: trustme.CA, start_server: Callable[..., MeteredAiosmtpd]
) -> None:
    server = start_server(implicit_tls=server_context(trusted_ca))
    with at(server.port, EMAIL_USE_SSL=True):
        assert send_mail("s", "b", "a@example.test", ["b@example.test"]) == 1
    assert len(server.messages) == 1


def test_an_unknown_certificate_authority_is_refused(
    ca: trustme.CA, start_server: Callable[..., MeteredAiosmtpd]
) -> None:
    server = start_server(implicit_tls=server_context(ca))
    with at(server.port, EMAIL_USE_SSL=True), pytest.raises(SMTPClientError):
        send_mail("s", "b", "a@example.test", ["b@example.test"])
    assert server.messages == []


def test_use_tls_and_use_ssl_together_is_an_error() -> None:
    with at(2525, EMAIL_USE_TLS=True, EMAIL_USE_SSL=True), pytest.raises(ValueError):
        get_connection()


def test_client_certificate_from_ssl_certfile_and_keyfile(
    trusted_ca: trustme.CA, tmp_path: Path, start_server: Callable[..., MeteredAiosmtpd]
) -> None:
    context = server_context(trusted_ca)
    context.verify_mode = ssl.CERT_REQUIRED  # the server demands a client certificate
    trusted_ca.configure_trust(context)
    client = trusted_ca.issue_cert("client.example.test")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(certfile))
    client.private_key_pem.write_to_path(str(keyfile))
    server = start_server(implicit_tls=context)
    with at(
        server.port,
        EMAIL_USE_SSL=True,
        EMAIL_SSL_CERTFILE=str(certfile),
        EMAIL_SSL_KEYFILE=str(keyfile),
    ):
        assert send_mail("s", "b", "a@example.test", ["b@example.test"]) == 1
    with at(server.port, EMAIL_USE_SSL=True), pytest.raises(SMTPClientError):
        send_mail("s", "b", "a@example.test", ["b@example.test"])
    assert len(server.messages) == 1


def test_a_password_without_tls_is_sent_as_django_would_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = {"user": "secret"}
    with MeteredAiosmtpd(users=users, require_tls_for_auth=False) as server:
        with at(server.port, EMAIL_HOST_USER="user", EMAIL_HOST_PASSWORD="secret"):
            with caplog.at_level(logging.WARNING, "smtpclient.contrib.django"):
                assert send_mail("s", "b", "a@example.test", ["b@example.test"]) == 1
            assert "unencrypted" in caplog.text and "secret" not in caplog.text
        with (
            at(server.port, EMAIL_HOST_USER="user", EMAIL_HOST_PASSWORD="wrong"),
            pytest.raises(smtplib.SMTPAuthenticationError) as caught,
        ):
            send_mail("s", "b", "a@example.test", ["b@example.test"])
        assert isinstance(caught.value, AuthenticationFailed)
    assert len(server.messages) == 1


def test_email_timeout_bounds_every_stage() -> None:
    with at(2525, EMAIL_TIMEOUT=7):
        timeouts = get_connection().mailer.settings.timeouts
    assert (timeouts.greeting, timeouts.mail, timeouts.data_block) == (7.0, 7.0, 7.0)
    assert timeouts.data_done >= 10.0  # the floor that prevents duplicates stays


def test_django_stays_an_optional_dependency() -> None:
    code = (
        "import sys, smtpclient, smtpclient.mailer, smtpclient.pool, smtpclient.contrib;"
        "smtpclient.Mailer; assert 'django' not in sys.modules, 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
