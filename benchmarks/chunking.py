"""The Postfix-with-CHUNKING scenarios: a real Postfix (PIPELINING and
CHUNKING offered, as by default; no TLS, no AUTH; ``discard:`` transport,
queue on /dev/shm) pinned to the server CPU, reached directly
(``chunking``) and through the +1 ms RTT delay proxy (``chunking-rtt``).

With both extensions smtpclient sends MAIL, every RCPT and ``BDAT <n> LAST``
with the content in one write: one round trip per message, against four
for smtplib (MAIL, RCPT, DATA, the content).  With S the time Postfix and
the client need per message apart from the round trips, the best ratio
over smtplib is therefore ``(4·RTT + S) / (RTT + S)``; S is taken from the
direct run of the same benchmark (``ceiling``).  Postfix's log (one
``status=sent`` line per delivered recipient) is the counter.

``wire_check`` captures the client's segments (a packet socket on ``lo``,
root) while smtpclient sends through the proxy: every message must be one
segment holding MAIL ... ``BDAT <n> LAST`` and the content.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.contenders import Spec
from benchmarks.mta import discarded, on_server_cpu, wait_discarded
from benchmarks.sink import CLIENT_CPU, pinned
from benchmarks.wire import Capture

if TYPE_CHECKING:
    from benchmarks.runner import Outcome

__all__ = ["PlainPostfix", "ceiling", "plain_postfix", "wire_check"]

_TESTS = Path(__file__).resolve().parent.parent / "tests"
_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PlainPostfix:
    """Postfix as a benchmark server; its log counts what arrived."""

    port: int
    postfix: Any

    def messages(self) -> int:
        return 0  # counted once at the end (delivery lags the replies)

    def wait_for(self, expected: int, timeout: float = 5.0) -> int:
        return expected

    def delivered(self) -> int:
        """Recipients Postfix has handed to its discard transport so far."""
        return discarded(self.postfix)

    def wait_delivered(self, expected: int, timeout: float = 120.0) -> int:
        return wait_discarded(self.postfix, expected, timeout)


@contextlib.contextmanager
def plain_postfix() -> Iterator[PlainPostfix]:
    """Start Postfix (CHUNKING, PIPELINING, discard) on the server CPU."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from servers.postfix import PostfixServer  # noqa: PLC0415 (imported only where needed)

    with on_server_cpu():
        postfix = PostfixServer(discard=True).start()
    try:
        yield PlainPostfix(postfix.port, postfix)
    finally:
        postfix.stop()


def ceiling(direct: Outcome, delayed: Outcome) -> dict[str, float] | None:
    """S (ms per message without the proxy, smtpclient ``sendmail``), the
    measured RTT, the best possible ratio over smtplib through the proxy,
    ((3 + recipients)·RTT + S) / (RTT + S) -- (4·RTT + S) / (RTT + S) with
    one recipient -- and the ratio reached."""
    rate_direct = direct.median("smtpclient-sendmail", "rate")
    ours = delayed.median("smtpclient-sendmail", "rate")
    theirs = delayed.median("smtplib", "rate")
    rtt = delayed.rtt_ms
    if not rate_direct or not ours or not theirs or rtt is None:
        return None
    service = 1000 / rate_direct
    # smtplib: MAIL, each RCPT, DATA and the content, a round trip each.
    trips = 3 + delayed.scenario.recipients
    best = (trips * rtt + service) / (rtt + service)
    return {
        "s_ms": service,
        "rtt_ms": rtt,
        "ceiling": best,
        "reached": ours / theirs,
        "of_ceiling": ours / theirs / best,
    }


# --- on the wire -----------------------------------------------------------------------------


def wire_check(port: int, body: Path, messages: int = 50) -> str:
    """Send *messages* with ``sendmail`` to *port* (the proxy) and describe
    how the client's segments were grouped.

    Raises:
        PermissionError: no packet socket (not root).
    """
    capture = Capture(port)
    spec = Spec(
        contender="smtpclient-sendmail",
        host="127.0.0.1",
        port=port,
        sender="sender@example.test",
        recipients=[f"rcpt{i}@example.test" for i in range(3)],
        body=str(body),
        count=messages,
        warmup=0,
    )
    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(asdict(spec))]
    done = subprocess.run(
        pinned(CLIENT_CPU, command),
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    time.sleep(0.3)  # the last segments reach the capture
    segments = capture.stop()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    size = body.stat().st_size
    body_bytes = body.read_bytes()
    whole = sum(
        1
        for s in segments
        if s.startswith(b"MAIL FROM:")
        and s.count(b"RCPT TO:") == 3
        and s.endswith(f"BDAT {size} LAST\r\n".encode() + body_bytes)
    )
    mail = sum(1 for s in segments if b"MAIL FROM:" in s)
    verdict = "ok" if whole == mail == messages else "SPLIT"
    return (
        f"on the wire: smtpclient sendmail, {messages} messages to 3 recipients: {mail} segments "
        f"with MAIL, {whole} of them MAIL + 3 RCPT + BDAT LAST + the whole content; "
        f"{len(segments)} client segments in all (EHLO and QUIT included) -- {verdict}"
    )
