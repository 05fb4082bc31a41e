"""The long fuzzing campaign, one command:

    python -m fuzz.run --minutes 10

Runs every target (reply parser, EHLO parser, data encoder, command encoder,
and whole conversations against a scripted server) for a share of the time.
With atheris installed (``pip install atheris``) each target is a
coverage-guided libFuzzer run seeded from ``fuzz/corpus/<target>/``; inputs
that add coverage are merged back into that corpus (commit them).  Without
atheris, hypothesis generates inputs instead.  A crash -- any exception other
than the library's own errors, or a broken invariant -- is saved under
``fuzz/crashes/`` and makes the command exit 1; turn it into a regression
test and fix the library.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
ALL_TARGETS = ("reply", "ehlo", "data", "commands", "conversation")


def _target(name: str) -> Callable[[bytes], None]:
    from fuzz.conversation import conversation_target  # noqa: PLC0415
    from fuzz.targets import TARGETS  # noqa: PLC0415

    return {**TARGETS, "conversation": conversation_target}[name]


def replay_corpus(name: str) -> int:
    """Run every stored input of *name* once; return how many there are."""
    target = _target(name)
    files = sorted((CORPUS / name).glob("*"))
    for path in files:
        target(path.read_bytes())
    return len(files)


def run_atheris(name: str, seconds: int) -> bool:
    """A libFuzzer run; new coverage is merged into the corpus.  True if clean."""
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(exist_ok=True)
    before = len(list(corpus.iterdir()))
    worker = [sys.executable, "-m", "fuzz.atheris_worker", name]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as fresh:
        run = subprocess.run(  # noqa: S603 (our own worker, fixed arguments)
            [
                *worker,
                f"-max_total_time={seconds}",
                "-timeout=60",
                "-rss_limit_mb=4096",
                "-max_len=4096",
                "-print_final_stats=1",
                f"-artifact_prefix={CRASHES}/{name}-",
                fresh,
                str(corpus),
            ],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        log = run.stderr.splitlines()
        stats = [ln for ln in log if ln.startswith(("stat::number_of_executed_units", "Done "))]
        clean = run.returncode == 0
        if not clean:
            print("\n".join(log[-60:]))
        # Keep only inputs that add coverage to what the repository holds.
        subprocess.run(  # noqa: S603
            [*worker, "-merge=1", str(corpus), fresh],
            cwd=HERE.parent,
            capture_output=True,
            check=False,
        )
    after = len(list(corpus.iterdir()))
    execs = next((ln.split(":")[-1].strip() for ln in stats if ln.startswith("stat::")), "?")
    print(f"  {name}: {execs} runs, corpus {before} -> {after}, {'ok' if clean else 'CRASH'}")
    return clean


def run_hypothesis(name: str, seconds: int, seed: int) -> bool:
    """Hypothesis-generated inputs until the time is up.  True if clean."""
    # Imported here: the atheris path does not need hypothesis.
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415
    from hypothesis import seed as hseed  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    target = _target(name)
    end = time.monotonic() + seconds
    batches = 0

    while time.monotonic() < end:

        @hseed(seed + batches)
        @settings(
            max_examples=2000 if name != "conversation" else 50,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.binary(max_size=2048))
        def check(data: bytes) -> None:
            target(data)

        try:
            check()
        except Exception:
            CRASHES.mkdir(exist_ok=True)
            report = CRASHES / f"{name}-hypothesis-{int(time.time())}.txt"
            report.write_text(traceback.format_exc())
            print(traceback.format_exc())
            return False
        batches += 1
    print(f"  {name}: {batches} hypothesis batches, ok")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {sorted(unknown)}")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    seconds = max(int(args.minutes * 60 / len(names)), 5)
    print(f"fuzzing {', '.join(names)} with {engine}, {seconds} s each")
    clean = True
    for name in names:
        print(f"  {name}: replayed {replay_corpus(name)} stored inputs")
        if engine == "atheris":
            clean &= run_atheris(name, seconds)
        else:
            clean &= run_hypothesis(name, seconds, args.seed)
    if CRASHES.exists() and any(CRASHES.iterdir()):
        print(f"crash inputs are in {CRASHES}")
    print("result: " + ("no crashes" if clean else "CRASHES FOUND"))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
