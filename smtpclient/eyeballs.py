"""Happy Eyeballs (RFC 8305) connection racing, without threads.

``race(addresses, port)`` starts a TCP connect to the first address and,
if it has not succeeded after ``delay`` seconds (250 ms by default, RFC
8305 §5), starts the next one while the first keeps trying; a failed
attempt starts the next one at once.  The first connection to complete
wins, every other attempt is closed, and the result lists each attempt in
the order it was started -- so a host whose SYNs vanish costs a quarter of
a second, not a whole connect timeout.

Each attempt has its own timeout (``per_address``) and the race as a whole
an optional cap (``total``).  Non-blocking sockets and one ``selectors``
wait do the work in the calling thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import selectors
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from smtpclient.errors import ConnectError, SMTPTimeoutError
from smtpclient.protocol.state import Stage

__all__ = ["DEFAULT_DELAY", "Attempt", "RaceResult", "connect", "race"]

log = logging.getLogger(__name__)

DEFAULT_DELAY = 0.25  # RFC 8305 §8: "Connection Attempt Delay", 250 ms recommended
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


@dataclass(frozen=True)
class Attempt:
    """One connection attempt.

    Attributes:
        address, port: where it went.
        started, ended: seconds after the race began.
        outcome: "connected", "refused", "timeout" (its own timeout, or the
            race's cap), "unreachable", "error", "cancelled" (still trying
            when another attempt won) or "skipped" (a source address of the
            other family was required; never started).
        error: the operating system's words, when it failed.
    """

    address: str
    port: int
    started: float
    ended: float
    outcome: str
    error: str = ""


@dataclass(frozen=True, eq=False)
class RaceResult:
    """What a race produced: the winning socket (None if all failed) and
    every attempt in the order it was started."""

    sock: socket.socket | None
    winner: int | None  # index into the addresses given
    attempts: tuple[Attempt, ...]

    @property
    def tried(self) -> tuple[str, ...]:
        """The addresses in the order their attempts were started."""
        return tuple(a.address for a in self.attempts if a.outcome != "skipped")

    @property
    def address(self) -> str | None:
        """The winning address."""
        for attempt in self.attempts:
            if attempt.outcome == "connected":
                return attempt.address
        return None

    def summary(self) -> str:
        """One line for error messages: ``127.0.0.2:25 refused; [::1]:25 timeout``."""
        return "; ".join(
            f"{_show(a.address, a.port)} {a.outcome}" + (f" ({a.error})" if a.error else "")
            for a in self.attempts
        )


def _show(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _outcome_for(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "refused"
    if code == errno.ETIMEDOUT:
        return "timeout"
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return "unreachable"
    return "error"


class _Race:
    """The state of one race; ``run()`` drives it."""

    def __init__(
        self,
        addresses: Sequence[str],
        port: int,
        delay: float,
        per_address: float,
        total: float | None,
        source_address: tuple[str, int] | None,
    ) -> None:
        self.addresses = addresses
        self.port = port
        self.delay = delay
        self.per_address = per_address
        self.source_address = source_address
        self.begin = time.monotonic()
        self.end = self.begin + total if total is not None else math.inf
        self.selector = selectors.DefaultSelector()
        self.queue: deque[int] = deque(range(len(addresses)))
        # socket -> (index, start time, its own deadline)
        self.inflight: dict[socket.socket, tuple[int, float, float]] = {}
        self.done: dict[int, Attempt] = {}
        self.order: list[int] = []  # indices in the order attempts were started
        self.next_start = self.begin

    def _record(self, index: int, started: float, outcome: str, error: str = "") -> None:
        now = time.monotonic()
        self.done[index] = Attempt(
            self.addresses[index],
            self.port,
            round(started - self.begin, 6),
            round(now - self.begin, 6),
            outcome,
            error,
        )
        log.debug("connect %s: %s %s", _show(self.addresses[index], self.port), outcome, error)

    def _start(self, index: int) -> socket.socket | None:
        """Begin attempt *index*; return its socket if it connected at once."""
        address = self.addresses[index]
        now = time.monotonic()
        self.next_start = now + self.delay
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        source = self.source_address
        if source is not None and (":" in source[0]) != (family == socket.AF_INET6):
            self._record(index, now, "skipped", "the source address is of the other family")
            self.next_start = now
            return None
        self.order.append(index)
        sockaddr = (address, self.port, 0, 0) if family == socket.AF_INET6 else (address, self.port)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self._record(index, now, "error", exc.strerror or str(exc))
            self.next_start = now
            return None
        try:
            sock.setblocking(False)
            if source is not None:
                sock.bind(source)
            code = sock.connect_ex(sockaddr)
        except OSError as exc:
            sock.close()
            self._record(index, now, _outcome_for(exc.errno or 0), exc.strerror or str(exc))
            self.next_start = now
            return None
        if code == 0:
            self._record(index, now, "connected")
            return sock
        if code not in _IN_PROGRESS:
            sock.close()
            self._record(index, now, _outcome_for(code), errno.errorcode.get(code, str(code)))
            self.next_start = now
            return None
        self.inflight[sock] = (index, now, min(now + self.per_address, self.end))
        self.selector.register(sock, selectors.EVENT_WRITE)
        return None

    def _drop(self, sock: socket.socket, outcome: str, error: str = "") -> None:
        index, started, _ = self.inflight.pop(sock)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()
        self._record(index, started, outcome, error)

    def _wait(self) -> socket.socket | None:
        """Wait for the next event; return a connected socket if one won."""
        now = time.monotonic()
        wake = min([self.end, *(deadline for _, _, deadline in self.inflight.values())])
        if self.queue:
            wake = min(wake, self.next_start)
        events = self.selector.select(max(0.0, wake - now))
        winner: socket.socket | None = None
        ready = [key.fileobj for key, _ in events]
        ready_sockets = [sock for sock in self.inflight if sock in ready]
        # Several at once: the earlier address (the preferred one) wins.
        ready_sockets.sort(key=lambda sock: self.inflight[sock][0])
        for sock in ready_sockets:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0 and winner is None:
                winner = sock
            elif code != 0:
                self._drop(sock, _outcome_for(code), errno.errorcode.get(code, str(code)))
                self.next_start = time.monotonic()
        if winner is not None:
            index, started, _ = self.inflight.pop(winner)
            self.selector.unregister(winner)
            self._record(index, started, "connected")
            return winner
        now = time.monotonic()
        for sock, (_, _, deadline) in list(self.inflight.items()):
            if deadline <= now:
                self._drop(sock, "timeout", "no answer in time")
                self.next_start = now
        return None

    def run(self) -> RaceResult:
        winner: socket.socket | None = None
        try:
            while winner is None:
                now = time.monotonic()
                if now >= self.end:
                    for sock in list(self.inflight):
                        self._drop(sock, "timeout", "the time for connecting ran out")
                    break
                if self.queue and (now >= self.next_start or not self.inflight):
                    winner = self._start(self.queue.popleft())
                    continue
                if not self.inflight and not self.queue:
                    break
                winner = self._wait()
        finally:
            for sock in list(self.inflight):
                self._drop(sock, "cancelled")
            self.selector.close()
        winning_index = None
        if winner is not None:
            winner.setblocking(True)
            with contextlib.suppress(OSError):
                # Commands are written in complete groups: never wait for Nagle.
                winner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            winning_index = next(i for i, a in self.done.items() if a.outcome == "connected")
        skipped = [i for i in self.done if i not in self.order]
        attempts = tuple(self.done[i] for i in [*self.order, *skipped] if i in self.done)
        return RaceResult(winner, winning_index, attempts)


def race(
    addresses: Sequence[str],
    port: int,
    *,
    delay: float = DEFAULT_DELAY,
    per_address: float = 30.0,
    total: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> RaceResult:
    """Connect to the first of *addresses* (IP strings) that answers, Happy
    Eyeballs style; the caller owns the returned socket (blocking mode).

    Never raises for network failures: a result without ``sock`` means every
    attempt failed (see ``attempts``).

    Raises:
        ValueError: a delay or timeout is out of range, or an address is not
            an IP address.
    """
    if not 0 <= delay <= 60:
        raise ValueError(f"delay must be between 0 and 60 seconds, not {delay!r}")
    if not per_address > 0:
        raise ValueError(f"per_address must be positive, not {per_address!r}")
    if total is not None and not total > 0:
        raise ValueError(f"total must be positive, not {total!r}")
    for address in addresses:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        except (OSError, TypeError) as exc:
            raise ValueError(f"not an IP address: {address!r}") from exc
    return _Race(addresses, port, delay, per_address, total, source_address).run()


def connect(
    addresses: Sequence[str],
    port: int,
    *,
    host: str | None = None,
    delay: float = DEFAULT_DELAY,
    per_address: float = 30.0,
    total: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> tuple[socket.socket, RaceResult]:
    """``race()``, raising when no address connected.  The socket suits
    ``Session.connect(host, port, sock=sock, server_hostname=host)``.

    Raises:
        SMTPTimeoutError: every attempt timed out (or the cap ran out).
        ConnectError: no address connected (refused, unreachable ...).
        ValueError: as ``race()``.
    """
    result = race(
        addresses,
        port,
        delay=delay,
        per_address=per_address,
        total=total,
        source_address=source_address,
    )
    if result.sock is not None:
        return result.sock, result
    name = host or ", ".join(addresses) or "(no address)"
    started = [a for a in result.attempts if a.outcome != "skipped"]
    if started and all(a.outcome == "timeout" for a in started):
        raise SMTPTimeoutError(
            f"connecting to {name} timed out: {result.summary()}", stage=Stage.CONNECT, host=name
        )
    raise ConnectError(
        f"could not connect to {name}: {result.summary() or 'no address'}",
        stage=Stage.CONNECT,
        host=name,
    )
