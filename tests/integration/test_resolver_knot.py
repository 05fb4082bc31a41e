"""The resolver against a real authoritative DNS server (Knot DNS on 127.0.0.1).

Every rule of RFC 5321 §5.1 and RFC 7505 is checked with the project's
zone (tests/servers/zones/example.test.zone): MX ordering and shuffling,
CNAME chains, the implicit MX, null MX, MX hosts without addresses,
NXDOMAIN, a server that refuses, a nameserver that never answers, IDN
names, the family policies, "this is me" and the shared cache.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.resolver
import pytest
from servers.knot import KnotServer

from smtpclient.cli import main
from smtpclient.dnscache import DNSCache
from smtpclient.errors import PermanentError, TransientError
from smtpclient.resolver import (
    DNSTimeoutError,
    DomainNotFound,
    MailHost,
    MailLoopError,
    NoMailHostError,
    NullMXError,
    Resolver,
    TransientDNSError,
)

pytestmark = pytest.mark.knot

Z = "example.test"


def make(knot: KnotServer, **options: Any) -> Resolver:
    options.setdefault("rng", random.Random(0))
    options.setdefault("target_policy", "any")  # the test zone is all loopback
    return Resolver(nameservers=[knot.host], port=knot.port, lifetime=5, **options)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        (Z, [("mail", 10, ("::1", "127.0.0.1"))]),
        ("multihomed-mx", [("multihomed", 10, ("::1", "127.0.0.2", "127.0.0.3", "127.0.0.4"))]),
        ("chain1", [("mail", 10, ("::1", "127.0.0.1"))]),  # chain1 -> chain2 -> chain3
        ("mixed", [("mail", 20, ("::1", "127.0.0.1"))]),  # the address-less MX is skipped
        ("mx-is-cname", [("mailalias", 10, ("::1", "127.0.0.1"))]),
        ("implicit", [("implicit", 0, ("::1", "127.0.0.5"))]),
        ("implicit4", [("implicit4", 0, ("127.0.0.6",))]),
        ("implicit6", [("implicit6", 0, ("::1",))]),
        ("bücher", [("mail.xn--bcher-kva", 10, ("::1", "127.0.0.7"))]),  # IDN, as A-labels
        ("BÜCHER", [("mail.xn--bcher-kva", 10, ("::1", "127.0.0.7"))]),  # UTS #46 mapping
    ],
)
def test_mail_hosts(knot: KnotServer, domain: str, expected: list[tuple[str, int, Any]]) -> None:
    name = domain if domain == Z else f"{domain}.{Z}"
    hosts = make(knot).mail_hosts(name)
    assert hosts == [MailHost(f"{host}.{Z}", pref, addrs) for host, pref, addrs in expected]
    assert all(host.implicit == domain.startswith("implicit") for host in hosts)


def test_preferences_ascend_and_equal_ones_are_shuffled(knot: KnotServer) -> None:
    orders = set()
    for seed in range(12):
        hosts = make(knot, rng=random.Random(seed)).mail_hosts(f"multi.{Z}")
        assert [h.preference for h in hosts] == [10, 20, 20, 30]
        assert hosts[0].name == f"mx1.multi.{Z}" and hosts[-1].name == f"mx3.multi.{Z}"
        orders.add(tuple(h.name for h in hosts))
    assert len(orders) == 2  # both orders of the two preference-20 hosts occur
    equal = {
        tuple(h.name for h in make(knot, rng=random.Random(s)).mail_hosts(f"equal.{Z}"))
        for s in range(12)
    }
    assert len(equal) > 1 and all(len(order) == 3 for order in equal)


def test_cname_to_a_domain_with_mx(knot: KnotServer) -> None:
    hosts = make(knot).mail_hosts(f"alias.{Z}")
    assert {h.name for h in hosts} == {f"{n}.multi.{Z}" for n in ("mx1", "mx2a", "mx2b", "mx3")}


@pytest.mark.parametrize(
    ("domain", "error", "code", "enhanced"),
    [
        ("nullmx", NullMXError, 556, "5.1.10"),  # RFC 7505; never its A record
        ("noaddr", NoMailHostError, 550, "5.4.4"),  # MX target has no address
        ("nxtarget", NoMailHostError, 550, "5.4.4"),  # MX target does not exist
        ("nodata", NoMailHostError, 550, "5.4.4"),  # no MX and no address
        ("does-not-exist", DomainNotFound, 550, "5.1.2"),  # NXDOMAIN
    ],
)
def test_permanent_failures(
    knot: KnotServer, domain: str, error: type[Exception], code: int, enhanced: str
) -> None:
    with pytest.raises(error) as caught:
        make(knot).mail_hosts(f"{domain}.{Z}")
    assert isinstance(caught.value, PermanentError)
    reply = caught.value.reply  # type: ignore[attr-defined]
    assert (reply.code, reply.enhanced) == (code, enhanced)


def test_a_zone_the_server_refuses_is_transient(knot: KnotServer) -> None:
    with pytest.raises(TransientDNSError) as caught:
        make(knot).mail_hosts("example.org")  # Knot answers REFUSED: not its zone
    assert caught.value.reply is not None and caught.value.reply.enhanced == "4.4.3"


@pytest.fixture
def silent_nameserver() -> Iterator[tuple[str, int]]:
    """A UDP socket that receives queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        sock.close()


def test_an_unresponsive_nameserver_is_a_transient_timeout_within_the_budget(
    silent_nameserver: tuple[str, int],
) -> None:
    host, port = silent_nameserver
    resolver = Resolver(nameservers=[host], port=port, lifetime=1.0)
    started = time.monotonic()
    with pytest.raises(DNSTimeoutError) as caught:
        resolver.mail_hosts(f"multi.{Z}")
    assert time.monotonic() - started < 4.0  # one overall budget, not one per query
    assert isinstance(caught.value, TransientError) and isinstance(caught.value, TimeoutError)


@pytest.mark.parametrize(
    ("family", "prefer", "addresses"),
    [
        ("any", "ipv6", ("::1", "127.0.0.2", "127.0.0.3", "127.0.0.4")),
        ("any", "ipv4", ("127.0.0.2", "::1", "127.0.0.3", "127.0.0.4")),
        ("ipv4", "ipv6", ("127.0.0.2", "127.0.0.3", "127.0.0.4")),
        ("ipv6", "ipv6", ("::1",)),
    ],
)
def test_family_policy(knot: KnotServer, family: Any, prefer: Any, addresses: Any) -> None:
    resolver = make(knot, family=family, prefer=prefer)
    assert resolver.mail_hosts(f"multihomed-mx.{Z}")[0].addresses == addresses
    if family == "ipv6":
        with pytest.raises(NoMailHostError):
            resolver.mail_hosts(f"implicit4.{Z}")


def test_address_cap_applies_to_targets(knot: KnotServer) -> None:
    targets = make(knot, max_addresses=2).targets(f"multihomed-mx.{Z}")
    assert [t.address for t in targets] == ["::1", "127.0.0.2"]
    assert len(make(knot, max_addresses=0).targets(f"multihomed-mx.{Z}")) == 4


def test_this_is_me(knot: KnotServer) -> None:
    cut = make(knot, local_names=[f"mx2a.multi.{Z}"]).mail_hosts(f"multi.{Z}")
    assert [h.name for h in cut] == [f"mx1.multi.{Z}"]
    with pytest.raises(MailLoopError):
        make(knot, local_names=[f"MX1.multi.{Z}."]).mail_hosts(f"multi.{Z}")


def test_callers_own_dnspython_resolver(knot: KnotServer) -> None:
    own = dns.resolver.Resolver(configure=False)
    own.nameservers = [knot.host]
    own.port = knot.port
    hosts = Resolver(dns_resolver=own, target_policy="any").mail_hosts(Z)
    assert hosts[0].name == f"mail.{Z}"


def test_cache_is_shared_by_threads_and_honours_ttl(knot: KnotServer) -> None:
    now = [1000.0]
    cache: DNSCache[Any] = DNSCache(clock=lambda: now[0])
    resolver = make(knot, cache=cache)
    results: list[Any] = []

    def lookup() -> None:
        results.append({h.name for h in resolver.mail_hosts(f"multi.{Z}")})

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert len(cache) == 9  # MX + 4 hosts x (A, AAAA)
    misses = cache.stats.misses
    resolver.mail_hosts(f"multi.{Z}")
    assert cache.stats.misses == misses  # answered from the cache
    now[0] += 31  # the zone's TTL is 30 s
    resolver.mail_hosts(f"multi.{Z}")
    assert cache.stats.misses > misses


def test_cli_prints_targets_in_order(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    dns_args = ["--nameserver", knot.host, "--dns-port", str(knot.port), "--target-policy", "any"]
    assert main(["mx", f"multihomed-mx.{Z}", *dns_args, "--max-addresses", "3"]) == 0
    out = capsys.readouterr().out
    listed = [
        line.split()[1] for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")
    ]
    assert listed == ["::1", "127.0.0.2", "127.0.0.3"]
    assert "127.0.0.4" not in out.split("targets")[1]
    assert main(["mx", f"nullmx.{Z}", *dns_args]) == 69
    assert "5.1.10" in capsys.readouterr().err
    assert main(["mx", f"implicit.{Z}", *dns_args, "--json"]) == 0
    assert '"implicit_mx": true' in capsys.readouterr().out


def test_cli_transient_dns_failure_exits_75(
    silent_nameserver: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    host, port = silent_nameserver
    args = ["mx", Z, "--nameserver", host, "--dns-port", str(port), "--timeout", "0.5"]
    assert main(args) == 75
    assert "4.4.3" in capsys.readouterr().err
