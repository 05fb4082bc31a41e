"""Python work per message, counted rather than timed: the bytecodes each
client executes per message (``sys.settrace`` with opcode events), which
machine load cannot change.  Wall-clock figures on a shared 2-core machine
move by 10-50 % from run to run; these do not move at all.

    python -m benchmarks.opcodes PORT      # against a running smtp-sink

Prints one JSON object: {"contender/recipients": [opcodes, Python calls]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.contenders import CONTENDERS, Spec

__all__ = ["CASES", "count"]

CASES = [
    (contender, recipients)
    for recipients in (1, 10)
    for contender in ("smtplib", "smtpclient-sendmail", "smtpclient-send_many")
]


def count(spec: Spec, messages: int = 200) -> tuple[float, float]:
    """Bytecodes and Python-level calls per message for *spec*'s contender."""
    contender = CONTENDERS[spec.contender](spec)
    contender.setup()
    totals = [0, 0]

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call":
            totals[1] += 1
            frame.f_trace_opcodes = True
        elif event == "opcode":
            totals[0] += 1
        return trace

    try:
        contender.send(50)  # warm: caches filled, connection settled
        sys.settrace(trace)
        try:
            contender.send(messages)
        finally:
            sys.settrace(None)
    finally:
        contender.close()
    return totals[0] / messages, totals[1] / messages


def main() -> None:
    port, body = int(sys.argv[1]), sys.argv[2]
    out = {}
    for contender, recipients in CASES:
        spec = Spec(
            contender=contender,
            host="127.0.0.1",
            port=port,
            sender="sender@example.test",
            recipients=[f"rcpt{i}@example.test" for i in range(recipients)],
            body=str(Path(body)),
            batch=100,
        )
        out[f"{contender}/{recipients}"] = count(spec)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
