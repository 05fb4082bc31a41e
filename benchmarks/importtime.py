"""Start-up cost: ``import smtpclient`` against ``import smtplib``, and the
``smtpclient sendmail`` command's start against a bare interpreter.

Each figure is the median of several fresh interpreters, the runs of the
contenders interleaved (so a change in machine load hits them all).  The
import figures are what ``python -X importtime`` reports for the top-level
module (cumulative microseconds, byte-code caches warm); the command
figure is the wall-clock time of
``python -m smtpclient sendmail --help`` (everything a cron job's sendmail
does before it reads a message) against ``python -c "import smtplib"``.

    python -m benchmarks.importtime              # 15 runs each
    python -m benchmarks.importtime --runs 31 --modules   # also the top modules
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

__all__ = ["import_time", "main", "wall_time"]

TARGET = 1.5  # issue 19.5: import smtpclient <= 1.5x import smtplib


def import_time(module: str, statement: str | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Import time in a fresh interpreter (us) of *statement* (default
    ``import module``): the sum of the cumulative times of the top-level
    imports it caused, after the interpreter's own start-up; and every
    module's own time (us, name)."""
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; sys.stderr.write('--start--\\n'); " + (statement or f"import {module}"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )
    total = 0
    own: list[tuple[int, str]] = []
    _, _, after_start = done.stderr.partition("--start--\n")
    for line in after_start.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = [part.strip() for part in line[len("import time:") :].split("|")]
        if not fields[0].isdigit():
            continue  # the header line
        self_us, cumulative, name = int(fields[0]), int(fields[1]), fields[2]
        own.append((self_us, name.strip()))
        if not name.startswith(" "):  # a top-level import of the statement
            total += cumulative
    return total, own


def wall_time(*argv: str) -> float:
    """Wall-clock seconds for ``python ARGV`` to run to its end."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], capture_output=True, check=True, timeout=120)
    return time.perf_counter() - start


# The command's start: it loads its parser and the sendmail module, prints
# its help and exits -- everything before it would read a message.
SENDMAIL_START = ("-m", "smtpclient", "sendmail", "--help")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.importtime")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--modules", action="store_true", help="list the costliest modules")
    args = parser.parse_args(argv)
    for module in ("smtplib", "smtpclient"):  # warm the byte-code caches
        import_time(module)
    lib: list[int] = []
    ours: list[int] = []
    send_path: list[int] = []
    command: list[float] = []
    bare: list[float] = []
    own_times: dict[str, list[int]] = {}
    for _ in range(args.runs):
        lib.append(import_time("smtplib")[0])
        total, own = import_time("smtpclient")
        ours.append(total)
        total, own = import_time("smtpclient", "from smtpclient import send, Session, TLSMode")
        send_path.append(total)
        for us, name in own:
            own_times.setdefault(name, []).append(us)
        command.append(wall_time(*SENDMAIL_START))
        bare.append(wall_time("-c", "import smtplib"))
    load = os.getloadavg()
    median_lib, median_ours = statistics.median(lib), statistics.median(ours)
    ratio = median_ours / median_lib

    def spread(values: list[float] | list[int]) -> str:
        middle = statistics.median(values)
        return f"{(max(values) - min(values)) / middle:.0%}" if middle else "-"

    print(
        f"import time, {args.runs} fresh interpreters each, median (spread); "
        f"Python {sys.version.split()[0]}"
    )
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  import smtplib       {median_lib / 1000:7.1f} ms ({spread(lib)})")
    print(
        f"  import smtpclient    {median_ours / 1000:7.1f} ms ({spread(ours)})  "
        f"{ratio:.2f}x smtplib"
    )
    median_send = statistics.median(send_path)
    print(
        f"  from smtpclient import send, Session, TLSMode  {median_send / 1000:.1f} ms "
        f"({spread(send_path)})  {median_send / median_lib:.2f}x smtplib (what a send loads)"
    )
    cmd, nothing = statistics.median(command), statistics.median(bare)
    print(
        f"  smtpclient sendmail --help  {cmd * 1000:.1f} ms wall clock ({spread(command)}); "
        f"python -c 'import smtplib' {nothing * 1000:.1f} ms: {cmd / nothing:.2f}x"
    )
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"{verdict}  import smtpclient <= {TARGET}x import smtplib: {ratio:.2f}x")
    if args.modules:
        costly = sorted(((statistics.median(v), k) for k, v in own_times.items()), reverse=True)[
            :25
        ]
        print("costliest modules a send loads (own time, median):")
        for us, name in costly:
            print(f"  {us / 1000:6.2f} ms  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
