"""The pool's parts: a pooled connection, the bookkeeping, leases and stats.

``smtpclient.pool.SessionPool`` decides; these hold what it decides about.
The bookkeeping (``Book``) is a separate object so that the pool's GC
finalizer can close sockets through it without keeping the pool alive.

Imports go one way: ``pool`` imports this module, never the reverse (a
``Lease`` gives its session back through the check-in function the pool
hands it, not through the pool).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from smtpclient.errors import SMTPClientError
from smtpclient.server import PoolKey
from smtpclient.session import Session

__all__ = ["Book", "CheckIn", "Entry", "Lease", "PoolStats", "close_entry"]


class Entry:
    """One pooled connection and when it was last put back."""

    __slots__ = ("idle_since", "key", "session")

    def __init__(self, session: Session, key: PoolKey) -> None:
        self.session = session
        self.key = key
        self.idle_since = time.monotonic()


class Book:
    """The pool's bookkeeping, shared with its GC finalizer (which must not
    hold the pool itself, or the pool would never be collected)."""

    def __init__(self) -> None:
        self.idle: dict[PoolKey, list[Entry]] = {}  # per key, most recently used last
        self.leased: set[Entry] = set()
        self.opening = 0  # slots reserved for connections being opened
        self.closing = 0  # retired connections not closed yet (they still count)
        self.peak = 0
        self.opened = 0
        self.reused = 0
        # No idle connection is due for retirement by age or idleness before
        # this time.monotonic() (a lower bound: the pool rescans once past it).
        self.next_due = float("inf")

    @property
    def idle_count(self) -> int:
        return sum(len(entries) for entries in self.idle.values())

    @property
    def open_count(self) -> int:
        return self.idle_count + len(self.leased) + self.opening + self.closing

    def take(self, entry: Entry) -> bool:
        """Remove *entry* from the idle stacks; False if it was not idle."""
        stack = self.idle.get(entry.key)
        if not stack or entry not in stack:
            return False
        stack.remove(entry)
        if not stack:
            del self.idle[entry.key]
        return True

    def least_recently_used(self) -> Entry | None:
        """The idle connection unused the longest (over every key)."""
        oldest: Entry | None = None
        for stack in self.idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest.idle_since):
                oldest = stack[0]
        return oldest

    def drop_all(self) -> None:
        """Close every descriptor without a byte of SMTP (fork, GC, exit)."""
        entries = [e for stack in self.idle.values() for e in stack] + list(self.leased)
        self.idle.clear()
        self.leased.clear()
        self.opening = self.closing = 0
        for entry in entries:
            entry.session.drop()


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool.

    Attributes:
        open: connections that exist now (idle + in use + being opened).
        idle, in_use, opening: the parts of ``open``.
        peak: the most connections that existed at once.
        opened: connections opened in all; reused: checkouts served by reuse.
    """

    open: int
    idle: int
    in_use: int
    opening: int
    peak: int
    opened: int
    reused: int


class CheckIn(Protocol):
    """How a lease gives its connection back (``SessionPool``'s check-in)."""

    def __call__(self, entry: Entry, *, discard: bool, polite: bool) -> None: ...


class Lease:
    """A session checked out of a pool; give it back with ``release()`` or
    by leaving the ``with`` block.

    Attributes:
        session: the ``Session`` to use (from this thread only).
        reused: True when the connection had been idle in the pool (it may
            have been closed by the server meanwhile); False when it was
            opened for this checkout.
    """

    def __init__(self, entry: Entry, checkin: CheckIn, *, reused: bool) -> None:
        self._checkin = checkin
        self._entry: Entry | None = entry
        self.session = entry.session
        self.reused = reused

    def release(self, *, discard: bool = False) -> None:
        """Give the session back (QUIT and close it instead with *discard*).
        A broken session is never kept.  Calling it again does nothing."""
        self._release(discard=discard, polite=True)

    def _release(self, *, discard: bool, polite: bool) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._checkin(entry, discard=discard, polite=polite)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An interruption (KeyboardInterrupt, a foreign exception) may have
        # come between a command and its reply: the stream cannot be trusted.
        # Our own errors leave the session usable only at a clean boundary.
        trusted = exc is None or isinstance(exc, (SMTPClientError, ValueError, TypeError))
        self._release(discard=not trusted, polite=trusted)

    def __repr__(self) -> str:
        state = "released" if self._entry is None else "held"
        return f"<Lease {self.session!r} reused={self.reused} {state}>"


def close_entry(entry: Entry, *, polite: bool = True) -> None:
    """QUIT (when the session can still speak) and close; never raises."""
    session = entry.session
    if polite and session.usable:
        session.quit()
    else:
        session.close()
