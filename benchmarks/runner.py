"""Run the scenarios: start the server, run every contender several times
(interleaved, so a change in machine load hits them all alike), and check
each run against the server's own counter."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.bodies import MiB, large_message, small_message
from benchmarks.contenders import Spec
from benchmarks.prerequisites import SMTP_SOURCE
from benchmarks.scenarios import Scenario
from benchmarks.sink import CLIENT_CPU, SERVER_CPU, Sink, pinned
from benchmarks.worker import busy, cpu_times

__all__ = ["Outcome", "Sample", "run_scenario"]

ROOT = Path(__file__).resolve().parent.parent
SENDER = "sender@example.test"


@dataclass
class Sample:
    """One timed run of one contender."""

    messages: int
    wall: float
    cpu: float
    mib: float
    rss_growth_mib: float | None
    rss_peak_mib: float
    py_peak_mib: float | None = None
    server_busy: float | None = None  # fraction of the server CPU's time spent busy

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def mib_rate(self) -> float:
        return self.mib / self.wall


@dataclass
class Outcome:
    """Everything one scenario produced."""

    scenario: Scenario
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    counted: dict[str, str] = field(default_factory=dict)  # contender -> "ok" or the mismatch
    traced: dict[str, float] = field(default_factory=dict)  # tracemalloc peak, MiB
    rtt_ms: float | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table

    def median(self, contender: str, metric: str) -> float | None:
        values = [getattr(s, metric) for s in self.samples.get(contender, [])]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def spread(self, contender: str, metric: str) -> float | None:
        """(max - min) / median of *metric* over the runs: how noisy it was."""
        values = [getattr(s, metric) for s in self.samples.get(contender, [])]
        if len(values) < 2:
            return None
        middle = statistics.median(values)
        return (max(values) - min(values)) / middle if middle else None

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": asdict(self.scenario),
            "samples": {c: [asdict(s) for s in ss] for c, ss in self.samples.items()},
            "counted": self.counted,
            "traced_mib": self.traced,
            "rtt_ms": self.rtt_ms,
            "errors": self.errors,
            "notes": self.notes,
        }


class Server(Protocol):
    port: int

    def messages(self) -> int: ...
    def wait_for(self, expected: int, timeout: float = 5.0) -> int: ...


@dataclass
class Bodies:
    """The message files, made once per benchmark run."""

    directory: Path

    def path(self, message: str, *, for_smtp_source: bool = False) -> Path:
        if message == "small":
            name = "small-lf.eml" if for_smtp_source else "small.eml"
            target = self.directory / name
            if not target.exists():
                small_message(target)
                if for_smtp_source:
                    # smtp-source appends CRLF to each line it reads: give it LF lines.
                    target.write_bytes(target.read_bytes().replace(b"\r\n", b"\n"))
            return target
        target = self.directory / f"large-{message}.eml"
        if not target.exists():
            large_message(target, int(message) * MiB)
        return target


@contextlib.contextmanager
def _delay_proxy(target_port: int, rtt_ms: float) -> Iterator[int]:
    command = [sys.executable, "-m", "benchmarks.proxy", str(target_port), str(rtt_ms / 2000)]
    process = subprocess.Popen(
        pinned(SERVER_CPU, command), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.terminate()
        process.wait(10)


def _measure_rtt(port: int) -> float:
    """Median milliseconds of a NOOP round trip (through the proxy)."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.recv(1024)
        times = []
        for _ in range(30):
            start = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(1024)
            times.append(time.perf_counter() - start)
        sock.sendall(b"QUIT\r\n")
    return statistics.median(times) * 1000


def _smtp_source(
    scenario: Scenario, port: int, count: int, body: Path, cpu: int
) -> tuple[Sample, str | None]:
    """Run smtp-source once; wall time from start to exit, CPU and peak RSS
    from the kernel's accounting of the process (wait4)."""
    command = [SMTP_SOURCE, "-d", "-m", str(count), "-f", SENDER, "-t", "rcpt@example.test"]
    command += ["-r", str(scenario.recipients), "-F", str(body)]
    if scenario.threads > 1:
        command += ["-s", str(scenario.threads)]
    command.append(f"127.0.0.1:{port}")
    start = time.perf_counter()
    ticks = cpu_times()
    process = subprocess.Popen(
        pinned(cpu, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    server_busy = busy(ticks, cpu_times()).get(CLIENT_CPU if scenario.cpu_bound else SERVER_CPU)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    process.stdout.close()
    error = (
        f"smtp-source exited {process.returncode}: {output[-300:]}" if process.returncode else None
    )
    size = body.stat().st_size
    sample = Sample(
        messages=count,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        mib=count * size / MiB,
        rss_growth_mib=None,
        rss_peak_mib=usage.ru_maxrss / 1024,
        server_busy=server_busy,
    )
    return sample, error


def _worker(spec: Spec, cpu: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(asdict(spec))]
    done = subprocess.run(
        pinned(cpu, command), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec.contender} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Runner:
    def __init__(self, bodies: Bodies, *, reps: int, scale: float) -> None:
        self.bodies = bodies
        self.reps = reps
        self.scale = scale  # run length factor (quick mode < 1)
        self.source_idle_mib: float | None = None

    def spec(self, scenario: Scenario, contender: str, port: int, count: int, **extra: Any) -> Spec:
        recipients = [f"rcpt{i}@example.test" for i in range(scenario.recipients)]
        return Spec(
            contender=contender,
            host="127.0.0.1",
            port=port,
            sender=SENDER,
            recipients=recipients,
            body=str(self.bodies.path(scenario.message)),
            streamed=scenario.large,
            count=count,
            warmup=scenario.warmup,
            warmup_body=str(self.bodies.path("small")) if scenario.large else None,
            threads=scenario.threads,
            pipelining=not scenario.cpu_bound,
            **extra,
        )

    def one(
        self, scenario: Scenario, contender: str, server: Server, count: int, extra: dict[str, Any]
    ) -> tuple[Sample, int, str | None]:
        """One run; returns the sample, messages sent in all, and an error."""
        cpu = CLIENT_CPU
        if contender == "smtp-source":
            body = self.bodies.path(scenario.message, for_smtp_source=True)
            sample, error = _smtp_source(scenario, server.port, count, body, cpu)
            if self.source_idle_mib is not None:
                sample.rss_growth_mib = sample.rss_peak_mib - self.source_idle_mib
            return sample, count, error
        result = _worker(self.spec(scenario, contender, server.port, count, **extra), cpu)
        size = Path(self.bodies.path(scenario.message)).stat().st_size
        sample = Sample(
            messages=result["acked"],
            wall=result["wall"],
            cpu=result["cpu"],
            mib=result["acked"] * size / MiB,
            rss_growth_mib=(result["rss_peak_kib"] - result["rss_idle_kib"]) / 1024,
            rss_peak_mib=result["rss_peak_kib"] / 1024,
            py_peak_mib=None if result["py_peak_kib"] is None else result["py_peak_kib"] / 1024,
            server_busy=result["cpu_busy"].get(
                str(CLIENT_CPU if scenario.cpu_bound else SERVER_CPU)
            ),
        )
        error = None if result["acked"] == count else f"only {result['acked']} of {count} acked"
        return sample, result["sent"], error

    def calibrate_smtp_source(self, server: Server) -> None:
        """Peak RSS of smtp-source sending one small message: its idle size."""
        small = Scenario("idle", "", ())
        sample, _ = _smtp_source(
            small, server.port, 1, self.bodies.path("small", for_smtp_source=True), CLIENT_CPU
        )
        self.source_idle_mib = sample.rss_peak_mib

    def run(
        self, scenario: Scenario, server: Server, outcome: Outcome, extra: dict[str, Any]
    ) -> int:
        """Every contender, interleaved; returns the messages sent in all."""
        contenders = list(scenario.contenders)
        counts = dict.fromkeys(contenders, scenario.first)
        sent_total = 0
        calibrate = scenario.seconds > 0
        for rep in range(self.reps + (1 if calibrate else 0)):
            order = contenders[rep % len(contenders) :] + contenders[: rep % len(contenders)]
            for contender in order:
                before = server.messages()
                sample, sent, error = self.one(
                    scenario, contender, server, counts[contender], extra
                )
                sent_total += sent
                if scenario.server == "sink":
                    seen = server.wait_for(before + sent) - before
                    if seen != sent:
                        error = error or f"the sink counted {seen} messages, {sent} were sent"
                if error:
                    outcome.errors.append(f"{contender}: {error}")
                    outcome.counted[contender] = "MISMATCH"
                else:
                    outcome.counted.setdefault(contender, "ok")
                if rep == 0 and calibrate:
                    wanted = sample.rate * scenario.seconds * self.scale
                    counts[contender] = int(min(max(wanted, scenario.first), 200_000))
                    continue
                outcome.samples.setdefault(contender, []).append(sample)
        return sent_total


@contextlib.contextmanager
def _sink_server(scenario: Scenario) -> Iterator[tuple[Server, int, float | None]]:
    """The sink, and the port clients use (the delay proxy's for RTT runs)."""
    cpu = CLIENT_CPU if scenario.cpu_bound else SERVER_CPU
    with Sink(cpu=cpu, pipelining=not scenario.cpu_bound) as sink:
        if not scenario.rtt_ms:
            yield sink, sink.port, None
            return
        with _delay_proxy(sink.port, scenario.rtt_ms) as port:
            yield sink, port, _measure_rtt(port)


@dataclass
class _Redirected:
    """A server whose clients connect to another port (the delay proxy)."""

    inner: Server
    port: int

    def messages(self) -> int:
        return self.inner.messages()

    def wait_for(self, expected: int, timeout: float = 5.0) -> int:
        return self.inner.wait_for(expected, timeout)


def run_scenario(scenario: Scenario, runner: Runner) -> Outcome:
    """Start the scenario's server and run every contender on it."""
    outcome = Outcome(scenario)
    if scenario.server == "postfix":
        from benchmarks.mta import postfix_tls_sasl  # noqa: PLC0415 (imported only where needed)

        with postfix_tls_sasl() as mta:
            extra = {"ca_file": mta.ca_file, "username": mta.username, "password": mta.password}
            sender_server = _PostfixCounter(mta)
            sent = runner.run(scenario, sender_server, outcome, extra)
            seen = mta.wait_for(sent * scenario.recipients)
            ok = seen == sent * scenario.recipients
            for contender in scenario.contenders:
                outcome.counted[contender] = "ok" if ok else "MISMATCH"
            if not ok:
                outcome.errors.append(f"Postfix delivered {seen} recipients, {sent} were sent")
        return outcome
    if scenario.server == "postfix-plain":
        _run_plain_postfix(scenario, runner, outcome)
        return outcome
    with _sink_server(scenario) as (sink, port, rtt):
        outcome.rtt_ms = rtt
        server: Server = _Redirected(sink, port) if port != sink.port else sink
        if runner.source_idle_mib is None and not scenario.cpu_bound:
            runner.calibrate_smtp_source(server)
        runner.run(scenario, server, outcome, {})
        if scenario.key == "large-100":
            # One more run of each Python client with tracemalloc on.
            for contender in scenario.contenders:
                if contender != "smtp-source":
                    sample, _, _ = runner.one(scenario, contender, server, 1, {"trace": True})
                    if sample.py_peak_mib is not None:
                        outcome.traced[contender] = sample.py_peak_mib
    return outcome


def _run_plain_postfix(scenario: Scenario, runner: Runner, outcome: Outcome) -> None:
    """Postfix with CHUNKING (benchmarks/chunking.py), direct or through the proxy."""
    from benchmarks.chunking import plain_postfix, wire_check  # noqa: PLC0415

    with plain_postfix() as mta, contextlib.ExitStack() as stack:
        port = mta.port
        if scenario.rtt_ms:
            port = stack.enter_context(_delay_proxy(mta.port, scenario.rtt_ms))
            outcome.rtt_ms = _measure_rtt(port)
        sent = runner.run(scenario, _Redirected(mta, port), outcome, {})
        expected = sent * scenario.recipients
        if scenario.rtt_ms:
            try:
                outcome.notes.append(wire_check(port, runner.bodies.path("small")))
                expected += 50 * 3
            except PermissionError:
                outcome.notes.append("wire check skipped: a packet socket needs root")
        seen = mta.wait_delivered(expected)
        for contender in scenario.contenders:
            outcome.counted[contender] = "ok" if seen == expected else "MISMATCH"
        if seen != expected:
            outcome.errors.append(f"Postfix delivered {seen} recipients, {expected} were sent")


@dataclass
class _PostfixCounter:
    """Postfix as a Server: its log is read once at the end (delivery lags)."""

    mta: Any

    @property
    def port(self) -> int:
        return int(self.mta.port)

    def messages(self) -> int:
        return 0

    def wait_for(self, expected: int, timeout: float = 5.0) -> int:
        return expected
