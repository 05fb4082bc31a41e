"""Multihomed targets on loopback: real servers, refusing addresses and black holes,
all on one port number across 127.0.0.x (and ::1).

Direct delivery connects to every MX address on the same port, so a test
binds all of its servers on one port: the first on port 0, the rest on the
port that gave (``on_one_port`` retries with a new port when one of the
addresses has it taken already).

* ``Refusing(host, port)``: the address/port is bound but not listening, so
  a connection is refused at once (and nothing else can take the port).
* ``BlackHole(host, port)``: a ``listen(0)`` socket whose backlog is full
  with one connection never accepted, so a new connection's SYNs are
  dropped and ``connect()`` hangs until the client gives up.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import Any

__all__ = ["BlackHole", "Refusing", "on_one_port"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Refusing:
    """An address that refuses connections on *port* (bound, not listening)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self._sock = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlackHole:
    """An address whose connects hang: the listen backlog is already full."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self._listener = socket.socket(_family(host), socket.SOCK_STREAM)
        self._filler: socket.socket | None = None
        try:
            self._listener.bind((host, port))
            self._listener.listen(0)
            self.port: int = self._listener.getsockname()[1]
            # Fills the backlog (Linux keeps one connection for listen(0)); never accepted.
            self._filler = socket.create_connection((host, self.port), timeout=5)
        except OSError:
            self.close()
            raise

    def hangs(self, seconds: float = 0.3) -> bool:
        """True if a new connection does not complete within *seconds* (self-check)."""
        probe = socket.socket(_family(self.host), socket.SOCK_STREAM)
        probe.settimeout(seconds)
        try:
            probe.connect((self.host, self.port))
        except TimeoutError:
            return True
        except OSError:
            return False
        finally:
            probe.close()
        return False

    def close(self) -> None:
        if self._filler is not None:
            self._filler.close()
        self._listener.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Starter = Callable[[int], AbstractContextManager[Any]]


@contextlib.contextmanager
def on_one_port(*starters: Starter, tries: int = 20) -> Iterator[tuple[int, list[Any]]]:
    """Enter ``starter(port)`` for each starter, all on the same port number.

    Yields ``(port, [what each starter gave])``; everything is stopped on exit.
    """
    for _ in range(tries):
        stack = ExitStack()
        try:
            first = stack.enter_context(starters[0](0))
            port: int = first.port
            started = [first] + [stack.enter_context(start(port)) for start in starters[1:]]
        except OSError as exc:
            stack.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        with stack:
            yield port, started
        return
    raise RuntimeError(f"no port was free on every address after {tries} tries")
