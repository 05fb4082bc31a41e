"""Peak memory while streaming big messages: it must not grow with the size.

Sends messages of several sizes (default 16 MiB, 256 MiB and 1 GiB) from a
one-shot iterator and from a file, through DATA (to Postfix's ``smtp-sink``,
which discards everything) and through BDAT (to a throwaway Postfix that
discards into its ``discard:`` transport), and records for each run:

* the tracemalloc peak of Python allocations during the send, and
* the peak resident set size (VmHWM, reset before each run through
  /proc/self/clear_refs), as an increase over the RSS before the run.

Run (about a minute; needs the Debian ``postfix`` package and root for
smtp-sink's ``-u``):

    python benchmarks/stream_memory.py            # 16 MiB, 256 MiB, 1 GiB
    python benchmarks/stream_memory.py --sizes 8 64 --json out.json

It exits 1 if a 1 GiB (largest) run peaks above ``--limit`` MiB of
tracemalloc memory or if the peak grows by more than 2x from the smallest
size to the largest: memory independent of size is the claim.
Not part of the test suite (it is far too slow for that).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers.postfix import PostfixServer

from smtpclient import Session, Timeouts, TLSMode

MiB = 1024 * 1024
# Realistic text: varied line lengths, a leading dot now and then (stuffed by DATA).
LINE_BLOCK = b"".join(
    (b"." if i % 17 == 0 else b"") + b"x" * (20 + (i * 37) % 70) + b"\r\n" for i in range(1000)
)


@dataclass
class Run:
    framing: str
    server: str
    source: str
    size_mib: int
    seconds: float
    mib_per_s: float
    tracemalloc_peak_kib: float
    rss_peak_increase_mib: float


def blocks(size: int, block: int = 64 * 1024) -> Iterator[bytes]:
    """*size* octets of text, generated as it is consumed (nothing kept)."""
    unit = (LINE_BLOCK * (block // len(LINE_BLOCK) + 1))[:block]
    # End every generated block on a line end so the content stays text.
    unit = unit[: unit.rfind(b"\r\n") + 2]
    sent = 0
    while sent + len(unit) <= size:
        yield unit
        sent += len(unit)
    rest = size - sent
    tail = rest % 78
    yield (b"y" * 76 + b"\r\n") * (rest // 78) + (
        b"z" * (tail - 2) + b"\r\n" if tail >= 2 else b"\n" * tail
    )


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    # Writing 5 resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(send: Callable[[], None]) -> tuple[float, float, float]:
    """Run *send*; return (seconds, tracemalloc peak KiB, RSS peak increase MiB)."""
    reset_peak_rss()
    before = rss_kib("VmRSS")
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        send()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak / 1024, (rss_kib("VmHWM") - before) / 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink on 127.0.0.1 (PIPELINING, 8BITMIME; no CHUNKING)."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    process = subprocess.Popen(
        [binary, "-u", "nobody", "-c", f"127.0.0.1:{port}", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not start: {process.stderr!r}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def send_once(port: int, chunking: bool, data: object, size: int) -> None:
    timeouts = Timeouts.uniform(120.0)
    with Session.connect(
        "127.0.0.1", port, tls=TLSMode.NONE, timeouts=timeouts, use_chunking=chunking
    ) as session:
        if chunking and not session.extensions.chunking:
            raise RuntimeError("the server does not offer CHUNKING")
        result = session.sendmail(
            "bench@example.test",
            ["sink@example.test"],
            data,  # type: ignore[arg-type]
            size=size,
            eight_bit=False,
        )
        if not result.accepted:
            raise RuntimeError(f"not accepted: {result}")


def make_file(directory: Path, size: int) -> Path:
    path = directory / f"message-{size}.eml"
    with path.open("wb") as out:
        for block in blocks(size, 1024 * 1024):
            out.write(block)
    return path


def run_sources(
    framing: str, server: str, port: int, chunking: bool, size_mib: int, path: Path | None
) -> list[Run]:
    """Send *size_mib* MiB from an iterator (and from *path*) and measure each."""
    size = size_mib * MiB
    sources: list[tuple[str, Callable[[], object]]] = [("iterator", lambda: blocks(size))]
    if path is not None:
        sources.append(("file", lambda: path.open("rb")))
    runs = []
    for source_name, make_source in sources:
        source = make_source()
        try:
            seconds, peak_kib, rss_mib = measure(lambda: send_once(port, chunking, source, size))  # noqa: B023
        finally:
            if hasattr(source, "close"):
                source.close()
        run = Run(
            framing,
            server,
            source_name,
            size_mib,
            round(seconds, 2),
            round(size_mib / seconds, 1),
            round(peak_kib, 1),
            round(rss_mib, 1),
        )
        runs.append(run)
        print(
            f"{framing:4} {server:9} {source_name:8} {size_mib:6} MiB "
            f"{seconds:7.2f} s {run.mib_per_s:7.1f} MiB/s  tracemalloc peak "
            f"{peak_kib:8.1f} KiB  RSS peak +{rss_mib:6.1f} MiB",
            flush=True,
        )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 1024], help="MiB")
    parser.add_argument(
        "--limit",
        type=float,
        default=4096.0,
        help="tracemalloc peak allowed for any run, KiB (default 4096)",
    )
    parser.add_argument("--json", type=Path, help="also write the runs here")
    parser.add_argument("--no-files", action="store_true", help="iterator sources only")
    args = parser.parse_args()

    runs: list[Run] = []
    workdir = Path(tempfile.mkdtemp(prefix="smtpclient-stream-"))
    postfix = PostfixServer(
        discard=True,
        message_size_limit=(max(args.sizes) + 64) * MiB,
        main_cf={"queue_minfree": "0"},
    )
    try:
        postfix.start()
        with smtp_sink() as sink_port:
            targets = [
                ("DATA", "smtp-sink", sink_port, False),
                ("BDAT", "postfix", postfix.port, True),
            ]
            for size_mib in args.sizes:
                size = size_mib * MiB
                path = None if args.no_files else make_file(workdir, size)
                for framing, server, port, chunking in targets:
                    runs += run_sources(framing, server, port, chunking, size_mib, path)
                if path is not None:
                    path.unlink()
    finally:
        postfix.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    failures = []
    for key in {(r.framing, r.source) for r in runs}:
        series = sorted((r for r in runs if (r.framing, r.source) == key), key=lambda r: r.size_mib)
        smallest, largest = series[0], series[-1]
        if largest.tracemalloc_peak_kib > args.limit:
            failures.append(f"{key}: {largest.tracemalloc_peak_kib} KiB > {args.limit} KiB")
        if largest.tracemalloc_peak_kib > 2 * max(smallest.tracemalloc_peak_kib, 256):
            failures.append(
                f"{key}: peak grew from {smallest.tracemalloc_peak_kib} KiB "
                f"at {smallest.size_mib} MiB to {largest.tracemalloc_peak_kib} KiB"
            )
    for failure in failures:
        print("FAIL", failure)
    print("memory independent of size" if not failures else "memory grows with size")
    return 1 if failures else 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
