"""Mailer rate limits against real servers: a message rate judged from the
server's arrival times, and fewer connections after "too many connections".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from servers.arrivals import ArrivalRecorder, ConcurrencyMeter, worst_rate_excess
from servers.scripted import Conn, ScriptedServer, serve_normally
from servers.smtpd import AiosmtpdServer

from smtpclient import Mailer, SendResult, TLSMode
from smtpclient.ratelimit import RateLimit
from smtpclient.retry import RetryPolicy


def make_message(number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = "rcpt@example.test"
    message["Subject"] = f"rate {number}"
    message["Message-ID"] = f"<rate-{number}@example.test>"
    message.set_content(f"message {number}\n")
    return message


@pytest.fixture
def recorder() -> Iterator[ArrivalRecorder]:
    found = ArrivalRecorder()
    with AiosmtpdServer(recorder=found) as server:
        found.port = server.port  # type: ignore[attr-defined]
        yield found


def send_from_threads(mailer: Mailer, numbers: list[int], threads: int) -> list[object]:
    outcomes: list[object] = []
    lock = threading.Lock()

    def run(part: list[int]) -> None:
        for number in part:
            try:
                outcome: object = mailer.send(make_message(number))
            except Exception as exc:
                outcome = exc
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=run, args=(numbers[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not any(w.is_alive() for w in workers)
    return outcomes


@pytest.mark.parametrize("batched", [False, True], ids=["send", "send_many"])
def test_message_rate_holds_at_the_server(recorder: ArrivalRecorder, batched: bool) -> None:
    rate, burst, threads = 40.0, 3, 4
    with Mailer(
        "127.0.0.1",
        recorder.port,  # type: ignore[attr-defined]
        tls=TLSMode.NONE,
        max_connections=threads,
        rate_limit=RateLimit(per_second=rate, burst=burst),
    ) as mailer:
        if batched:
            outcomes: list[object] = list(mailer.send_many(make_message(n) for n in range(60)))
        else:
            outcomes = send_from_threads(mailer, list(range(60)), threads)
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert sorted(recorder.message_ids().values()) == [1] * 60
    # A message that took its token may still be on its way while later ones
    # arrive: at most one per connection in flight on top of the burst.
    excess = worst_rate_excess(recorder.times(), rate, burst + threads)
    assert excess <= 0, f"the rate was exceeded by {excess:.1f} messages"


def busy_above(meter: ConcurrencyMeter) -> object:
    """A server that greets with 421 "too many connections" beyond *limit*."""

    def handler(conn: Conn) -> None:
        with meter.lock:
            meter.open += 1
            over = meter.open > meter.limit
            if over:
                meter.refused += 1
            else:
                meter.peak = max(meter.peak, meter.open)
        try:
            if over:
                conn.reply("421 4.7.0 Too many concurrent SMTP connections; try again later")
                return
            conn.reply("220 scripted.test ESMTP")
            conn.expect(b"EHLO")
            conn.reply("250-scripted.test", "250 PIPELINING")
            serve_normally(conn)
        finally:
            with meter.lock:
                meter.open -= 1

    return handler


def test_too_many_connections_shrinks_concurrency_instead_of_retrying_hot() -> None:
    meter = ConcurrencyMeter(limit=2)
    server = ScriptedServer(busy_above(meter), max_connections=10_000)  # type: ignore[arg-type]
    with server:
        mailer = Mailer(
            "127.0.0.1",
            server.port,
            tls=TLSMode.NONE,
            max_connections=8,
            retry=RetryPolicy(attempts=30, backoff=0.02, max_backoff=0.05, jitter=0.5),
            rate_limit=RateLimit(busy_cooldown=60),
        )
        with mailer:
            outcomes = send_from_threads(mailer, list(range(80)), threads=8)
            allowed = mailer.limits.allowed
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert allowed <= 4  # halved at least once, not grown back within the cooldown
    # Eight threads retrying every 20-50 ms against a server that takes two
    # connections would be refused hundreds of times; shrinking to what the
    # server accepts stops the refusals after the first spells.
    assert meter.refused <= 16, f"{meter.refused} connections refused: retrying hot"
