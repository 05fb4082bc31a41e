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
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

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


def read_log(path: Path) -> str:
    """The whole of a log file so far (empty if it does not exist yet)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


START_ATTEMPTS = 3  # a lost port race is retried; anything else fails at once


class ManagedServer:
    """What every real-server fixture does the same way: a private temporary
    directory, a start that retries when a probed-free port was taken
    meanwhile, a stop that leaves no process and no directory behind, and
    use as a context manager.

    A subclass names itself (``name``), says where its log is (``log_path``)
    and supplies ``_start_once`` and ``_stop_processes``; ``_prepare`` and
    ``_forget`` are optional hooks.
    """

    name = "server"

    def __init__(self, prefix: str, start_timeout: float) -> None:
        # realpath: Postfix compares its -c argument with configured names as text
        self.directory = Path(os.path.realpath(tempfile.mkdtemp(prefix=prefix)))
        self._start_timeout = start_timeout
        self._started = False

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def log(self) -> str:
        """The server's log so far."""
        return read_log(self.log_path)

    def start(self) -> Self:
        """Prepare, start and wait until the server answers.

        Raises RuntimeError (with the end of the log) if it does not come up.
        """
        if self._started:
            return self
        try:
            self._prepare()
            for attempt in range(START_ATTEMPTS):
                log_start = [len(read_log(path)) for path in self._log_files()]
                self._started = True
                problem = self._start_once()
                if problem is None:
                    return self
                self._stop_processes()
                new_log = "".join(
                    read_log(path)[start:]
                    for path, start in zip(self._log_files(), log_start, strict=True)
                )
                if not lost_port_race(new_log) or attempt == START_ATTEMPTS - 1:
                    tails = "\n".join(tail(path) for path in self._log_files())
                    raise RuntimeError(
                        f"{self.name} in {self.directory} {problem}; end of its log:\n{tails}"
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and everything it started; remove its directory."""
        try:
            if self._started:
                self._stop_processes()
        finally:
            self._started = False
            self._forget()
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for subclasses --------------------------------------------------------
    def _log_files(self) -> Sequence[Path]:
        """Where start-up errors can appear (searched and quoted on failure)."""
        return (self.log_path,)

    def _prepare(self) -> None:
        """One-time setup before the first start attempt."""

    def _start_once(self) -> str | None:
        """Configure on fresh ports, start, wait: None when ready, else what went wrong."""
        raise NotImplementedError

    def _stop_processes(self) -> None:
        raise NotImplementedError

    def _forget(self) -> None:
        """Undo what stop() must undo outside the directory (always called)."""


class ChildServer(ManagedServer):
    """A ManagedServer whose daemon runs in the foreground as our child, in a
    session of its own so that stop() finds everything it forked."""

    def __init__(self, prefix: str, start_timeout: float) -> None:
        super().__init__(prefix, start_timeout)
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self, argv: Sequence[str], output: Path) -> None:
        """Start ``argv``; what it prints itself goes (appended) to ``output``."""
        with output.open("ab") as out:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_running(self, ready: Callable[[], bool]) -> bool:
        """Poll ``ready`` until it holds (True), or the child exits or the
        start timeout passes (False)."""
        process = self._process
        assert process is not None
        met = False

        def done() -> bool:
            nonlocal met
            if process.poll() is not None:
                return True  # exited: stop waiting, not ready
            met = ready()
            return met

        wait_until(done, self._start_timeout)
        return met and process.poll() is None

    def _stop_processes(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            # The whole group at once: a master alone would signal its
            # children and then poll (Dovecot: once a second) for them to go.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        # The child is gone; anything it forked is still in its session.
        kill_session(process.pid)
