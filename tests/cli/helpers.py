"""Running the CLI as users do: a subprocess, ``python -m smtpclient ...``."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0  # seconds for one CLI run; every run is far shorter


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: this checkout first on the path, none of
    the user's own SMTPCLIENT_* settings, and a HOME with no settings file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPCLIENT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HOME"] = "/nonexistent-home-for-tests"
    env.pop("XDG_CONFIG_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smtpclient", *args]


def run_cli(
    *args: str,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``smtpclient ARGS`` to completion and return what it printed (text)."""
    data = input.encode("utf-8") if isinstance(input, str) else input
    done = subprocess.run(
        cli_command(*args),
        input=data if data is not None else b"",
        capture_output=True,
        env=env or cli_env(),
        timeout=timeout,
        check=False,
        start_new_session=True,  # no controlling terminal: never prompt on the developer's
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def refused_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_until(fd: int, wanted: bytes, deadline: float) -> bytes:
    """Read *fd* until *wanted* was seen or the deadline passed (then raise)."""
    seen = b""
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {wanted!r}; got {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty's master gives EIO once the child is gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"output ended before {wanted!r}; got {seen[-2000:]!r}")
            seen += chunk
    return seen


def read_all(fd: int, deadline: float) -> bytes:
    """Everything *fd* gives until EOF (or EIO on a pty), within the deadline."""
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"output did not end in time; got {out[-2000:]!r}")
