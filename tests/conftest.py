"""Shared fixtures: real servers on loopback, and a check that nothing leaks."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

from servers.certs import TestCertificates, make_test_certificates
from servers.dovecot import DovecotServer
from servers.knot import KnotServer, example_zone
from servers.postfix import PostfixServer
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


# -- Real servers (Postfix, Dovecot, Knot DNS): see tests/servers/ -----------
# Session-scoped: each starts on first use, on 127.0.0.1 and ephemeral ports,
# and stops at the end of the session. A missing package fails the tests
# that need it (never a skip: CI must notice).

_S = TypeVar("_S")


def _start_or_fail(server_factory: Callable[[], _S]) -> _S:
    try:
        return server_factory()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def server_certs() -> Iterator[TestCertificates]:
    """A trustme CA and a server certificate for localhost, 127.0.0.1, ::1
    and mail.example.test, as PEM files. ``.client_context()`` trusts it."""
    directory = tempfile.mkdtemp(prefix="smtpclient-certs-")
    os.chmod(directory, 0o755)  # servers may read them as their own user
    try:
        yield make_test_certificates(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixServer]:
    """Postfix without TLS or AUTH; mail for @example.test goes to its Maildir
    (``maildir_messages()``; call ``clear_maildir()`` first, it is shared)."""
    server = _start_or_fail(lambda: PostfixServer().start())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """Dovecot: SASL socket for Postfix, LMTP on a Unix socket and on TCP."""
    server = _start_or_fail(lambda: DovecotServer().start())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postfix_tls_sasl(
    dovecot: DovecotServer, server_certs: TestCertificates
) -> Iterator[PostfixServer]:
    """Postfix with STARTTLS on ``port``, implicit TLS on ``implicit_port``,
    and AUTH through Dovecot offered only after TLS (``server_certs``' CA)."""
    server = _start_or_fail(
        lambda: PostfixServer(
            tls=True,
            implicit_tls=True,
            certs=server_certs,
            sasl=True,
            dovecot_auth_socket=dovecot.auth_socket,
        ).start()
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def knot() -> Iterator[KnotServer]:
    """Knot DNS serving tests/servers/zones/example.test.zone on 127.0.0.1:``port``."""
    server = _start_or_fail(lambda: KnotServer({"example.test": example_zone()}).start())
    try:
        yield server
    finally:
        server.stop()
