"""Shared fixtures: real servers on loopback, and a check that nothing leaks."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

from servers.smtpd import AiosmtpdServer

# Hypothesis: no per-example deadline (CI machines are slow and shared), and
# derandomised in CI so a run is repeatable.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=200,
)
settings.load_profile("ci" if os.environ.get("SMTPCLIENT_CI") else "default")


def _open_sockets() -> set[str]:
    """Descriptors of this process that are sockets (Linux /proc)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(f"{fd}->{target}")
    return found


def _live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a socket or a thread behind.

    Being autouse and requested first, it is set up before and torn down
    after every other function-scoped fixture (servers included), so what
    it sees at the end is what the test itself leaked.
    """
    sockets_before = _open_sockets()
    threads_before = _live_threads()
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    deadline = time.monotonic() + 3.0
    while True:
        leaked_sockets = _open_sockets() - sockets_before
        leaked_threads = {
            t
            for t in _live_threads() - threads_before
            # Session-scoped servers started during this test are not leaks.
            if not t.name.startswith(("session-", "getaddrinfo"))
        }
        if not leaked_sockets and not leaked_threads:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(
        f"leaked sockets: {sorted(leaked_sockets)}; "
        f"leaked threads: {sorted(t.name for t in leaked_threads)}"
    )


@pytest.fixture
def smtpd() -> Iterator[AiosmtpdServer]:
    """A plain aiosmtpd server on 127.0.0.1 (no TLS, AUTH not offered)."""
    with AiosmtpdServer() as server:
        yield server
