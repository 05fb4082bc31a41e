"""Check on the wire that each pipelined command group goes out in one write.

A packet socket on the loopback interface (root; Linux ``AF_PACKET``) sees
every TCP segment the client sends to the sink.  With TCP_NODELAY and
writes far below the loopback MSS, one ``send()`` is one segment, so a
group split over two writes shows up as two segments.  The check runs
smtpclient's ``sendmail`` (MAIL + 10 RCPT + DATA, then the content) and
``send_many`` (the end of one message, then the next one's MAIL + RCPT +
DATA, in one write) and looks at every segment.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.contenders import Spec
from benchmarks.sink import CLIENT_CPU, Sink, pinned

__all__ = ["WireCheck", "check_groups"]

ETH_P_IP = 0x0800
PACKET_HOST = 0  # on lo each segment is seen once more as it arrives


@dataclass
class WireCheck:
    contender: str
    messages: int
    groups: int  # segments holding a MAIL command
    whole: int  # of those, segments holding the whole group (MAIL ... DATA)
    segments: int  # client -> server segments with data, after EHLO and before QUIT
    ok: bool

    def describe(self) -> str:
        verdict = "ok" if self.ok else "SPLIT"
        return (
            f"{self.contender}: {self.messages} messages, {self.groups} command groups, "
            f"{self.whole} of them whole in one segment, "
            f"{self.segments / self.messages:.2f} segments per message -- {verdict}"
        )


class Capture:
    """Client -> *port* TCP payloads seen on lo (a packet socket: needs root)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.segments: list[bytes] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self._sock.bind(("lo", ETH_P_IP))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet, address = self._sock.recvfrom(65536 + 256)
            except TimeoutError:
                continue
            if address[2] != PACKET_HOST or packet[9] != socket.IPPROTO_TCP:
                continue
            tcp = packet[(packet[0] & 0x0F) * 4 :]
            _, destination = struct.unpack("!HH", tcp[:4])
            payload = tcp[(tcp[12] >> 4) * 4 :]
            if destination == self.port and payload:
                self.segments.append(payload)

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.segments


def _analyse(contender: str, messages: int, recipients: int, segments: list[bytes]) -> WireCheck:
    body = [s for s in segments if not s.startswith((b"EHLO", b"QUIT"))]
    groups = whole = 0
    for segment in body:
        at = segment.find(b"MAIL FROM:")
        if at < 0:
            continue
        groups += 1
        group = segment[at:]
        if (at == 0 or segment[:at].endswith(b"\r\n.\r\n")) and (
            group.count(b"\r\nRCPT TO:") == recipients and group.endswith(b"\r\nDATA\r\n")
        ):
            whole += 1
    per_message = 2 if contender == "smtpclient-sendmail" else 1
    expected_segments = per_message * messages + (1 if per_message == 1 else 0)
    ok = groups == whole == messages and len(body) == expected_segments
    return WireCheck(contender, messages, groups, whole, len(body), ok)


def check_groups(body: Path, messages: int = 50, recipients: int = 10) -> list[WireCheck]:
    """Send *messages* with each way and check every segment.

    Raises:
        PermissionError: no packet socket (not root).
    """
    checks = []
    with Sink() as sink:
        for contender in ("smtpclient-sendmail", "smtpclient-send_many"):
            capture = Capture(sink.port)
            spec = Spec(
                contender=contender,
                host="127.0.0.1",
                port=sink.port,
                sender="sender@example.test",
                recipients=[f"rcpt{i}@example.test" for i in range(recipients)],
                body=str(body),
                count=messages,
                warmup=0,
                batch=messages,
            )
            command = [sys.executable, "-m", "benchmarks.worker", json.dumps(asdict(spec))]
            done = subprocess.run(
                pinned(CLIENT_CPU, command),
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            time.sleep(0.3)  # let the last segments reach the capture
            segments = capture.stop()
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            checks.append(_analyse(contender, messages, recipients, segments))
    return checks
