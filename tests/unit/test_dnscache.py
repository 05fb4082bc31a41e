"""DNSCache: TTLs, caps, least-recently-used eviction, and use from many threads."""

from __future__ import annotations

import threading

from smtpclient.dnscache import DNSCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_caps_ttls_and_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache: DNSCache[str] = DNSCache(max_entries=2, max_ttl=100, clock=clock)
    cache.put("a", "A", "1", ttl=10**6)
    cache.put("b", "A", "2", ttl=50)
    assert cache.get("A", "A") == "1"  # names are case-insensitive; "a" is now most recent
    cache.put("c", "A", "3", ttl=50)
    assert cache.get("b", "A") is None and cache.get("c", "A") == "3"
    clock.now += 101
    assert cache.get("a", "A") is None
    cache.put("zero", "A", "x", ttl=0)
    assert cache.get("zero", "A") is None
    assert cache.stats.hits == 2


def test_cache_is_consistent_under_threads() -> None:
    cache: DNSCache[int] = DNSCache(max_entries=50)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(500):
                key = f"n{(seed * 7 + i) % 80}"
                cache.put(key, "A", i, ttl=30)
                value = cache.get(key, "A")
                assert value is None or isinstance(value, int)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors and len(cache) <= 50
