"""Sending no faster than a provider allows: a message rate, and fewer
connections for a while after the server says it has too many.

``Mailer(rate_limit=...)`` holds one ``SendLimits`` shared by all its
threads:

* **Message rate** (optional): a token bucket refilled at ``per_second``
  tokens a second, holding at most ``burst``.  Every message takes a token
  before it is sent; a thread that finds the bucket empty reserves the next
  token and sleeps until it is due, so waiting threads are served in order
  and, over any stretch of time T, at most ``per_second * T + burst``
  messages start.
* **Busy server**: a 421 at the greeting, or a 4xx whose text says "too many
  connections" (or similar), halves the number of connections the Mailer
  uses at once -- and lowers it to the number of connections the server
  let it keep open, if that is fewer and not none -- for ``busy_cooldown``
  seconds; after that one connection more is allowed every
  ``busy_cooldown / 2`` seconds until the Mailer is back at its
  ``max_connections``.  The failing send itself is not retried
  here: the caller (or the Mailer's ``RetryPolicy``) does that, and then
  waits for one of the fewer slots instead of hammering the server.

The limits are per ``Mailer`` -- that is, per process: several processes
(Celery workers, gunicorn workers) each apply their own.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from smtpclient.errors import PoolTimeout, SMTPClientError
from smtpclient.pool import SessionPool
from smtpclient.protocol.state import Stage

if TYPE_CHECKING:
    from smtpclient.server import ServerSettings
    from smtpclient.session import Session

__all__ = ["RateLimit", "SendLimits", "TokenBucket", "server_is_busy"]

log = logging.getLogger(__name__)

# What providers say when a client opens too many connections or sends too
# fast: "421 4.7.0 Too many concurrent SMTP connections", "452 4.3.1 ...
# rate limit exceeded", "421 4.7.28 ... unusual rate", "451 4.7.1 throttled".
_BUSY_TEXT = re.compile(
    r"too many (concurrent |simultaneous |open )?(connections|sessions|messages|mails)|"
    r"concurren|connection limit|rate limit|unusual rate|throttl|slow down",
    re.IGNORECASE,
)


def server_is_busy(error: BaseException) -> bool:
    """Did the server refuse because of too many connections or too fast a rate?

    A 421 greeting counts (servers say it when they are at their connection
    limit), as does any 4xx whose text says so.  A 421 on a connection that
    sat idle in the pool (the server's idle timeout) does not.
    """
    if not isinstance(error, SMTPClientError) or error.reply is None:
        return False
    reply = error.reply
    if not 400 <= reply.code < 500:
        return False
    if reply.code == 421 and error.stage is Stage.GREETING:
        return True
    return bool(_BUSY_TEXT.search(reply.text))


_SPELL = 1.0  # seconds within which busy replies count as one signal


@dataclass(frozen=True)
class RateLimit:
    """A Mailer's limits (also accepted as a plain number: messages a second).

    Attributes:
        per_second: messages a second, at most (None: no rate limit).
        burst: messages that may start at once after a quiet spell (the
            bucket's size); 1 spaces every message evenly.
        busy_cooldown: seconds the concurrency stays halved after the
            server said it has too many connections (0: never shrink).

    Raises:
        ValueError: a rate, burst or cooldown that is not positive.
    """

    per_second: float | None = None
    burst: int = 1
    busy_cooldown: float = 30.0

    def __post_init__(self) -> None:
        if self.per_second is not None and not (
            math.isfinite(self.per_second) and self.per_second > 0
        ):
            raise ValueError(f"per_second must be a positive number, not {self.per_second!r}")
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 1:
            raise ValueError(f"burst must be an int >= 1, not {self.burst!r}")
        if not (math.isfinite(self.busy_cooldown) and self.busy_cooldown >= 0):
            raise ValueError(f"busy_cooldown must be >= 0, not {self.busy_cooldown!r}")

    @classmethod
    def coerce(cls, value: RateLimit | float | None) -> RateLimit:
        """A ``RateLimit`` from itself, a number of messages a second, or None
        (no rate limit; busy servers still shrink the concurrency).

        Raises:
            TypeError: *value* is none of these.
            ValueError: as the constructor.
        """
        if value is None:
            return cls()
        if isinstance(value, RateLimit):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(per_second=float(value))
        raise TypeError(
            f"rate_limit must be a RateLimit, a number or None, not {type(value).__name__}"
        )


class TokenBucket:
    """Tokens at *rate* a second, at most *burst* saved up; thread-safe.

    ``take(n)`` reserves *n* tokens and sleeps until they are due.  The
    bucket may go into debt: a reservation is never refused, only delayed,
    so every caller is served in the order it asked.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self, count: int = 1) -> float:
        """Reserve *count* tokens; return the seconds until they are due."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def take(self, count: int = 1) -> float:
        """Reserve *count* tokens and wait until they are due; return the wait."""
        wait = self.reserve(count)
        if wait > 0:
            self._sleep(wait)
        return wait


class _Lease(Protocol):
    session: Session
    reused: bool

    def __enter__(self) -> _Lease: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SendLimits:
    """The rate and concurrency limits of one Mailer (see the module doc).

    *pool* is the Mailer's: its ``max_connections`` is the ceiling, its
    ``checkout_timeout`` bounds the wait for a slot while the concurrency is
    reduced, and the connections it has established when the server says it
    is busy are taken as what the server tolerates.
    """

    def __init__(
        self,
        limit: RateLimit,
        pool: SessionPool,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.bucket = (
            TokenBucket(limit.per_second, limit.burst, clock=clock)
            if limit.per_second is not None
            else None
        )
        self.pool = pool
        self.ceiling = pool.max_connections
        self.checkout_timeout = pool.checkout_timeout
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._allowed = self.ceiling  # connections in use at once, at most
        self._in_use = 0  # slots handed out (counted only while shrunk)
        self._next_change = 0.0  # when _allowed may grow by one again
        self._last_shrink = -math.inf

    # --- the message rate ------------------------------------------------------------

    def take(self, messages: int = 1) -> None:
        """Wait until *messages* may be sent under the message rate."""
        if self.bucket is not None and messages > 0:
            self.bucket.take(messages)

    def room(self, wanted: int) -> int:
        """How many messages one pipelined batch may carry (at most a burst)."""
        if self.bucket is None:
            return wanted
        return max(1, min(wanted, self.limit.burst))

    # --- concurrency -----------------------------------------------------------------

    @property
    def allowed(self) -> int:
        """Connections the Mailer may use at once right now."""
        with self._cond:
            return self._current()

    def _current(self) -> int:
        """Under the lock: the allowance, grown back one step if it is time."""
        if self._allowed < self.ceiling and self._clock() >= self._next_change:
            self._allowed += 1
            self._next_change = self._clock() + self.limit.busy_cooldown / 2
            log.info("server busy spell over? now using up to %d connection(s)", self._allowed)
            self._cond.notify_all()
        return self._allowed

    def observe(self, error: BaseException) -> None:
        """Shrink the concurrency when *error* says the server is busy."""
        if self.limit.busy_cooldown <= 0 or not server_is_busy(error):
            return
        stats = self.pool.stats()
        established = stats.open - stats.opening  # what the server let us keep
        with self._cond:
            now = self._clock()
            allowed = self._current()
            # Replies on several connections at once are one busy spell: halve once.
            if now - self._last_shrink >= _SPELL:
                allowed //= 2
                self._last_shrink = now
            if established:
                allowed = min(allowed, established)
            self._allowed = max(1, allowed)
            self._next_change = now + self.limit.busy_cooldown
        log.warning(
            "server busy (%s): using at most %d connection(s) for %g s",
            error,
            self._allowed,
            self.limit.busy_cooldown,
        )

    def observe_all(self, outcomes: Iterable[object]) -> None:
        """``observe`` each exception among *outcomes* (a batch's results)."""
        for outcome in outcomes:
            if isinstance(outcome, SMTPClientError):
                self.observe(outcome)

    def checkout(self, pool: SessionPool, settings: ServerSettings, *, fresh: bool) -> _Lease:
        """``pool.checkout``, after waiting for a slot while the concurrency is
        reduced (a busy server); the slot is freed with the lease.

        At full concurrency no slot is counted: the pool's own limit applies,
        and sends already under way when the server turns busy finish
        uncounted (a few seconds of overlap at most).

        Raises:
            PoolTimeout: no slot became free within ``checkout_timeout``.
            as ``SessionPool.checkout``.
        """
        with self._cond:
            if self._current() >= self.ceiling:
                counted = False
            else:
                self._wait_for_slot()
                self._in_use += 1
                counted = True
        if not counted:
            try:
                return pool.checkout(settings, fresh=fresh)
            except SMTPClientError as exc:  # a 421 greeting
                self.observe(exc)
                raise
        try:
            lease = pool.checkout(settings, fresh=fresh)
        except BaseException as exc:
            self._free_slot()
            self.observe(exc)
            raise
        return _SlotLease(lease, self._free_slot)

    def _wait_for_slot(self) -> None:
        deadline = self._clock() + self.checkout_timeout
        while self._in_use >= self._current():
            left = deadline - self._clock()
            if left <= 0:
                raise PoolTimeout(
                    f"the server said it was busy; no connection slot of the {self._allowed} "
                    f"still used became free within {self.checkout_timeout:g} s"
                )
            # Wake up when the allowance may grow, even if nobody frees a slot.
            self._cond.wait(min(left, max(self._next_change - self._clock(), 0.01)))

    def _free_slot(self) -> None:
        with self._cond:
            self._in_use = max(self._in_use - 1, 0)
            self._cond.notify_all()


class _SlotLease:
    """A pool lease that also frees a concurrency slot when it is released."""

    def __init__(self, lease: _Lease, free: Callable[[], None]) -> None:
        self._lease = lease
        self._free = free
        self.session = lease.session
        self.reused = lease.reused

    def __enter__(self) -> _SlotLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._lease.__exit__(exc_type, exc, tb)
        finally:
            self._free()
