"""Postfix's smtp-sink as the benchmark server, pinned to a CPU, with its
own message counter read back (the proof of what arrived).

``smtp-sink -c`` rewrites a counter line ("sess=N quit=N mesg=N", separated
by CR) on its standard output whenever a session ends, QUIT arrives or a
message's "." is received.  It goes to a file, so nothing on the sink's CPU
has to wake up per message to read it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.prerequisites import SMTP_SINK

__all__ = ["CLIENT_CPU", "SERVER_CPU", "Sink", "free_port", "pinned", "wait_listening"]

_CPUS = sorted(os.sched_getaffinity(0))
CLIENT_CPU = _CPUS[0]
SERVER_CPU = _CPUS[1] if len(_CPUS) > 1 else _CPUS[0]
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


def pinned(cpu: int, command: list[str]) -> list[str]:
    """*command* run on CPU *cpu* only (taskset)."""
    return ["taskset", "-c", str(cpu), *command]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    """Wait (at most 10 s) until something accepts on 127.0.0.1:*port*.

    Raises:
        RuntimeError: it did not come up (or *process* exited).
    """
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.05)


class Sink:
    """One smtp-sink process on 127.0.0.1 (PIPELINING, 8BITMIME, DSN,
    ENHANCEDSTATUSCODES; no CHUNKING, no SIZE).

    *pipelining* False adds ``-p`` (PIPELINING not offered); *cpu* pins it.
    """

    def __init__(self, *, cpu: int = SERVER_CPU, pipelining: bool = True) -> None:
        self.cpu = cpu
        self.pipelining = pipelining
        self.port = 0
        self._dir = Path(tempfile.mkdtemp(prefix="smtpclient-bench-sink-"))
        self._counters = self._dir / "counters"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        self.port = free_port()
        command = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
        if not self.pipelining:
            command.append("-p")
        command += [f"127.0.0.1:{self.port}", "256"]
        with self._counters.open("wb") as out, (self._dir / "stderr").open("wb") as err:
            self._process = subprocess.Popen(pinned(self.cpu, command), stdout=out, stderr=err)
        try:
            wait_listening(self.port, self._process, "smtp-sink")
        except RuntimeError:
            self.stop()
            raise
        return self

    def messages(self) -> int:
        """Messages the sink has received so far (its own counter)."""
        try:
            with self._counters.open("rb") as counters:
                counters.seek(max(0, counters.seek(0, os.SEEK_END) - 200))
                found = _COUNTERS.findall(counters.read())
        except OSError:
            return 0
        return int(found[-1][2]) if found else 0

    def wait_for(self, expected: int, timeout: float = 5.0) -> int:
        """The counter once it reaches *expected* (or after *timeout* seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.messages()
            if seen >= expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
