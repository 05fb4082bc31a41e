"""smtpclient.contrib.flask with a real Flask app (test client) and a real
aiosmtpd server: one shared Mailer per app, not closed per request."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from servers.metering import MeteredAiosmtpd
from servers.smtpd import Recorder

from smtpclient import Mailer, TLSMode
from smtpclient.contrib.flask import Mail

REPO = Path(__file__).resolve().parents[2]


def message(n: int = 0) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.test"
    msg["To"] = f"user{n}@example.test"
    msg["Subject"] = f"hello {n}"
    msg.set_content("body\n")
    return msg


def make_app(port: int, **config: Any) -> tuple[Flask, Mail]:
    app = Flask("flask_mail_test")
    app.config["SMTPCLIENT"] = {"host": "127.0.0.1", "port": port, "tls": "none", **config}
    mail = Mail()
    mail.init_app(app)

    @app.post("/send/<int:n>")
    def send(n: int) -> dict[str, Any]:
        result = mail.send(message(n))
        return {"accepted": sorted(result.accepted)}

    return app, mail


@pytest.fixture
def server() -> Iterator[MeteredAiosmtpd]:
    with MeteredAiosmtpd() as smtpd:
        yield smtpd


def test_requests_share_one_connection_that_outlives_each_request(
    server: MeteredAiosmtpd,
) -> None:
    app, mail = make_app(server.port)
    try:
        client = app.test_client()
        for n in range(3):
            response = client.post(f"/send/{n}")
            assert response.status_code == 200
            assert response.get_json() == {"accepted": [f"user{n}@example.test"]}
        # teardown_appcontext ran after each request: the Mailer stayed open.
        assert not mail.mailer(app).closed
        assert [m.rcpt_tos for m in server.messages] == [
            [f"user{n}@example.test"] for n in range(3)
        ]
        assert server.meter.total == 1
    finally:
        mail.close(app)
    assert server.meter.total == 1


def test_threads_share_a_bounded_pool(server: MeteredAiosmtpd) -> None:
    app, mail = make_app(server.port, max_connections=2)
    errors: list[BaseException] = []

    def request(n: int) -> None:
        try:
            assert app.test_client().post(f"/send/{n}").status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(12)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(server.messages) == 12
        assert server.meter.peak <= 2
    finally:
        mail.close(app)


def test_close_then_send_opens_a_new_mailer(server: MeteredAiosmtpd) -> None:
    app, mail = make_app(server.port)
    first = mail.mailer(app)
    with app.app_context():
        mail.send(message())
        mail.close()
        assert first.closed
        mail.send(message(1))
        assert mail.mailer() is not first
        mail.close()
    assert server.meter.total == 2


def test_each_app_has_its_own_mailer_and_config(server: MeteredAiosmtpd) -> None:
    one, mail_one = make_app(server.port)
    two, mail_two = make_app(server.port, max_connections=1)
    try:
        assert isinstance(mail_one.mailer(one), Mailer)
        assert mail_one.mailer(one) is not mail_two.mailer(two)
        assert mail_one.mailer(one) is mail_one.mailer(one)
        assert mail_two.mailer(two).settings.tls is TLSMode.NONE
    finally:
        mail_one.close(one)
        mail_two.close(two)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (None, 'app.config["SMTPCLIENT"] must be a dict'),
        ({"port": 25}, 'with a "host"'),
        ({"host": "127.0.0.1", "tls": "ssl"}, "unknown tls 'ssl'"),
    ],
)
def test_bad_config_is_an_error_at_init_app(config: Any, words: str) -> None:
    app = Flask("bad_config")
    if config is not None:
        app.config["SMTPCLIENT"] = config
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("[", r"\[")):
        Mail(app)


def test_without_init_app_the_error_says_so() -> None:
    app = Flask("no_init")
    with pytest.raises(RuntimeError, match=r"init_app\(app\) was not called"):
        Mail().mailer(app)


class QuitCounter(Recorder):
    quits: int = 0

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"


def test_mailer_is_closed_politely_at_interpreter_exit() -> None:
    recorder = QuitCounter()
    with MeteredAiosmtpd(recorder=recorder) as smtpd:
        script = textwrap.dedent(
            f"""
            from email.message import EmailMessage
            from flask import Flask
            from smtpclient.contrib.flask import Mail
            app = Flask("exit_test")
            app.config["SMTPCLIENT"] = {{"host": "127.0.0.1", "port": {smtpd.port},
                                        "tls": "none"}}
            mail = Mail(app)
            msg = EmailMessage()
            msg["From"] = "a@example.test"
            msg["To"] = "b@example.test"
            msg.set_content("x")
            with app.app_context():
                mail.send(msg)
            """
        )
        env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        assert len(smtpd.messages) == 1
        assert recorder.quits == 1  # the pooled connection got its QUIT at exit
