"""Send mail from Celery workers: the ``smtpclient.send_message`` task and
``enqueue()`` (needs the ``celery`` extra, e.g. ``celery[redis]``).

In the web process::

    from smtpclient.contrib.celery import enqueue
    result = enqueue(message)            # an EmailMessage, or (sender, rcpts, bytes)
    result.get(timeout=60)["status"]     # "sent", "failed" or "unknown"

In the Celery configuration, the worker's Mailer settings (``Mailer``'s
keyword arguments; ``tls`` as "none", "starttls", "implicit" or
"opportunistic"; ``timeouts`` as seconds; ``rate_limit`` as messages a
second or a dict of ``RateLimit`` fields; ``ca_file`` for a private CA)::

    app.conf.smtpclient = {"host": "smtp.example.com", "port": 587,
                           "tls": "starttls", "username": "u", "password": "p",
                           "max_connections": 4, "timeouts": 30}
    app.conf.smtpclient_retry = {"attempts": 8, "first_delay": 1.0}  # optional

The task is a ``shared_task`` (every Celery app has it, apps created later
too; importing this module touches no app) with ``acks_late`` and
``reject_on_worker_lost``: a message whose worker dies is sent again by
another, so delivery is *at least once*.  A worker killed after the server
accepted a message but before the task was acknowledged sends it twice;
every message carries a Message-ID (one is added if missing) for the
receiving side to recognise the copy.  SMTP outcomes are the task's
*result* (a JSON dict, see ``smtpclient.contrib.celery_payload``), never
task exceptions; transient failures are retried by the task with
exponential backoff, never a message whose outcome is unknown.

Each worker process has its own ``Mailer`` (its own pool, its own rate
limit), created at the first task after the fork and closed when the
process shuts down.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import Any

from celery import current_app, shared_task, signals  # type: ignore[import-untyped]

from smtpclient.contrib.celery_payload import (
    Job,
    RetrySchedule,
    Verdict,
    encode,
    judge_error,
    judge_result,
)
from smtpclient.errors import SMTPClientError
from smtpclient.mailer import Mailer
from smtpclient.ratelimit import RateLimit
from smtpclient.tls import TLSMode, verifying_context

__all__ = [
    "CONFIG_KEY",
    "RETRY_CONFIG_KEY",
    "TASK_NAME",
    "close_worker_mailers",
    "enqueue",
    "mailer_options",
    "send_message",
    "worker_mailer",
]

log = logging.getLogger(__name__)

TASK_NAME = "smtpclient.send_message"
CONFIG_KEY = "smtpclient"
RETRY_CONFIG_KEY = "smtpclient_retry"
_DEFAULT_VISIBILITY_TIMEOUT = 3600.0  # kombu's default for Redis and SQS

_mailers: dict[int, Mailer] = {}  # id(app) -> this process's Mailer
_mailers_pid = os.getpid()
_lock = threading.Lock()


def mailer_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``Mailer`` keyword arguments from the ``smtpclient`` config dict.

    Raises:
        ValueError: no ``host``, an unknown ``tls`` value, or ``retry``
            (the task retries; see ``smtpclient_retry``).
        TypeError: *config* is not a mapping.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"the Celery setting {CONFIG_KEY!r} must be a dict of Mailer arguments")
    options = dict(config)
    if not options.get("host"):
        raise ValueError(f"the Celery setting {CONFIG_KEY!r} needs a 'host'")
    if "retry" in options:
        raise ValueError(
            f"'retry' in {CONFIG_KEY!r}: the task retries by itself; set "
            f"{RETRY_CONFIG_KEY!r} instead"
        )
    tls = options.get("tls")
    if isinstance(tls, str):
        try:
            options["tls"] = TLSMode(tls.lower())
        except ValueError:
            choices = ", ".join(repr(m.value) for m in TLSMode)
            raise ValueError(f"'tls' must be one of {choices}, not {tls!r}") from None
    ca_file = options.pop("ca_file", None)
    if ca_file is not None:
        options.setdefault("ssl_context", verifying_context(cafile=ca_file))
    rate = options.get("rate_limit")
    if isinstance(rate, Mapping):
        options["rate_limit"] = RateLimit(**rate)
    return options


def worker_mailer(app: Any) -> Mailer:
    """This process's ``Mailer`` for *app*, created on first use.

    Never shared across a fork: a child process that finds its parent's
    Mailers forgets them (their pools drop inherited connections without a
    word) and makes its own.

    Raises:
        ValueError, TypeError: the ``smtpclient`` setting is missing or wrong.
    """
    global _mailers_pid  # noqa: PLW0603
    with _lock:
        if _mailers_pid != os.getpid():
            _mailers.clear()
            _mailers_pid = os.getpid()
        mailer = _mailers.get(id(app))
        if mailer is None or mailer.closed:
            config = app.conf.get(CONFIG_KEY)
            if config is None:
                raise ValueError(f"set the Celery setting {CONFIG_KEY!r} (Mailer arguments)")
            mailer = _mailers[id(app)] = Mailer(**mailer_options(config))
            log.info("process %d: %r for Celery app %s", os.getpid(), mailer, app.main)
        return mailer


def close_worker_mailers(timeout: float | None = 30.0) -> None:
    """Close this process's Mailers (QUIT on their pooled connections)."""
    with _lock:
        mailers = list(_mailers.values()) if _mailers_pid == os.getpid() else []
        _mailers.clear()
    for mailer in mailers:
        mailer.close(timeout)


def _forget_after_fork(**_: Any) -> None:
    global _lock, _mailers_pid  # noqa: PLW0603
    _lock = threading.Lock()  # a parent thread may have held it at the fork
    _mailers.clear()
    _mailers_pid = os.getpid()


def _close_at_shutdown(**_: Any) -> None:
    close_worker_mailers(10.0)


os.register_at_fork(after_in_child=_forget_after_fork)
signals.worker_process_init.connect(_forget_after_fork, weak=False)
signals.worker_process_shutdown.connect(_close_at_shutdown, weak=False)
signals.worker_shutdown.connect(_close_at_shutdown, weak=False)  # solo/threads pools


def _schedule(app: Any) -> RetrySchedule:
    return RetrySchedule(**dict(app.conf.get(RETRY_CONFIG_KEY) or {}))


def _visibility_timeout(app: Any) -> float:
    options = app.conf.get("broker_transport_options") or {}
    return float(options.get("visibility_timeout", _DEFAULT_VISIBILITY_TIMEOUT))


def _attempt(mailer: Mailer, job: Job, schedule: RetrySchedule) -> Verdict:
    try:
        result = mailer.sendmail(job.sender, job.recipients, job.data, smtputf8=job.smtputf8)
    except (SMTPClientError, ValueError, TypeError) as exc:
        # ValueError/TypeError: the message cannot be sent as it is (a bad
        # address, a line too long); an outcome, not a crash of the task.
        return judge_error(job, exc, schedule)
    return judge_result(job, result, schedule)


def _send_message(task: Any, payload: dict[str, Any]) -> dict[str, Any]:
    app = task.app
    try:
        job = Job.from_payload(payload)
    except ValueError as exc:
        log.error("%s: %s", TASK_NAME, exc)
        return {"status": "failed", "error": str(exc), "attempts": 1, "accepted": [], "refused": {}}
    schedule = _schedule(app)
    verdict = _attempt(worker_mailer(app), job, schedule)
    if not verdict.retry:
        return verdict.result
    delay = schedule.delay(job.attempt, _visibility_timeout(app))
    again = Job(
        verdict.job.sender,
        verdict.retry,
        job.data,
        job.message_id,
        job.smtputf8,
        job.attempt + 1,
        verdict.job.accepted,
        verdict.job.refused,
    )
    log.info(
        "%s %s: attempt %d left %d recipient(s) to retry (%s); again in %.1f s",
        TASK_NAME,
        job.message_id,
        job.attempt,
        len(verdict.retry),
        verdict.result.get("error") or "refused with 4xx",
        delay,
    )
    raise task.retry(args=(again.to_payload(),), kwargs={}, countdown=delay)


send_message = shared_task(
    name=TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the task counts its own attempts (smtpclient_retry)
    serializer="json",
)(_send_message)


def enqueue(
    message: Message | tuple[str, Sequence[str] | str, bytes],
    *,
    app: Any = None,
    **options: Any,
) -> Any:
    """Queue *message* for the ``smtpclient.send_message`` task; return the
    Celery ``AsyncResult`` (its result is the task's JSON dict).

    *message* is an ``email.message.Message`` (envelope from its headers,
    Bcc not transmitted) or a ``(sender, recipients, bytes)`` tuple.  *app*
    is the Celery app (default: the current one); other keyword arguments
    go to ``apply_async`` (``queue``, ``priority``, ``countdown``, ...).
    The payload is JSON (bytes as base64), never pickle.

    Raises:
        TypeError, ValueError: as ``celery_payload.encode`` (a message that
            cannot be queued as given), or a *serializer* other than "json";
            the broker's errors as ``apply_async``.
    """
    if options.setdefault("serializer", "json") != "json":
        raise ValueError("the smtpclient.send_message payload travels as JSON only")
    job = encode(message)
    celery_app = app if app is not None else current_app
    return celery_app.tasks[TASK_NAME].apply_async(args=(job.to_payload(),), **options)
