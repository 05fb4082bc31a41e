"""A thread-safe pool of SMTP sessions, keyed by server settings.

Any number of threads check sessions out and back in.  The pool's lock
guards its bookkeeping only: connecting, TLS, AUTH, health checks, QUIT and
sending all happen outside it, so one slow server never stalls the others.

* At most ``max_connections`` connections exist at a time (idle, in use and
  being opened together, over all keys).  A checkout waits for a free one up
  to its timeout, then raises ``PoolTimeout``.  When the pool is full of idle
  connections to *another* server, the least recently used one is closed to
  make room.
* A connection idle for ``health_check_after`` seconds gets an RSET before it
  is handed out; one that has heard from the server while idle (a 421 or a
  hang-up) is dropped without a word.  Connections are retired (QUIT) after
  ``max_age`` seconds, ``max_idle_time`` seconds unused, or
  ``max_messages`` messages.  Idle connections are reaped lazily, on
  checkout and check-in, or when ``prune()`` is called: the pool starts no
  thread.
* A session that failed (any lost connection, timeout or 421 breaks it) or
  was left mid-transaction is never returned to the pool.
* ``close()`` drains: idle connections say QUIT, and those in use are closed
  as they come back.  Garbage collection closes the sockets of whatever is
  left, without network IO.
* Fork-safe: in a child process (gunicorn --preload, Celery prefork) every
  inherited connection is dropped without QUIT -- only the child's copy of
  the descriptor is closed, the parent's conversation is untouched -- and the
  child opens its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from smtpclient.errors import PoolClosedError, PoolTimeout, SMTPClientError
from smtpclient.poolparts import Book, Entry, Lease, PoolStats, close_entry
from smtpclient.server import PoolKey, ServerSettings
from smtpclient.session import Session

__all__ = ["Lease", "PoolStats", "SessionPool"]

log = logging.getLogger(__name__)

_POOLS: weakref.WeakSet[SessionPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SessionPool:
    """Sessions shared by many threads, for one or more servers.

    Args:
        max_connections: connections open at once, over every server.
        checkout_timeout: default seconds ``checkout`` waits for a free one.
        max_idle_time: retire a connection unused this long (seconds).
        max_age: retire a connection this old (seconds), used or not.
        max_messages: retire a connection after this many messages (None: no limit).
        health_check_after: RSET a connection idle at least this long before
            reuse (0: always; None: never).

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(
        self,
        *,
        max_connections: int = 4,
        checkout_timeout: float = 30.0,
        max_idle_time: float = 30.0,
        max_age: float = 300.0,
        max_messages: int | None = 100,
        health_check_after: float | None = 5.0,
    ) -> None:
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, not {max_connections!r}")
        for name, value in (
            ("checkout_timeout", checkout_timeout),
            ("max_idle_time", max_idle_time),
            ("max_age", max_age),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if max_messages is not None and max_messages < 1:
            raise ValueError(f"max_messages must be positive or None, not {max_messages!r}")
        if health_check_after is not None and health_check_after < 0:
            raise ValueError("health_check_after must be >= 0 or None")
        self.max_connections = max_connections
        self.checkout_timeout = checkout_timeout
        self.max_idle_time = max_idle_time
        self.max_age = max_age
        self.max_messages = max_messages
        self.health_check_after = health_check_after
        self._book = Book()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # waits for a free slot
        self._waiting = 0  # threads in self._cond.wait(): notify only when there are any
        self._closed = False
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, Book.drop_all, self._book)
        _POOLS.add(self)

    # --- checkout ----------------------------------------------------------------------

    def checkout(
        self, settings: ServerSettings, *, timeout: float | None = None, fresh: bool = False
    ) -> Lease:
        """Take a session for *settings*: an idle one if there is one (with a
        health check when it has been idle a while), else a new connection.
        With *fresh*, always open a new connection.

        Raises:
            PoolTimeout: no connection became free within *timeout* seconds
                (default ``checkout_timeout``).
            PoolClosedError: the pool is closed.
            SMTPClientError: opening a new connection failed (as
                ``Session.connect`` and ``Session.authenticate`` raise).
        """
        wait = self.checkout_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        key = settings.key
        while True:
            if self._pid != os.getpid():
                self._check_process()  # a fork the at-fork hook did not see
            entry, opening, retired, evicted = self._reserve(key, deadline, wait, fresh=fresh)
            self._retire(retired)
            if opening:
                return self._open(settings, key, evicted)
            if entry is None:
                continue  # retired something: there may be room now
            try:
                healthy = self._healthy(entry)
            except BaseException:
                with self._lock:
                    self._book.reused -= 1
                self._checkin(entry, discard=True, polite=False)
                raise
            if healthy:
                return Lease(entry, self._checkin, reused=True)
            with self._lock:
                self._book.reused -= 1  # counted by _reserve, but not reused after all
            self._checkin(entry, discard=True, polite=False)

    @contextmanager
    def session(
        self, settings: ServerSettings, *, timeout: float | None = None
    ) -> Iterator[Session]:
        """``with pool.session(settings) as session:`` -- checkout and check-in.

        Raises: as ``checkout``.
        """
        with self.checkout(settings, timeout=timeout) as lease:
            yield lease.session

    def _reserve(
        self, key: PoolKey, deadline: float, wait: float, *, fresh: bool
    ) -> tuple[Entry | None, bool, list[Entry], Entry | None]:
        """Under the lock: an idle entry to reuse, or a reserved slot to open
        one (True); plus connections to retire outside the lock, and the
        idle connection evicted to make the slot (closed before connecting)."""
        book = self._book
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosedError("the session pool is closed")
                retired = self._expired()
                stack = book.idle.get(key)
                if stack and not fresh:
                    # An emptied stack stays: check-in refills it (no rehash).
                    entry = stack.pop()
                    book.leased.add(entry)
                    book.reused += 1
                    return entry, False, retired, None
                evicted = None
                if book.open_count >= self.max_connections and not retired:
                    evicted = book.least_recently_used()
                if book.open_count < self.max_connections or evicted is not None:
                    if evicted is not None:
                        book.take(evicted)  # its slot passes to the new connection
                    book.opening += 1
                    book.peak = max(book.peak, book.open_count)
                    return None, True, retired, evicted
                if retired:
                    return None, False, retired, None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolTimeout(
                        f"no connection to {key} became free within {wait:g} s: all "
                        f"{self.max_connections} are in use (raise max_connections or the "
                        "checkout timeout, or send less at once)",
                        host=key.host,
                    )
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1

    def _wake(self) -> None:
        """Under the lock: wake the threads waiting for a slot, if any."""
        if self._waiting:
            self._cond.notify_all()

    def _expired(self) -> list[Entry]:
        """Under the lock: take out every idle connection due for retirement
        (each keeps counting as open until ``_retire`` has closed it)."""
        book = self._book
        now = time.monotonic()
        if now < book.next_due:
            # No idle connection is old or idle enough yet (the usual case):
            # their message counts were checked at check-in, and whether a
            # session is still usable is checked as it is handed out.
            return []
        out: list[Entry] = []
        next_due = float("inf")
        for key in list(book.idle):
            stack = book.idle[key]
            keep = [e for e in stack if not self._due(e, now)]
            if len(keep) != len(stack):
                out += [e for e in stack if e not in keep]
                if keep:
                    book.idle[key] = keep
                else:
                    del book.idle[key]
            for entry in keep:
                next_due = min(next_due, self._due_at(entry))
        book.next_due = next_due
        book.closing += len(out)
        return out

    def _due_at(self, entry: Entry) -> float:
        """When an idle *entry* becomes due for retirement by age or idleness."""
        return min(entry.idle_since + self.max_idle_time, entry.session.created + self.max_age)

    def _due(self, entry: Entry, now: float) -> bool:
        session = entry.session
        return (
            not session.usable
            or now - entry.idle_since >= self.max_idle_time
            or now - session.created >= self.max_age
            or (self.max_messages is not None and session.messages_sent >= self.max_messages)
        )

    def _open(self, settings: ServerSettings, key: PoolKey, evicted: Entry | None) -> Lease:
        """Open a connection in the slot ``_reserve`` set aside (outside the lock)."""
        try:
            if evicted is not None:
                close_entry(evicted)
            session = settings.connect()
        except BaseException:
            with self._lock:
                self._book.opening = max(self._book.opening - 1, 0)
                self._wake()
            raise
        entry = Entry(session, key)
        with self._lock:
            self._book.opening = max(self._book.opening - 1, 0)
            closed = self._closed
            if not closed:
                self._book.opened += 1
                self._book.leased.add(entry)
            self._wake()
        if closed:
            session.quit()
            raise PoolClosedError("the session pool was closed while connecting")
        log.debug("opened a connection to %s", key)
        return Lease(entry, self._checkin, reused=False)

    def _healthy(self, entry: Entry) -> bool:
        """Outside the lock: is an idle connection still worth using?"""
        session = entry.session
        # Anything the server sent while we were silent is a 421 or a hang-up
        # (idle_check() reads without waiting and sends nothing).
        if not session.idle_check():
            log.debug("dropping a connection to %s closed by the server while idle", entry.key)
            session.close()
            return False
        check_after = self.health_check_after
        if check_after is None or time.monotonic() - entry.idle_since < check_after:
            return True
        try:
            session.rset()
        except SMTPClientError as exc:
            log.debug("health check of a connection to %s failed: %s", entry.key, exc)
            return False
        return True

    # --- check-in and retirement ---------------------------------------------------

    def _checkin(self, entry: Entry, *, discard: bool, polite: bool = True) -> None:
        retired: list[Entry] = []
        with self._lock:
            book = self._book
            if entry not in book.leased:
                return  # forgotten at fork: its descriptor was dropped already
            book.leased.discard(entry)
            now = time.monotonic()
            if discard or self._closed or self._due(entry, now):
                retired.append(entry)
                book.closing += 1
            else:
                entry.idle_since = now
                book.idle.setdefault(entry.key, []).append(entry)
                due = min(now + self.max_idle_time, entry.session.created + self.max_age)
                book.next_due = min(book.next_due, due)
            later = self._expired() if now >= book.next_due else []
            if self._waiting:
                self._cond.notify_all()
        if retired:
            self._retire(retired, polite=polite)
        if later:
            self._retire(later)

    def _retire(self, entries: list[Entry], *, polite: bool = True) -> None:
        """Outside the lock: close retired connections, then free their slots."""
        if not entries:
            return
        try:
            for entry in entries:
                close_entry(entry, polite=polite)
        finally:
            with self._lock:
                self._book.closing = max(self._book.closing - len(entries), 0)
                self._wake()

    def prune(self) -> int:
        """Retire idle connections that are due (too old, idle too long, or
        closed by the server); return how many.  The pool also does this on
        every checkout and check-in; call it from a timer if your process can
        sit idle for long and you want sockets closed promptly."""
        self._check_process()
        with self._lock:
            retired = self._expired()
            idle = [e for stack in self._book.idle.values() for e in stack]
        self._retire(retired)
        # Peek outside the lock; take out only those still idle by then.
        # Only peek here (never read): another thread may check one of these
        # out meanwhile, and its replies must not be consumed by us.
        hung_up = [e for e in idle if e.session.channel.transport.readable()]
        with self._lock:
            stale = [e for e in hung_up if self._book.take(e)]
            self._book.closing += len(stale)
        self._retire(stale, polite=False)
        return len(retired) + len(stale)

    # --- processes ---------------------------------------------------------------------

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            # A fork the at-fork hook did not see (it always should).
            self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's connections without QUIT
        (only the child's copies of the descriptors are closed).  Called
        automatically after ``os.fork()``; there is no need to call it.

        The lock may have been held by a parent thread at the moment of the
        fork (that thread does not exist here), so it is replaced, not taken.
        """
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._finalizer.detach()
        self._book.drop_all()
        self._book = Book()  # the child's pool starts afresh, counters too
        self._finalizer = weakref.finalize(self, Book.drop_all, self._book)
        self._pid = os.getpid()

    # --- the whole pool ------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's counters."""
        with self._lock:
            book = self._book
            return PoolStats(
                open=book.open_count,
                idle=book.idle_count,
                in_use=len(book.leased),
                opening=book.opening,
                peak=book.peak,
                opened=book.opened,
                reused=book.reused,
            )

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain the pool: refuse new checkouts, QUIT idle connections, and
        wait up to *timeout* seconds (None: without limit) for the ones in use
        to come back (they are closed as they do).  Safe to call twice."""
        self._check_process()
        with self._lock:
            self._closed = True
            retired = [e for stack in self._book.idle.values() for e in stack]
            self._book.idle.clear()
            self._book.closing += len(retired)
            self._wake()
        self._retire(retired)
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._book.leased or self._book.opening or self._book.closing:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    log.warning(
                        "session pool closed with %d connection(s) still in use",
                        len(self._book.leased) + self._book.opening,
                    )
                    break
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        book = self._book
        return (
            f"<SessionPool open={book.open_count}/{self.max_connections} "
            f"idle={book.idle_count} in_use={len(book.leased)}"
            f"{' closed' if self._closed else ''}>"
        )
