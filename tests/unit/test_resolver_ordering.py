"""Target selection rules, table-tested without sockets.

The pure functions of ``smtpclient.targets`` take what DNS said and decide
the order; ``Resolver`` is driven through a fake dnspython resolver that
builds real ``dns.resolver.Answer`` objects from a dictionary "zone", so
CNAME chains, NXDOMAIN, SERVFAIL and timeouts are exercised exactly as
dnspython reports them.
"""

from __future__ import annotations

import pickle
import random
import time
from types import SimpleNamespace
from typing import Any

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from smtpclient import dnslookup
from smtpclient.dnscache import DNSCache
from smtpclient.errors import InvalidAddressError, PermanentError, TransientError
from smtpclient.resolver import (
    MAX_QUERIES,
    DNSTimeoutError,
    DomainNotFound,
    HostsFilteredError,
    MailHost,
    MailLoopError,
    NoMailHostError,
    NullMXError,
    Resolver,
    TargetPolicyError,
    TransientDNSError,
)
from smtpclient.targets import (
    Target,
    drop_self,
    interleave_families,
    is_null_mx,
    order_addresses,
    order_mx,
    plan_targets,
)

# --- pure ordering rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([(20, "b"), (10, "a"), (30, "c")], [(10, "a"), (20, "b"), (30, "c")]),
        ([(10, "a"), (5, "a")], [(5, "a")]),  # a name twice keeps its best preference
        ([(10, "a"), (0, "")], [(10, "a")]),  # a null exchange among real ones is dropped
        ([(0, "")], []),
        ([], []),
    ],
)
def test_order_mx_sorts_by_preference(records: list[tuple[int, str]], expected: Any) -> None:
    assert order_mx(records, random.Random(0)) == expected


def test_equal_preferences_are_shuffled_and_seedable() -> None:
    records = [(10, "a"), (20, "b1"), (20, "b2"), (20, "b3"), (30, "c")]
    orders = {tuple(order_mx(records, random.Random(seed))) for seed in range(40)}
    assert len(orders) > 1  # RFC 5321 §5.1: equal preferences in random order
    for order in orders:
        assert order[0] == (10, "a") and order[-1] == (30, "c")
        assert sorted(order[1:4]) == [(20, "b1"), (20, "b2"), (20, "b3")]
    # The same seed gives the same order, whatever order DNS returned.
    assert order_mx(records, random.Random(7)) == order_mx(records[::-1], random.Random(7))


@pytest.mark.parametrize(
    ("records", "expected"),
    [([(0, "")], True), ([(10, "")], True), ([(0, ""), (10, "mx")], False), ([], False)],
)
def test_null_mx_detection(records: list[tuple[int, str]], expected: bool) -> None:
    assert is_null_mx(records) is expected


@pytest.mark.parametrize(
    ("local", "kept", "found"),
    [
        ((), ["a", "b1", "b2", "c"], None),
        (("c",), ["a", "b1", "b2"], 30),
        (("B2",), ["a"], 20),  # its preference and every worse one go; case-insensitive
        (("b1.",), ["a"], 20),
        (("a",), [], 10),  # nothing left: the mail would loop
    ],
)
def test_this_is_me_drops_own_preference_and_worse(
    local: tuple[str, ...], kept: list[str], found: int | None
) -> None:
    records = [(10, "a"), (20, "b1"), (20, "b2"), (30, "c")]
    remaining, preference = drop_self(records, local)
    assert [name for _, name in remaining] == kept
    assert preference == found


@pytest.mark.parametrize(
    ("addresses", "family", "prefer", "expected"),
    [
        (["192.0.2.1", "192.0.2.2", "2001:db8::1"], "any", "ipv6",
         ("2001:db8::1", "192.0.2.1", "192.0.2.2")),
        (["192.0.2.1", "2001:db8::1", "2001:db8::2"], "any", "ipv4",
         ("192.0.2.1", "2001:db8::1", "2001:db8::2")),
        (["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"], "any", "ipv6",
         ("2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2")),
        (["192.0.2.1", "2001:db8::1"], "ipv4", "ipv6", ("192.0.2.1",)),
        (["192.0.2.1", "2001:db8::1"], "ipv6", "ipv4", ("2001:db8::1",)),
        (["192.0.2.1"], "any", "ipv6", ("192.0.2.1",)),  # the preferred family is absent
        (["0.0.0.0", "::", "224.0.0.1", "ff02::1", "192.0.2.1"], "any", "ipv6", ("192.0.2.1",)),
        (["2001:DB8:0::1", "2001:db8::1", "192.0.2.1", "192.0.2.1"], "any", "ipv6",
         ("2001:db8::1", "192.0.2.1")),
        (["not-an-ip", "127.0.0.1"], "any", "ipv6", ("127.0.0.1",)),
    ],
)  # fmt: skip
def test_order_addresses(
    addresses: list[str], family: Any, prefer: Any, expected: tuple[str, ...]
) -> None:
    assert order_addresses(addresses, family=family, prefer=prefer) == expected


def test_bad_policies_are_value_errors() -> None:
    with pytest.raises(ValueError, match="family"):
        order_addresses([], family="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefer"):
        order_addresses([], prefer="any")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="family"):
        Resolver(family="v4")  # type: ignore[arg-type]


def test_interleave_keeps_order_within_a_family() -> None:
    assert interleave_families(["10.0.0.1", "10.0.0.2", "::1"]) == ["::1", "10.0.0.1", "10.0.0.2"]


def _hosts() -> list[MailHost]:
    return [
        MailHost("a", 10, ("10.0.0.1", "10.0.0.2")),
        MailHost("b", 10, ("2001:db8::b",)),
        MailHost("c", 20, ("10.0.0.3", "2001:db8::c")),
        MailHost("d", 30, ("10.0.0.4",)),
    ]


def test_plan_targets_interleaves_families_within_a_preference_level() -> None:
    targets = plan_targets(_hosts(), max_addresses=0)
    assert [(t.host, t.address) for t in targets] == [
        ("b", "2001:db8::b"),  # level 10: the IPv6 address of b first...
        ("a", "10.0.0.1"),  # ...then IPv4, alternating
        ("a", "10.0.0.2"),
        ("c", "2001:db8::c"),  # level 20 only after all of level 10
        ("c", "10.0.0.3"),
        ("d", "10.0.0.4"),
    ]
    assert [t.family for t in targets[:2]] == [6, 4]


@pytest.mark.parametrize(("cap", "count"), [(5, 5), (2, 2), (1, 1), (0, 6), (None, 6)])
def test_address_cap(cap: int | None, count: int) -> None:
    assert len(plan_targets(_hosts(), max_addresses=cap)) == count


def test_an_address_shared_by_two_hosts_is_tried_once() -> None:
    hosts = [MailHost("a", 10, ("10.0.0.1",)), MailHost("b", 20, ("10.0.0.1", "10.0.0.2"))]
    assert plan_targets(hosts) == [Target("a", 10, "10.0.0.1"), Target("b", 20, "10.0.0.2")]


# --- the resolver over a fake DNS ------------------------------------------------------

Zone = dict[tuple[str, str], Any]


class FakeDNS:
    """Answers from *zone*: (name, type) -> list of rdata texts, or one of
    "SERVFAIL" / "TIMEOUT"; *cnames* maps alias -> target.  Records every
    query as (name, type, lifetime)."""

    def __init__(self, zone: Zone, cnames: dict[str, str] | None = None, ttl: int = 300) -> None:
        self.zone = zone
        self.cnames = cnames or {}
        self.ttl = ttl
        self.queries: list[tuple[str, str, float | None]] = []
        self.delay = 0.0
        # With a clock, a query's delay moves it forward instead of sleeping:
        # budgets then run out at the same query however loaded the machine is.
        self.clock: Clock | None = None

    def _exists(self, name: str) -> bool:
        return name in self.cnames or any(key[0] == name for key in self.zone)

    def resolve(self, qname: str, rdtype: str, **options: Any) -> dns.resolver.Answer:
        name = qname.rstrip(".").lower()
        self.queries.append((name, rdtype, options.get("lifetime")))
        if self.delay and self.clock is not None:
            self.clock.now += self.delay
        elif self.delay:
            time.sleep(self.delay)
        query = dns.message.make_query(qname, rdtype)
        response = dns.message.make_response(query)

        def add(owner: str, kind: str, texts: list[str]) -> None:
            rrset = response.find_rrset(
                response.answer,
                dns.name.from_text(owner + "."),
                dns.rdataclass.IN,
                dns.rdatatype.from_text(kind),
                create=True,
            )
            for text in texts:
                rrset.add(dns.rdata.from_text("IN", kind, text), self.ttl)

        seen = 0
        while name in self.cnames and seen < 8:
            add(name, "CNAME", [self.cnames[name] + "."])
            name, seen = self.cnames[name], seen + 1
        entry = self.zone.get((name, rdtype))
        if entry == "SERVFAIL":
            raise dns.resolver.NoNameservers()
        if entry == "TIMEOUT":
            raise dns.resolver.LifetimeTimeout(timeout=1.0, errors=[])
        if not self._exists(name):
            raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(qname)], responses={})
        if entry:
            add(name, rdtype, list(entry))
        return dns.resolver.Answer(
            dns.name.from_text(qname), dns.rdatatype.from_text(rdtype), dns.rdataclass.IN, response
        )


ZONE: Zone = {
    ("example.test", "MX"): ["10 mx1.example.test.", "20 mx2.example.test."],
    ("mx1.example.test", "A"): ["192.0.2.1"],
    ("mx1.example.test", "AAAA"): ["2001:db8::1"],
    ("mx2.example.test", "A"): ["192.0.2.2"],
    ("null.test", "MX"): ["0 ."],
    ("null.test", "A"): ["192.0.2.9"],
    ("implicit.test", "A"): ["192.0.2.5"],
    ("implicit.test", "TXT"): ['"x"'],
    ("target.test", "MX"): ["10 mx1.example.test."],
    ("noaddr.test", "MX"): ["10 gone.test.", "20 txtonly.test."],
    ("noaddr.test", "A"): ["192.0.2.66"],  # must never be used: MX records exist
    ("txtonly.test", "TXT"): ['"no address"'],
    ("flaky.test", "MX"): ["10 broken.test.", "20 mx2.example.test."],
    ("broken.test", "A"): "SERVFAIL",
    ("broken.test", "AAAA"): "SERVFAIL",
    ("allbroken.test", "MX"): ["10 broken.test."],
    ("servfail.test", "MX"): "SERVFAIL",
    ("slow.test", "MX"): "TIMEOUT",
    ("xn--bcher-kva.test", "MX"): ["10 mx1.example.test."],
    ("empty.test", "TXT"): ['"nothing for mail"'],
}


def resolver_for(fake: FakeDNS, **options: Any) -> Resolver:
    # The fake zone uses documentation addresses (192.0.2.x, 2001:db8::):
    # the target policy is tested in test_netpolicy.py and test_target_policy.py.
    options.setdefault("target_policy", "any")
    return Resolver(dns_resolver=fake, rng=random.Random(1), **options)  # type: ignore[arg-type]


def test_mx_hosts_in_preference_order_with_interleaved_addresses() -> None:
    fake = FakeDNS(ZONE)
    hosts = resolver_for(fake).mail_hosts("Example.TEST.")
    assert hosts == [
        MailHost("mx1.example.test", 10, ("2001:db8::1", "192.0.2.1")),
        MailHost("mx2.example.test", 20, ("192.0.2.2",)),
    ]
    assert fake.queries[0][:2] == ("example.test", "MX")


def test_cname_is_followed_as_if_it_were_the_name() -> None:
    fake = FakeDNS(ZONE, cnames={"alias.test": "hop.test", "hop.test": "target.test"})
    assert [h.name for h in resolver_for(fake).mail_hosts("alias.test")] == ["mx1.example.test"]


def test_implicit_mx_is_the_domain_itself_at_preference_zero() -> None:
    hosts = resolver_for(FakeDNS(ZONE)).mail_hosts("implicit.test")
    assert hosts == [MailHost("implicit.test", 0, ("192.0.2.5",))]
    assert hosts[0].implicit


def test_null_mx_is_permanent_556_and_never_looks_up_addresses() -> None:
    fake = FakeDNS(ZONE)
    with pytest.raises(NullMXError) as caught:
        resolver_for(fake).mail_hosts("null.test")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.reply is not None
    assert (caught.value.reply.code, caught.value.reply.enhanced) == (556, "5.1.10")
    assert [q[1] for q in fake.queries] == ["MX"]


def test_mx_hosts_without_addresses_never_fall_back_to_the_domain_address() -> None:
    fake = FakeDNS(ZONE)
    with pytest.raises(NoMailHostError) as caught:
        resolver_for(fake).mail_hosts("noaddr.test")
    assert caught.value.reply is not None and caught.value.reply.enhanced == "5.4.4"
    assert ("noaddr.test", "A") not in [q[:2] for q in fake.queries]


@pytest.mark.parametrize(
    ("domain", "error", "transient"),
    [
        ("does-not-exist.test", DomainNotFound, False),
        ("empty.test", NoMailHostError, False),
        ("servfail.test", TransientDNSError, True),
        ("slow.test", DNSTimeoutError, True),
        ("allbroken.test", TransientDNSError, True),
    ],
)
def test_failures_are_typed_permanent_or_transient(
    domain: str, error: type[Exception], transient: bool
) -> None:
    with pytest.raises(error) as caught:
        resolver_for(FakeDNS(ZONE)).mail_hosts(domain)
    assert isinstance(caught.value, TransientError) is transient
    assert isinstance(caught.value, PermanentError) is not transient
    reply = caught.value.reply  # type: ignore[attr-defined]
    assert reply.enhanced.startswith("4." if transient else "5.")


def test_timeout_is_also_a_builtin_timeout_error_and_pickles() -> None:
    with pytest.raises(TimeoutError) as caught:
        resolver_for(FakeDNS(ZONE)).mail_hosts("slow.test")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is DNSTimeoutError and copy.reply == caught.value.reply  # type: ignore[attr-defined]


def test_a_host_that_fails_to_resolve_is_skipped_when_another_works() -> None:
    hosts = resolver_for(FakeDNS(ZONE)).mail_hosts("flaky.test")
    assert [h.name for h in hosts] == ["mx2.example.test"]


@pytest.mark.parametrize(
    ("local", "expected"),
    [(["mx2.example.test"], ["mx1.example.test"]), (["MX2.Example.Test."], ["mx1.example.test"])],
)
def test_local_names_cut_the_list(local: list[str], expected: list[str]) -> None:
    hosts = resolver_for(FakeDNS(ZONE), local_names=local).mail_hosts("example.test")
    assert [h.name for h in hosts] == expected


def test_being_the_best_mx_is_a_mail_loop() -> None:
    with pytest.raises(MailLoopError) as caught:
        resolver_for(FakeDNS(ZONE), local_names=["mx1.example.test"]).mail_hosts("example.test")
    assert caught.value.reply is not None and caught.value.reply.enhanced == "5.4.6"


def test_idn_domain_is_looked_up_as_a_label() -> None:
    fake = FakeDNS(ZONE)
    assert resolver_for(fake).mail_hosts("Bücher.test")[0].name == "mx1.example.test"
    assert fake.queries[0][:2] == ("xn--bcher-kva.test", "MX")


@pytest.mark.parametrize("bad", ["", "a..b", "bad domain.test", "x\r\n.test", "[300.1.1.1]"])
def test_malformed_domains_are_value_errors(bad: str) -> None:
    with pytest.raises(InvalidAddressError):
        resolver_for(FakeDNS(ZONE)).mail_hosts(bad)


def test_address_literal_needs_no_dns() -> None:
    fake = FakeDNS(ZONE)
    assert resolver_for(fake).mail_hosts("[IPv6:2001:db8::7]") == [
        MailHost("[IPv6:2001:db8::7]", 0, ("2001:db8::7",))
    ]
    assert fake.queries == []
    with pytest.raises(NoMailHostError):
        resolver_for(fake, family="ipv4").mail_hosts("[IPv6:2001:db8::7]")


def test_family_policy_limits_the_queries() -> None:
    fake = FakeDNS(ZONE)
    hosts = resolver_for(fake, family="ipv4").mail_hosts("example.test")
    assert hosts[0].addresses == ("192.0.2.1",)
    assert all(kind != "AAAA" for _, kind, _ in fake.queries)


def test_targets_apply_the_address_cap() -> None:
    targets = resolver_for(FakeDNS(ZONE), max_addresses=2).targets("example.test")
    assert [t.address for t in targets] == ["2001:db8::1", "192.0.2.1"]


def test_one_lifetime_bounds_every_query_of_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDNS(ZONE)
    fake.delay = 0.05
    fake.clock = Clock()
    monkeypatch.setattr(dnslookup, "time", SimpleNamespace(monotonic=fake.clock, time=time.time))
    resolver = resolver_for(fake, lifetime=2.0)
    resolver.mail_hosts("example.test")
    lifetimes = [lifetime for _, _, lifetime in fake.queries]
    assert all(lifetime is not None and lifetime <= 2.0 for lifetime in lifetimes)
    assert lifetimes == sorted(lifetimes, reverse=True)  # what is left, not a fresh budget
    # The budget runs out after the MX query: no host could be resolved.
    with pytest.raises(DNSTimeoutError):
        resolver_for(fake, lifetime=0.03).mail_hosts("example.test")
    # It runs out half-way: the hosts resolved so far are used.
    partial = resolver_for(fake, lifetime=0.08).mail_hosts("example.test")
    assert [h.name for h in partial] == ["mx1.example.test"]


# --- the cache ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_answers_repeat_lookups_until_the_ttl_runs_out() -> None:
    clock = Clock()
    fake = FakeDNS(ZONE, ttl=60)
    resolver = resolver_for(fake, cache=DNSCache(clock=clock))
    first = resolver.mail_hosts("example.test")
    asked = len(fake.queries)
    assert resolver.mail_hosts("example.test") == first
    assert len(fake.queries) == asked  # all from the cache
    clock.now += 59
    resolver.mail_hosts("example.test")
    assert len(fake.queries) == asked
    clock.now += 2  # past the 60 s TTL of the positive answers
    resolver.mail_hosts("example.test")
    assert len(fake.queries) == 2 * asked - 1  # mx2's empty AAAA answer has a longer TTL
    clock.now += 1000
    resolver.mail_hosts("example.test")
    assert len(fake.queries) == 3 * asked - 1


def test_nxdomain_is_cached_but_failures_are_not() -> None:
    fake = FakeDNS(ZONE)
    resolver = resolver_for(fake)
    for _ in range(2):
        with pytest.raises(DomainNotFound):
            resolver.mail_hosts("does-not-exist.test")
    assert len(fake.queries) == 1
    for _ in range(2):
        with pytest.raises(TransientDNSError):
            resolver.mail_hosts("servfail.test")
    assert len(fake.queries) == 3


def test_resolver_argument_checks() -> None:
    with pytest.raises(ValueError, match="not both"):
        Resolver(nameservers=["127.0.0.1"], dns_resolver=dns.resolver.Resolver(configure=False))
    with pytest.raises(TypeError):
        Resolver(nameservers="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Resolver(lifetime=0)
    with pytest.raises(ValueError):
        Resolver(max_addresses=-1)


# --- how many lookups (DNS amplification) and which hosts (MTA-STS filter) -----------------

MANY: Zone = {("many.test", "MX"): [f"{10 + n} mx{n}.many.test." for n in range(40)]}
MANY.update({(f"mx{n}.many.test", "A"): [f"192.0.2.{n + 1}"] for n in range(40)})


def address_queries(fake: FakeDNS) -> list[str]:
    return [name for name, kind, _ in fake.queries if kind in ("A", "AAAA")]


@pytest.mark.parametrize(("cap", "hosts_looked_up"), [(1, 1), (2, 2), (5, 5)])
def test_mx_hosts_are_looked_up_only_until_the_address_cap_is_full(
    cap: int, hosts_looked_up: int
) -> None:
    fake = FakeDNS(MANY)
    hosts = resolver_for(fake, max_addresses=cap).mail_hosts("many.test")
    assert [h.name for h in hosts] == [f"mx{n}.many.test" for n in range(hosts_looked_up)]
    assert len(set(address_queries(fake))) == hosts_looked_up


def test_without_an_address_cap_the_query_cap_still_holds() -> None:
    fake = FakeDNS(MANY)
    hosts = resolver_for(fake, max_addresses=0).mail_hosts("many.test")
    assert len(fake.queries) <= MAX_QUERIES
    assert len(hosts) == (MAX_QUERIES - 1) // 2  # one MX query, then AAAA + A a host


def test_refused_addresses_do_not_fill_the_address_cap() -> None:
    fake = FakeDNS(MANY)
    public = resolver_for(fake, target_policy="public")  # 192.0.2.x is documentation space
    with pytest.raises(TargetPolicyError, match="target policy 'public'"):
        public.mail_hosts("many.test")
    assert len(fake.queries) <= MAX_QUERIES


def test_hosts_the_filter_refuses_are_never_looked_up() -> None:
    fake = FakeDNS(ZONE)
    hosts = resolver_for(fake).mail_hosts(
        "example.test", accept_host=lambda name: name == "mx2.example.test"
    )
    assert [h.name for h in hosts] == ["mx2.example.test"]
    assert "mx1.example.test" not in address_queries(fake)
    with pytest.raises(HostsFilteredError) as caught:
        resolver_for(FakeDNS(ZONE)).mail_hosts("example.test", accept_host=lambda name: False)
    assert isinstance(caught.value, TransientError)
