"""The soak run: many threads, thousands of messages, one Mailer, a server
that misbehaves on purpose -- and an audit of every message at the end.

Each message has a unique ``Message-ID`` carrying its number.  The client
files each message under exactly one outcome (delivered, refused, deferred,
outcome-unknown); the server's ledger says which it really accepted.  The
run passes when:

* every message has exactly one client outcome;
* delivered  => the server accepted it exactly once;
* refused or deferred => the server never accepted it and never received
  it whole without answering (that must be reported as outcome-unknown);
* outcome-unknown => the server accepted it at most once (it may have it);
* no message was accepted twice, and nothing unidentified arrived;
* open descriptors and threads are back where they started;
* memory is flat: the traced heap at the end is within a small margin of
  the heap a fifth of the way in.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import threading
import time
import tracemalloc
from email.message import EmailMessage

from smtpclient import Mailer, Timeouts, TLSMode
from smtpclient.errors import PermanentError, SMTPClientError, TransientError
from smtpclient.results import SendResult
from smtpclient.retry import RetryPolicy
from soak.faultserver import FaultServer, Ledger

__all__ = ["Settings", "run"]

OUTCOMES = ("delivered", "refused", "deferred", "outcome-unknown", "not-a-library-error")
DELIVERED, REFUSED, DEFERRED, UNKNOWN, BUG = range(1, 6)


@dataclasses.dataclass(frozen=True)
class Settings:
    messages: int = 5000
    threads: int = 16
    seed: int = 1
    fault_rate: float = 0.02
    connections: int = 8
    batch: int = 8  # send_many batch size for the threads that batch
    stall: float = 1.5
    late_dot: float = 11.0
    stage_timeout: float = 1.0
    trace_memory: bool = True  # tracemalloc: exact heap, but its own bookkeeping grows RSS
    memory_margin: int = 2 * 1024 * 1024  # traced-heap growth allowed (bytes)
    rss_margin: int = 16 * 1024 * 1024  # RSS growth allowed without tracemalloc (bytes)


def _message(number: int, seed: int, rng: random.Random) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"sender{number % 7}@soak.test"
    message["To"] = ", ".join(f"rcpt{number % 11 + i}@soak.test" for i in range(rng.randint(1, 2)))
    message["Subject"] = f"soak {seed} message {number}"
    message["Message-ID"] = f"<soak-{number}@{seed}.soak.test>"
    lines = rng.randint(1, 400)
    message.set_content("".join(f".{number} line {i} of the body\n" for i in range(lines)))
    return message


def _classify(outcome: object) -> int:
    if isinstance(outcome, SendResult):
        return DELIVERED if outcome.accepted else BUG
    if isinstance(outcome, SMTPClientError):
        if outcome.outcome_unknown:
            return UNKNOWN
        if isinstance(outcome, PermanentError):
            return REFUSED
        if isinstance(outcome, TransientError):
            return DEFERRED
        return REFUSED  # ProtocolError: the server broke the protocol; not delivered
    return BUG


class _Progress:
    """Hands out message numbers to the threads and samples memory."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.next = 0
        self.done = 0
        self.lock = threading.Lock()
        self.samples: list[tuple[int, int, int]] = []  # (messages done, traced, rss)
        self.marks = [total * i // 10 for i in range(1, 11)]

    def take(self, count: int) -> range:
        with self.lock:
            start = self.next
            self.next = min(self.total, start + count)
            return range(start, self.next)

    def finished(self, count: int) -> None:
        with self.lock:
            self.done += count
            due = bool(self.marks) and self.done >= self.marks[0]
            while self.marks and self.done >= self.marks[0]:
                self.marks.pop(0)
        if due:
            # Collected first: cycles freed late would look like growth.
            gc.collect()
            sample = (self.done, tracemalloc.get_traced_memory()[0], _rss())
            with self.lock:
                self.samples.append(sample)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _worker(
    mailer: Mailer, settings: Settings, progress: _Progress, outcomes: bytearray, batching: bool
) -> None:
    rng = random.Random(f"{settings.seed}:{threading.current_thread().name}")  # noqa: S311
    while True:
        numbers = progress.take(settings.batch if batching else 1)
        if not numbers:
            return
        messages = [_message(n, settings.seed, rng) for n in numbers]
        results: list[object]
        if batching:
            results = list(mailer.send_many(messages))
        else:
            try:
                results = [mailer.send(messages[0])]
            except Exception as exc:
                results = [exc]
        for number, result in zip(numbers, results, strict=True):
            if outcomes[number]:
                outcomes[number] = BUG  # a second outcome for one message
            else:
                outcomes[number] = _classify(result)
        progress.finished(len(numbers))


def run(settings: Settings) -> tuple[bool, str]:
    """Run the soak; return (passed, report)."""
    gc.collect()
    fds_before, threads_before = _fds(), threading.active_count()
    if settings.trace_memory:
        tracemalloc.start()
    ledger = Ledger(settings.messages)
    outcomes = bytearray(settings.messages)
    progress = _Progress(settings.messages)
    server = FaultServer(
        ledger,
        seed=settings.seed,
        rate=settings.fault_rate,
        stall=settings.stall,
        late_dot=settings.late_dot,
    ).start()
    timeouts = dataclasses.replace(
        Timeouts.uniform(settings.stage_timeout), data_done=10.0, total=None
    )
    mailer = Mailer(
        "127.0.0.1",
        server.port,
        tls=TLSMode.NONE,
        timeouts=timeouts,
        max_connections=settings.connections,
        retry=RetryPolicy(attempts=2, backoff=0.05, max_backoff=0.2),
        checkout_timeout=60.0,
        max_messages=50,
        health_check_after=1.0,
    )
    start = time.monotonic()
    workers = [
        threading.Thread(
            target=_worker,
            args=(mailer, settings, progress, outcomes, index % 2 == 1),
            name=f"soak-client-{index}",
        )
        for index in range(settings.threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    took = time.monotonic() - start
    mailer.close()
    server.stop()
    del mailer, workers
    gc.collect()
    traced_end = tracemalloc.get_traced_memory()[0]
    if settings.trace_memory:
        tracemalloc.stop()
    time.sleep(0.2)
    fds_after, threads_after = _fds(), threading.active_count()
    return _audit(
        settings,
        ledger,
        outcomes,
        server,
        progress,
        took,
        traced_end,
        (fds_before, fds_after),
        (threads_before, threads_after),
    )


def _audit(
    settings: Settings,
    ledger: Ledger,
    outcomes: bytearray,
    server: FaultServer,
    progress: _Progress,
    took: float,
    traced_end: int,
    fds: tuple[int, int],
    threads: tuple[int, int],
) -> tuple[bool, str]:
    counts = dict.fromkeys(OUTCOMES, 0)
    problems: list[str] = []
    unknown_accepted = 0
    for number in range(settings.messages):
        outcome = outcomes[number]
        accepted, unanswered = ledger.accepted[number], ledger.unanswered[number]
        if outcome == 0:
            problems.append(f"message {number} has no outcome")
            continue
        counts[OUTCOMES[outcome - 1]] += 1
        if accepted > 1:
            problems.append(f"message {number} was accepted {accepted} times by the server")
        if outcome == DELIVERED and accepted != 1:
            problems.append(f"message {number} reported delivered, server accepted {accepted}")
        if outcome in (REFUSED, DEFERRED) and (accepted or unanswered):
            problems.append(
                f"message {number} reported {OUTCOMES[outcome - 1]} but the server "
                f"{'accepted' if accepted else 'received it whole without answering'}"
            )
        if outcome == UNKNOWN and accepted:
            unknown_accepted += 1
        if outcome == BUG:
            problems.append(f"message {number}: a second outcome or a non-library error")
    if ledger.unidentified:
        problems.append(f"{ledger.unidentified} messages arrived without a soak Message-ID")
    if fds[1] != fds[0]:
        problems.append(f"open descriptors {fds[0]} -> {fds[1]}")
    if threads[1] != threads[0]:
        problems.append(f"threads {threads[0]} -> {threads[1]}")
    # Flat: from a fifth of the way in (pools and caches warm) to the end.
    samples = sorted(progress.samples)
    first = samples[1] if len(samples) > 1 else samples[0]
    growth = samples[-1][1] - first[1]
    rss_growth = max(rss for _, _, rss in samples) - first[2]
    if settings.trace_memory:
        if growth > settings.memory_margin:
            problems.append(f"traced heap grew {growth / 1024:.0f} KiB after 20% of the run")
        if traced_end > settings.memory_margin:
            problems.append(f"{traced_end / 1024:.0f} KiB still allocated after closing")
    elif rss_growth > settings.rss_margin:
        problems.append(f"RSS grew {rss_growth / 2**20:.1f} MiB after 20% of the run")
    lines = [
        f"soak: {settings.messages} messages, {settings.threads} threads, seed {settings.seed}, "
        f"fault rate {settings.fault_rate}, {took:.1f} s ({settings.messages / took:.0f} msg/s)",
        f"server: {server.connections} connections; faults injected: "
        + ", ".join(f"{name} {count}" for name, count in sorted(server.faults.items())),
        "client outcomes: " + ", ".join(f"{name} {counts[name]}" for name in OUTCOMES),
        f"server ledger: accepted {sum(ledger.accepted)}, received whole but unanswered "
        f"{sum(ledger.unanswered)}, refused after the dot {sum(ledger.rejected)}; "
        f"of the outcome-unknown, the server had accepted {unknown_accepted}",
        f"descriptors {fds[0]} -> {fds[1]}; threads {threads[0]} -> {threads[1]}",
        (
            "memory at each 10% (traced heap/RSS MiB): "
            + " ".join(f"{t / 2**20:.1f}/{r / 2**20:.0f}" for _, t, r in samples)
            + f"; heap growth after 20%: {growth / 1024:+.0f} KiB, "
            f"left after closing: {traced_end / 1024:.0f} KiB"
            if settings.trace_memory
            else "memory at each 10% (RSS MiB, tracemalloc off): "
            + " ".join(f"{r / 2**20:.0f}" for _, _, r in samples)
            + f"; growth after 20%: {rss_growth / 2**20:+.1f} MiB"
        ),
    ]
    lines += [f"PROBLEM: {p}" for p in problems[:30]]
    lines.append("result: PASS" if not problems else f"result: FAIL ({len(problems)} problems)")
    return not problems, "\n".join(lines)
