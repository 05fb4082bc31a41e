"""A thread-safe DNS answer cache that honours TTLs.

One ``DNSCache`` is shared by every thread of a delivery (and by every
``Resolver`` given the same cache).  It keeps answers -- and answers that
say "no such name" or "no such record" (negative caching, RFC 2308) -- for
as long as their TTL allows, capped by ``max_ttl`` / ``max_negative_ttl``.
Failures (SERVFAIL, timeouts) are never cached: the next lookup asks again.
The lock guards the dictionary only; no DNS query ever runs under it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "DNSCache"]

V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made (or cleared)."""

    hits: int
    misses: int
    entries: int


class DNSCache(Generic[V]):
    """Answers keyed by (name, record type), each kept until its TTL runs out.

    ``clock`` (default ``time.monotonic``) is injectable so tests can move
    time forward instead of sleeping.  When more than ``max_entries`` are
    stored, the least recently used entry goes first.

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_ttl: float = 86400.0,
        max_negative_ttl: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_ttl <= 0 or max_negative_ttl < 0:
            raise ValueError("cache limits must be positive")
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, V]] = OrderedDict()
        self._hits = 0
        self._misses = 0

    def get(self, name: str, rdtype: str) -> V | None:
        """The cached value for (*name*, *rdtype*), or None if absent or expired."""
        key = (name.lower(), rdtype)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[1]

    def put(self, name: str, rdtype: str, value: V, ttl: float, *, negative: bool = False) -> None:
        """Keep *value* for *ttl* seconds (capped); a TTL of 0 is not cached."""
        limit = self.max_negative_ttl if negative else self.max_ttl
        ttl = min(ttl, limit)
        if ttl <= 0:
            return
        key = (name.lower(), rdtype)
        expires = self._clock() + ttl
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and the number of entries (expired ones included until met)."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
