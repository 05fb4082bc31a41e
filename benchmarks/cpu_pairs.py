"""Client CPU per message, paired: short batches of each contender taken in
turn, many times, against one smtp-sink, so that a change in machine load
hits every contender alike (the full benchmark runs each contender for
seconds at a time; on a shared machine its CPU figures move by half).

    python -m benchmarks.cpu_pairs [--rounds 15] [--batch 400] [--recipients 1]

smtpclient's ``sendmail``, ``send_many`` and a one-connection ``Mailer``
run in this process (pinned to the client CPU; ``time.process_time`` around
each batch); smtp-source runs as a child per batch (its CPU from
``wait4``).  For each round the ratio of each contender's CPU per message
to smtp-source's (and the Mailer's to ``sendmail``'s) is taken, and the
median of those paired ratios is printed with its spread.  The sink's
counter must agree with every message sent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.bodies import small_message
from benchmarks.contenders import CONTENDERS, Contender, Spec
from benchmarks.prerequisites import SMTP_SOURCE
from benchmarks.sink import CLIENT_CPU, Sink, pinned

__all__ = ["main"]

_PYTHON = ("smtpclient-sendmail", "smtpclient-send_many", "smtpclient-mailer")


def _source_cpu(port: int, count: int, recipients: int, body: Path) -> float:
    command = [SMTP_SOURCE, "-d", "-m", str(count), "-f", "sender@example.test"]
    command += ["-t", "rcpt@example.test", "-r", str(recipients), "-F", str(body)]
    command.append(f"127.0.0.1:{port}")
    process = subprocess.Popen(
        pinned(CLIENT_CPU, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"smtp-source exited {process.returncode}")
    return (usage.ru_utime + usage.ru_stime) / count


def _python_cpu(contender: Contender, count: int) -> float:
    start = time.process_time()
    done = contender.send(count)
    used = time.process_time() - start
    if done != count:
        raise RuntimeError(f"only {done} of {count} acknowledged")
    return used / count


def _describe(ratios: list[float]) -> str:
    middle = statistics.median(ratios)
    return f"{middle:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_pairs", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=400, help="messages per batch")
    parser.add_argument("--recipients", type=int, default=1)
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})
    workdir = Path(tempfile.mkdtemp(prefix="smtpclient-bench-pairs-"))
    body = small_message(workdir / "small.eml")
    lf_body = workdir / "small-lf.eml"  # smtp-source adds CR to each LF
    lf_body.write_bytes(body.read_bytes().replace(b"\r\n", b"\n"))
    cpu: dict[str, list[float]] = {name: [] for name in ("smtp-source", *_PYTHON)}
    sent = 0
    with Sink() as sink:
        contenders = {}
        for name in _PYTHON:
            spec = Spec(
                contender=name,
                host="127.0.0.1",
                port=sink.port,
                sender="sender@example.test",
                recipients=[f"rcpt{i}@example.test" for i in range(args.recipients)],
                body=str(body),
                batch=100,
            )
            contenders[name] = CONTENDERS[name](spec)
            contenders[name].setup()
            contenders[name].send(200)  # warm
            sent += 200
        try:
            for _ in range(args.rounds):
                cpu["smtp-source"].append(
                    _source_cpu(sink.port, args.batch, args.recipients, lf_body)
                )
                for name in _PYTHON:
                    cpu[name].append(_python_cpu(contenders[name], args.batch))
                sent += args.batch * (1 + len(_PYTHON))
        finally:
            for contender in contenders.values():
                contender.close()
        seen = sink.wait_for(sent)
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()
    print(
        f"client CPU per message, {args.rounds} rounds of {args.batch} messages each, "
        f"{args.recipients} recipient(s), 2 KiB; sink counted {seen} of {sent}"
        f" -- {'ok' if seen == sent else 'MISMATCH'}"
    )
    for name, values in cpu.items():
        print(
            f"  {name:22} {statistics.median(values) * 1e6:6.1f} us/msg "
            f"[{min(values) * 1e6:.0f}-{max(values) * 1e6:.0f}]"
        )
    source = cpu["smtp-source"]
    for name in _PYTHON:
        ratios = [ours / theirs for ours, theirs in zip(cpu[name], source, strict=True)]
        print(f"  {name} / smtp-source, paired by round: {_describe(ratios)}")
    mailer = [
        m / s for m, s in zip(cpu["smtpclient-mailer"], cpu["smtpclient-sendmail"], strict=True)
    ]
    print(f"  smtpclient-mailer / smtpclient-sendmail, paired by round: {_describe(mailer)}")


if __name__ == "__main__":
    main()
