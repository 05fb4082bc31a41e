"""python -m benchmarks [--quick] [--only KEY ...] [--runs N] [--json FILE]
python -m benchmarks --profile CONTENDER@SCENARIO

Runs every scenario of benchmarks/scenarios.py with smtpclient, smtplib,
aiosmtplib and smtp-source against the same server, prints messages/s,
MiB/s, CPU, memory, every ratio against smtplib and smtp-source, the wire
check, the targets and how noisy the run was.  Installs Postfix, Dovecot
and aiosmtplib first when they are missing (as root).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import prerequisites
from benchmarks.report import print_noise, print_outcome, print_targets
from benchmarks.runner import Bodies, Outcome, Runner, run_scenario
from benchmarks.scenarios import LABELS, SCENARIOS
from benchmarks.sink import CLIENT_CPU, SERVER_CPU, Sink, pinned


def _versions() -> str:
    import aiosmtplib  # noqa: PLC0415 (imported only where needed)

    import smtpclient  # noqa: PLC0415 (imported only where needed)

    postfix = subprocess.run(
        ["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"smtpclient {smtpclient.__version__}, Python {platform.python_version()}, "
        f"aiosmtplib {aiosmtplib.__version__}, Postfix {postfix or '?'} (smtp-sink, smtp-source)"
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _print_opcodes(bodies: Bodies) -> None:
    """Bytecodes per message (load cannot change them): benchmarks/opcodes.py."""
    with Sink() as sink:
        command = [sys.executable, "-m", "benchmarks.opcodes", str(sink.port)]
        done = subprocess.run(
            pinned(CLIENT_CPU, [*command, str(bodies.path("small"))]),
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    counted = json.loads(done.stdout)
    print("\nPython work per message, counted (bytecodes, Python calls; 2 KiB, one connection)")
    for recipients in (1, 10):
        base = counted[f"smtplib/{recipients}"][0]
        row = []
        for contender in ("smtplib", "smtpclient-sendmail", "smtpclient-send_many"):
            ops, calls = counted[f"{contender}/{recipients}"]
            row.append(f"{LABELS[contender]} {ops:.0f} ({calls:.0f} calls, {ops / base:.2f}x)")
        print(f"  {recipients:2} rcpt: " + "; ".join(row))


def _profile(target: str, bodies: Bodies, runner: Runner) -> None:
    """Run one contender of one scenario under cProfile and print the top."""
    contender, _, key = target.partition("@")
    scenario = next(s for s in SCENARIOS if s.key == key)
    scenario = replace(scenario, contenders=(contender,), seconds=0.0, first=scenario.first * 10)
    path = Path(tempfile.mkdtemp(prefix="smtpclient-bench-prof-")) / "stats"
    runner.reps = 1
    outcome = run_scenario(scenario, _ProfilingRunner(runner, str(path)))
    print_outcome(outcome)
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    shutil.rmtree(path.parent, ignore_errors=True)


class _ProfilingRunner(Runner):
    def __init__(self, base: Runner, path: str) -> None:
        super().__init__(base.bodies, reps=1, scale=base.scale)
        self.path = path

    def spec(self, *args: object, **extra: object):  # type: ignore[no-untyped-def]
        return super().spec(*args, profile=self.path, **extra)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter and fewer runs (~3 min)")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="scenario keys to run")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3 quick, 7 full)")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--no-wire", action="store_true", help="skip the on-the-wire check")
    parser.add_argument("--profile", metavar="CONTENDER@SCENARIO", help="cProfile one contender")
    args = parser.parse_args()
    os.umask(0o022)

    chosen = [s for s in SCENARIOS if not args.only or s.key in args.only]
    if args.only and len(chosen) != len(args.only):
        known = ", ".join(s.key for s in SCENARIOS)
        parser.error(f"unknown scenario among {args.only}; known: {known}")
    prerequisites.ensure(webapp=any(s.server == "postfix" for s in chosen))
    runs = args.runs or (3 if args.quick else 7)
    workdir = Path(tempfile.mkdtemp(prefix="smtpclient-bench-"))
    bodies = Bodies(workdir)
    runner = Runner(bodies, reps=runs, scale=0.4 if args.quick else 1.0)
    try:
        if args.profile:
            _profile(args.profile, bodies, runner)
            return 0
        started = time.monotonic()
        mode = "quick" if args.quick else "full"
        print(f"smtpclient benchmarks ({mode}): {runs} runs per figure, median shown;")
        print("spread = (max - min) / median of those runs; ratios are of medians.")
        print(f"{_versions()}")
        print(
            f"{os.cpu_count()} CPUs; clients pinned to CPU {CLIENT_CPU}, servers to CPU "
            f"{SERVER_CPU} (taskset); load average at start: {_load()}"
        )
        outcomes: dict[str, Outcome] = {}
        for scenario in chosen:
            # 100 MiB runs are long: half as many of them.
            runner.reps = max(2, runs // 2) if scenario.key == "large-100" else runs
            outcome = run_scenario(scenario, runner)
            outcomes[scenario.key] = outcome
            print_outcome(outcome)
            sys.stdout.flush()
        if not args.no_wire:
            from benchmarks.wire import check_groups  # noqa: PLC0415 (imported only where needed)

            print("\nOn the wire (packet capture on lo): each pipelined group in one write")
            try:
                for check in check_groups(bodies.path("small")):
                    print(f"  {check.describe()}")
            except PermissionError:
                print("  skipped: a packet socket needs root (CAP_NET_RAW)")
        _print_opcodes(bodies)
        missed = print_targets(outcomes)
        print_noise(outcomes)
        print(
            f"load average at end: {_load()}; took {time.monotonic() - started:.0f} s; "
            f"targets missed: {missed}"
        )
        if args.json:
            args.json.write_text(
                json.dumps({k: o.as_json() for k, o in outcomes.items()}, indent=1) + "\n"
            )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
