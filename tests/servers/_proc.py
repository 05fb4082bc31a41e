"""Small process and socket helpers shared by the real-server fixtures.

Every wait here is bounded: a server that does not come up fails the test
with its log instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

NOBODY = 65534  # the uid/gid that owns delivered mail (no system user needed)


def require_binary(name: str, package: str) -> str:
    """Return the path of ``name`` or raise a clear error (tests must fail, not skip)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RuntimeError(
            f"{name!r} is not installed: install the Debian package {package!r} "
            "(.ci/run does this) to run the tests that need it"
        )
    return path


def free_port(host: str = "127.0.0.1", *, udp_too: bool = False) -> int:
    """An ephemeral port that is free right now (TCP, and UDP when asked).

    The port is released before it is returned, so another process could
    take it; callers that start a server on it retry on a bind failure.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_banner(host: str, port: int, timeout: float = 2.0) -> bytes:
    """Connect, read the first line the server sends, close. b"" on failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while not data.endswith(b"\n") and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return b""


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to (host, port) succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent just has not reaped it).
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return False
    return True


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (daemons keep their children there)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields: state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def process_session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def kill_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL everything left in session ``sid``, bounded in time."""
    if sid <= 1 or sid == os.getsid(0):
        return  # never our own session (that would kill pytest) nor init's
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = session_members(sid)
        if not pids:
            return
        _signal_all(pids, sig)
        if wait_until(lambda: not session_members(sid), wait):
            return
    leftover = session_members(sid)
    if leftover:
        raise RuntimeError(f"processes {leftover} of session {sid} survived SIGKILL")


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def lost_port_race(log_text: str) -> bool:
    """Did a server fail because its probed-free port was taken meanwhile?"""
    return "address already in use" in log_text.lower()


def tail(path: Path, limit: int = 4000) -> str:
    """The end of a log file, for error messages (empty if there is none yet)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]
