"""python -m benchmarks.celery_throughput [--messages N] [--runs N] [--json FILE]

Messages a second through Celery -- ``enqueue()`` in this process, redis as
broker and result backend, a real ``celery worker --pool=prefork
--concurrency=2`` sending with ``smtpclient.send_message`` -- compared, in the
same run and against the same Postfix, with one process using a ``Mailer``
directly (``send()`` in a loop, and ``send_many()``).

The server is a throwaway Postfix built by tests/servers/ (its ``discard:``
transport, queue on /dev/shm when there is one, pinned to the server CPU as
in benchmarks/mta.py).  A message counts when its result says "sent" (the
task's result, or the Mailer's ``SendResult``); Postfix's own log (one
``status=sent`` line per message handed to discard) must agree.  The
contenders alternate run by run; each figure is the median.  Needs root (for
Postfix) and the ``celery`` extra; nothing here is collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from benchmarks.sink import SERVER_CPU

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from servers.celery_worker import CeleryWorker, client_app, close_client_app  # noqa: E402
from servers.postfix import PostfixServer  # noqa: E402
from servers.redis import RedisServer  # noqa: E402

from smtpclient import Mailer, SendResult, TLSMode  # noqa: E402
from smtpclient.contrib.celery import enqueue  # noqa: E402

BODY = "All work and no play makes Jack a dull boy.\n" * 47  # about 2 KiB


def make_message(run: str, number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "bench@example.test"
    message["To"] = "sink@example.test"
    message["Subject"] = f"{run} {number}"
    message["Message-ID"] = f"<{run}-{number}@bench.example.test>"
    message.set_content(BODY)
    return message


@contextlib.contextmanager
def postfix_discard() -> Iterator[PostfixServer]:
    saved_affinity, saved_tmp = os.sched_getaffinity(0), tempfile.tempdir
    os.sched_setaffinity(0, {SERVER_CPU})  # Postfix inherits the mask
    if Path("/dev/shm").is_dir():
        tempfile.tempdir = "/dev/shm"
    try:
        server = PostfixServer(discard=True).start()
    finally:
        os.sched_setaffinity(0, saved_affinity)
        tempfile.tempdir = saved_tmp
    try:
        yield server
    finally:
        server.stop()


def discarded(postfix: PostfixServer) -> int:
    return sum(
        1
        for line in postfix.maillog().splitlines()
        if "/discard[" in line and " status=sent " in line
    )


def wait_discarded(postfix: PostfixServer, expected: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = discarded(postfix)
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def run_direct_send(postfix: PostfixServer, count: int, tag: str) -> tuple[float, int]:
    messages = [make_message(tag, n) for n in range(count)]
    with Mailer(postfix.host, postfix.port, tls=TLSMode.NONE, max_connections=1) as mailer:
        mailer.send(make_message(tag + "-warm", 0))
        started = time.perf_counter()
        sent = sum(isinstance(mailer.send(m), SendResult) for m in messages)
        elapsed = time.perf_counter() - started
    return elapsed, sent + 1


def run_direct_many(postfix: PostfixServer, count: int, tag: str) -> tuple[float, int]:
    messages = [make_message(tag, n) for n in range(count)]
    with Mailer(postfix.host, postfix.port, tls=TLSMode.NONE, max_connections=1) as mailer:
        mailer.send(make_message(tag + "-warm", 0))
        started = time.perf_counter()
        outcomes = mailer.send_many(messages)
        elapsed = time.perf_counter() - started
    return elapsed, sum(isinstance(o, SendResult) for o in outcomes) + 1


def run_celery(redis_url: str, count: int, tag: str) -> tuple[float, int, float]:
    """Elapsed from the first enqueue to the last result, messages sent, and
    the enqueue rate seen by the web process (messages/s)."""
    from celery.result import ResultSet  # noqa: PLC0415

    client = client_app(redis_url)
    try:
        enqueue(make_message(tag + "-warm", 0), app=client).get(timeout=60)
        messages = [make_message(tag, n) for n in range(count)]
        started = time.perf_counter()
        queued = [enqueue(m, app=client) for m in messages]
        enqueued = time.perf_counter() - started
        values = ResultSet(queued, app=client).join(timeout=600)
        elapsed = time.perf_counter() - started
        del queued
        gc.collect()
    finally:
        close_client_app(client)
    return elapsed, sum(v["status"] == "sent" for v in values) + 1, count / enqueued


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.celery_throughput")
    parser.add_argument("--messages", type=int, default=500, help="per run (default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    count, runs = args.messages, args.runs

    rates: dict[str, list[float]] = {
        "celery-2-workers": [],
        "mailer-send": [],
        "mailer-send_many": [],
    }
    enqueue_rates: list[float] = []
    expected = 0
    load = os.getloadavg()
    with postfix_discard() as postfix, RedisServer() as redis:
        conf = {
            "smtpclient": {"host": postfix.host, "port": postfix.port, "tls": "none"},
            "worker_prefetch_multiplier": 4,  # Celery's default (the tests use 1)
        }
        with CeleryWorker(redis.url, conf, concurrency=2):
            contenders: dict[str, Callable[[str], tuple[float, int]]] = {
                "mailer-send": lambda tag: run_direct_send(postfix, count, tag),
                "mailer-send_many": lambda tag: run_direct_many(postfix, count, tag),
            }
            for run in range(runs):
                elapsed, sent, enqueue_rate = run_celery(redis.url, count, f"celery{run}")
                assert sent == count + 1, f"celery: only {sent} of {count + 1} sent"
                rates["celery-2-workers"].append(count / elapsed)
                enqueue_rates.append(enqueue_rate)
                expected += sent
                for name, contender in contenders.items():
                    elapsed, sent = contender(f"{name}{run}")
                    assert sent == count + 1, f"{name}: only {sent} of {count + 1} sent"
                    rates[name].append(count / elapsed)
                    expected += sent
        counted = wait_discarded(postfix, expected)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"celery throughput: {count} messages per run, {runs} runs per contender, median shown; "
        f"{os.cpu_count()} CPUs, Postfix pinned to CPU {SERVER_CPU}; "
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'contender':<20} {'msg/s':>8} {'spread':>7}  vs mailer-send")
    for name, values in rates.items():
        spread = (max(values) - min(values)) / medians[name]
        ratio = medians[name] / medians["mailer-send"]
        print(f"{name:<20} {medians[name]:>8.0f} {spread:>6.0%}  {ratio:>6.2f}x")
    print(f"enqueue() in the web process: {statistics.median(enqueue_rates):.0f} messages/s")
    print(
        f"Postfix counted {counted} of {expected} messages "
        f"({'counted ok' if counted == expected else 'MISMATCH'})"
    )
    if args.json:
        figures: dict[str, Any] = {
            "messages": count,
            "runs": runs,
            "rates": rates,
            "medians": medians,
            "enqueue_rate": statistics.median(enqueue_rates),
            "counted": counted,
            "expected": expected,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if counted == expected else 1


if __name__ == "__main__":
    sys.exit(main())
