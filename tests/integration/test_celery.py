"""smtpclient.contrib.celery against real parts: redis-server as broker and
result backend, real ``celery worker --pool=prefork --concurrency=2``
subprocesses, and aiosmtpd (Postfix for one case) recording each message's
arrival and Message-ID.

Evidence comes from the server side (what arrived, how often, when) and
from the task results read back through the result backend.  Every wait is
bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from celery.result import ResultSet
from servers.arrivals import ArrivalRecorder, ArrivalServer, worst_rate_excess
from servers.celery_worker import REPOSITORY, CeleryWorker, client_app, close_client_app
from servers.metering import message_id
from servers.postfix import PostfixServer
from servers.redis import RedisServer
from servers.smtpd import Received
from servers.sockets_of import pid_of_client_port

from smtpclient.contrib.celery import enqueue

RESULT_WAIT = 90.0  # seconds: generous for a loaded 2-CPU machine, below pytest-timeout
FAST_RETRIES = {"attempts": 4, "first_delay": 0.2, "max_delay": 1.0, "jitter": 0.25}


def _start_or_fail(server: Any) -> Any:
    try:
        return server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = _start_or_fail(RedisServer())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[ArrivalServer]:
    with ArrivalServer(ArrivalRecorder()) as server:
        yield server


def smtp_conf(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "smtpclient": {
            "host": "127.0.0.1",
            "port": port,
            "tls": "none",
            "max_connections": 2,
            "timeouts": 20,
            **extra,
        },
        "smtpclient_retry": FAST_RETRIES,
    }


@pytest.fixture(scope="module")
def worker(redis: RedisServer, smtp: ArrivalServer) -> Iterator[CeleryWorker]:
    started = _start_or_fail(CeleryWorker(redis.url, smtp_conf(smtp.port)))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def recorder(smtp: ArrivalServer) -> Iterator[ArrivalRecorder]:
    smtp.arrivals.reset()
    yield smtp.arrivals
    smtp.drop_clients()  # the workers' pooled connections: not this test's leak


def make_message(tag: str, number: int, *to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = ", ".join(to or ("rcpt@example.test",))
    message["Subject"] = f"{tag} {number}"
    message["Message-ID"] = f"<{tag}-{number}@example.test>"
    message.set_content(f"{tag} message {number}\n")
    return message


def send_all(broker: str, messages: list[Any], **conf: Any) -> list[dict[str, Any]]:
    """Enqueue *messages* from a fresh client app, wait for every result (bounded)
    and return them as the plain dicts the task produced.  The client's
    AsyncResults are gone and its connections closed on return."""
    client = client_app(broker, **conf)
    try:
        queued = [enqueue(message, app=client) for message in messages]
        values: list[dict[str, Any]] = ResultSet(queued, app=client).join(
            timeout=RESULT_WAIT, propagate=True
        )
        del queued
        gc.collect()  # AsyncResult.__del__ unsubscribes: before the close, not after
        return values
    finally:
        close_client_app(client)


def test_hundreds_of_messages_are_each_sent_exactly_once(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    results = send_all(redis.url, [make_message("bulk", n) for n in range(300)])
    assert Counter(r["status"] for r in results) == {"sent": 300}
    assert all(r["accepted"] == ["rcpt@example.test"] and r["refused"] == {} for r in results)
    assert all(r["attempts"] == 1 and r["reply"][0] == 250 for r in results)
    assert [r["message_id"] for r in results] == [f"<bulk-{n}@example.test>" for n in range(300)]
    arrived = recorder.message_ids()
    assert arrived == Counter({f"<bulk-{n}@example.test>": 1 for n in range(300)})
    # Each pool process made its own Mailer, after the fork; the main process none.
    makers = {int(pid) for pid in re.findall(r"process (\d+): <Mailer", worker.log())}
    assert makers and makers <= set(worker.children())
    assert worker.pid not in makers


def test_raw_tuple_gets_a_message_id_and_keeps_its_envelope(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    raw = b"From: a@example.test\r\nSubject: raw\r\n\r\nbody\r\n"
    (value,) = send_all(
        redis.url, [("bounce@example.test", ["x@example.test", "y@example.test"], raw)]
    )
    assert value["status"] == "sent"
    assert sorted(value["accepted"]) == ["x@example.test", "y@example.test"]
    (stored,) = recorder.messages
    assert stored.mail_from == "bounce@example.test"
    assert message_id(stored.content) == value["message_id"] is not None
    assert stored.content.endswith(raw)


def test_451_to_the_first_mail_commands_is_retried_and_each_arrives_once(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    recorder.fail_first_mails = 6
    results = send_all(redis.url, [make_message("busy", n) for n in range(20)])
    assert Counter(r["status"] for r in results) == {"sent": 20}
    # Six refusals, each cost one message one more attempt.
    assert sum(r["attempts"] - 1 for r in results) == 6
    assert recorder.mails_failed == 6
    assert recorder.message_ids() == Counter({f"<busy-{n}@example.test>": 1 for n in range(20)})


def test_only_the_recipients_refused_with_4xx_are_retried(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    recorder.refuse_times["later@example.test"] = ("451 4.2.1 Mailbox busy, try later", 2)
    recorder.refuse["gone@example.test"] = "550 5.1.1 No such user"
    message = make_message(
        "mixed", 1, "now@example.test", "later@example.test", "gone@example.test"
    )
    (value,) = send_all(redis.url, [message])
    assert value["status"] == "sent"
    assert value["attempts"] == 3
    assert value["accepted"] == ["now@example.test", "later@example.test"]
    assert value["refused"] == {"gone@example.test": [550, "5.1.1 No such user"]}
    # First to "now" (the others refused), then "later" alone, twice refused
    # at RCPT, accepted the third time: "now" never got a second copy and the
    # permanently refused address was not asked again.
    assert [r.rcpt_tos for r in recorder.messages] == [["now@example.test"], ["later@example.test"]]
    assert recorder.refusals["later@example.test"] == 2


def test_connection_lost_after_the_final_dot_is_unknown_and_not_retried(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    recorder.hang_up_after_dot.add("lost@example.test")
    (value,) = send_all(redis.url, [make_message("lost", 1, "lost@example.test")])
    # The task's final result (not a retry): one attempt, outcome unknown.
    assert value["status"] == "unknown"
    assert value["attempts"] == 1
    assert value["accepted"] == []
    assert "outcome unknown" in value["error"]
    assert recorder.message_ids() == Counter({"<lost-1@example.test>": 1})


def test_permanent_refusal_fails_at_once_with_the_reply(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    recorder.refuse["nobody@example.test"] = "550 5.1.1 <nobody@example.test>: unknown user"
    (value,) = send_all(redis.url, [make_message("perm", 1, "nobody@example.test")])
    assert value["status"] == "failed"
    assert value["attempts"] == 1
    assert value["reply"] == [550, "5.1.1 <nobody@example.test>: unknown user"]
    assert value["refused"] == {
        "nobody@example.test": [550, "5.1.1 <nobody@example.test>: unknown user"]
    }
    assert recorder.messages == []


def test_worker_child_killed_mid_batch_every_message_arrives_at_least_once(
    redis: RedisServer, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    count, kill_at = 150, 40
    killed: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def kill_the_sender(received: Received, peer: Any) -> None:
        # The worker child that sent this message is waiting for the reply
        # to its final dot: the server has the message, the task is not
        # acknowledged -- the case at-least-once delivery duplicates.
        with lock:
            if killed or len(recorder.messages) < kill_at:
                return
            pid = pid_of_client_port(peer[1], worker.children())
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, message_id(received.content)))

    recorder.on_data = kill_the_sender
    results = send_all(redis.url, [make_message("loss", n) for n in range(count)])
    assert killed, "no worker child was killed"
    arrived = recorder.message_ids()
    expected = {f"<loss-{n}@example.test>" for n in range(count)}
    lost = expected - set(arrived)
    duplicates = sum(n - 1 for n in arrived.values())
    print(
        f"\nworker loss: {count} messages, killed pid {killed[0][0]} while it awaited the "
        f"reply to {killed[0][1]}; sent={sum(r['status'] == 'sent' for r in results)} "
        f"arrived={len(set(arrived))} duplicates={duplicates} lost={len(lost)}"
    )
    assert Counter(r["status"] for r in results) == {"sent": count}
    assert set(arrived) == expected and not lost
    # At most the messages in flight when the child died (one per child).
    assert duplicates <= worker.concurrency
    assert arrived[killed[0][1]] == 2  # the one it was sending went again


def test_rate_limit_holds_across_worker_processes(
    redis: RedisServer, recorder: ArrivalRecorder, smtp: ArrivalServer
) -> None:
    per_second, burst = 10.0, 2
    conf = smtp_conf(smtp.port, rate_limit={"per_second": per_second, "burst": burst})
    conf["task_default_queue"] = "rate-limited"
    with CeleryWorker(redis.url, conf) as limited:
        messages = [make_message("rate", n) for n in range(60)]
        results = send_all(redis.url, messages, task_default_queue="rate-limited")
        processes = limited.concurrency
    assert Counter(r["status"] for r in results) == {"sent": 60}
    # Each worker process has its own bucket: the server may see their sum,
    # plus one burst from each, plus the message each may have in flight.
    excess = worst_rate_excess(recorder.times(), per_second * processes, (burst + 1) * processes)
    assert excess <= 0, f"the rate was exceeded by {excess:.1f} messages"
    # Each child closed its Mailer at shutdown: QUIT, not a dropped socket.
    assert recorder.quits >= 1


def test_hundred_messages_through_postfix_each_delivered_once(
    redis: RedisServer, postfix: PostfixServer
) -> None:
    postfix.clear_maildir()
    conf = smtp_conf(postfix.port)
    conf["task_default_queue"] = "postfix"
    with CeleryWorker(redis.url, conf):
        messages = [make_message("pf", n, "inbox@example.test") for n in range(100)]
        results = send_all(redis.url, messages, task_default_queue="postfix")
    assert Counter(r["status"] for r in results) == {"sent": 100}
    assert all(r["queue_id"] for r in results)  # Postfix's "queued as ..."
    stored = postfix.maildir_messages(count=100, wait=60)
    assert Counter(message_id(m) for m in stored) == Counter(
        {f"<pf-{n}@example.test>": 1 for n in range(100)}
    )


def test_importing_touches_no_app_and_later_apps_get_the_task() -> None:
    code = (
        "import smtpclient.contrib.celery\n"
        "from celery import Celery, _state\n"
        "assert _state.default_app is None, 'an app was created at import'\n"
        "app = Celery('later', set_as_current=False)\n"
        "task = app.tasks['smtpclient.send_message']\n"
        "assert task.acks_late and task.reject_on_worker_lost and task.serializer == 'json'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_enqueue_refuses_what_it_cannot_carry() -> None:
    # Checked before any app or broker is touched (app=None: the current app).
    app = None
    with pytest.raises(ValueError, match="JSON only"):
        enqueue(make_message("pickle", 1), app=app, serializer="pickle")
    with pytest.raises(TypeError, match="Message or a"):
        enqueue("not a message", app=app)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be bytes"):
        enqueue(("a@example.test", ["b@example.test"], "text"), app=app)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no recipients"):
        message = EmailMessage()
        message["From"] = "a@example.test"
        enqueue(message, app=app)


# --- Django: a backend that queues instead of sending -------------------------------

CELERY_BACKEND = "smtpclient.contrib.celery_django.CeleryEmailBackend"


@pytest.fixture
def django_client(redis: RedisServer) -> Iterator[Any]:
    """Django configured for the queueing backend, with a client Celery app
    (closed afterwards, once the test's results are gone)."""
    from django.conf import settings  # noqa: PLC0415 (the django extra)

    if not settings.configured:
        settings.configure(EMAIL_BACKEND=CELERY_BACKEND, DEFAULT_CHARSET="utf-8")
    saved = {name: getattr(settings, name, None) for name in ("EMAIL_BACKEND", "SMTPCLIENT_CELERY")}
    client = client_app(redis.url)
    settings.EMAIL_BACKEND = CELERY_BACKEND
    settings.SMTPCLIENT_CELERY = {"app": client}
    try:
        yield client
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        gc.collect()
        close_client_app(client)


def outcomes(backend: Any, client: Any) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = ResultSet(backend.last_results, app=client).join(
        timeout=RESULT_WAIT
    )
    backend.last_results = []
    return values


def test_django_email_backend_setting_queues_and_the_worker_sends(
    django_client: Any, worker: CeleryWorker, recorder: ArrivalRecorder
) -> None:
    from django.core import mail  # noqa: PLC0415

    connection = mail.get_connection()
    messages = [
        mail.EmailMessage(f"hello {n}", "body\n", "Web <web@example.test>", [f"u{n}@example.test"])
        for n in range(3)
    ]
    messages.append(mail.EmailMessage("nobody", "body\n", "web@example.test", []))
    assert connection.send_messages(messages) == 3  # queued; the one without recipients skipped
    values = outcomes(connection, django_client)
    assert [v["status"] for v in values] == ["sent"] * 3
    assert sorted(m.rcpt_tos[0] for m in recorder.messages) == [
        "u0@example.test",
        "u1@example.test",
        "u2@example.test",
    ]
    assert {m.mail_from for m in recorder.messages} == {"web@example.test"}
    # Django's own Message-IDs travel: the results name what arrived
    assert sorted(v["message_id"] for v in values) == sorted(recorder.message_ids())


def test_django_mailers_style_options_choose_app_and_queue(
    redis: RedisServer, django_client: Any, smtp: ArrivalServer, recorder: ArrivalRecorder
) -> None:
    from django.core import mail  # noqa: PLC0415

    from smtpclient.contrib.celery_django import CeleryEmailBackend  # noqa: PLC0415

    conf = smtp_conf(smtp.port)
    conf["task_default_queue"] = "django-mail"
    with CeleryWorker(redis.url, conf, concurrency=1):
        # What Django 6.1 does with MAILERS = {"transactional": {"BACKEND": ...,
        # "OPTIONS": {...}}}: the alias and the OPTIONS as keyword arguments.
        options = {"app": django_client, "queue": "django-mail", "priority": 3}
        backend = CeleryEmailBackend(alias="transactional", **options)
        message = mail.EmailMessage("via mailers", "body\n", "web@example.test", ["m@example.test"])
        assert backend.send_messages([message]) == 1
        (value,) = outcomes(backend, django_client)
    assert value["status"] == "sent"
    assert [m.rcpt_tos for m in recorder.messages] == [["m@example.test"]]


def test_django_backend_with_the_broker_down(django_client: Any) -> None:
    from django.core import mail  # noqa: PLC0415

    from smtpclient.contrib.celery_django import CeleryEmailBackend  # noqa: PLC0415

    # Nothing listens on port 1; do not retry (Celery's defaults would, for many seconds).
    down = client_app(
        "redis://127.0.0.1:1/0",
        task_publish_retry=False,
        result_backend_transport_options={"retry_policy": {"max_retries": 1, "interval_max": 0.1}},
    )
    try:
        message = mail.EmailMessage("x", "y\n", "web@example.test", ["a@example.test"])
        quiet = CeleryEmailBackend(fail_silently=True, app=down)
        assert quiet.send_messages([message]) == 0
        loud = CeleryEmailBackend(app=down)
        with pytest.raises(Exception, match=r"(?i)connect|refused"):
            loud.send_messages([message])
    finally:
        close_client_app(down)
