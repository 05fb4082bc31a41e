"""The web-app scenario's server: Postfix with STARTTLS and Dovecot SASL,
delivering to its ``discard:`` transport, pinned to the server CPU.

The test fixtures in tests/servers/ build it; the queue lives on /dev/shm
when there is one, so the figures measure the clients rather than disk
flushes.  Postfix's own log (one ``status=sent`` line per delivered
recipient) is the counter that confirms what arrived.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.sink import SERVER_CPU

__all__ = ["MTA", "postfix_tls_sasl"]

_TESTS = Path(__file__).resolve().parent.parent / "tests"
USERNAME = "alice@example.test"
PASSWORD = "secret"


@dataclass
class MTA:
    host: str
    port: int
    ca_file: str
    username: str
    password: str
    postfix: Any

    def delivered(self) -> int:
        """Recipients Postfix has handed to its discard transport so far."""
        return discarded(self.postfix)

    def wait_for(self, expected: int, timeout: float = 60.0) -> int:
        return wait_discarded(self.postfix, expected, timeout)


def discarded(postfix: Any) -> int:
    """Recipients *postfix* has handed to its discard transport so far."""
    return sum(
        1
        for line in postfix.maillog().splitlines()
        if "/discard[" in line and " status=sent " in line
    )


def wait_discarded(postfix: Any, expected: int, timeout: float) -> int:
    """``discarded()`` once it reaches *expected*, or when *timeout* passes."""
    deadline = time.monotonic() + timeout
    while True:
        seen = discarded(postfix)
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


@contextlib.contextmanager
def on_server_cpu() -> Iterator[None]:
    """Start servers inside this block: their processes inherit the server
    CPU's affinity mask, and their queues go to /dev/shm when there is one."""
    saved_affinity, saved_tmp = os.sched_getaffinity(0), tempfile.tempdir
    # Children inherit the CPU mask of the thread that starts them.
    os.sched_setaffinity(0, {SERVER_CPU})
    if Path("/dev/shm").is_dir():
        tempfile.tempdir = "/dev/shm"
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved_affinity)
        tempfile.tempdir = saved_tmp


@contextlib.contextmanager
def postfix_tls_sasl() -> Iterator[MTA]:
    """Start Dovecot and Postfix (TLS, SASL, discard); stop them afterwards."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from servers.dovecot import DovecotServer  # noqa: PLC0415 (imported only where needed)
    from servers.postfix import PostfixServer  # noqa: PLC0415 (imported only where needed)

    dovecot = postfix = None
    try:
        with on_server_cpu():
            dovecot = DovecotServer().start()
            postfix = PostfixServer(
                tls=True, sasl=True, discard=True, dovecot_auth_socket=dovecot.auth_socket
            ).start()
    except BaseException:
        if dovecot is not None:
            dovecot.stop()
        raise
    try:
        assert postfix.certs is not None
        yield MTA(
            postfix.host, postfix.port, str(postfix.certs.ca_file), USERNAME, PASSWORD, postfix
        )
    finally:
        try:
            postfix.stop()
        finally:
            dovecot.stop()
