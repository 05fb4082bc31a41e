"""Direct delivery refuses loopback/private targets by default, and never
looks up more MX hosts than it can use (Knot DNS on 127.0.0.1).

Each "victim" address has a listening socket that records connections
(nothing is ever accepted from it by a server): a refused target must
leave it untouched.  A counting DNS proxy in front of Knot shows how many
queries one delivery sends for a domain with 500 MX records.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Iterator

import pytest
from servers.dnsproxy import CountingDNSProxy
from servers.knot import KnotServer

from smtpclient import Resolver, Timeouts, deliver
from smtpclient.delivery import redeliver
from smtpclient.report import Status
from smtpclient.resolver import MAX_QUERIES, NoMailHostError, TargetPolicyError

pytestmark = pytest.mark.knot

P = "policy.test"
M = "many.test"
TIMEOUTS = Timeouts.uniform(2)

POLICY_ZONE = f"""\
$ORIGIN {P}.
$TTL 30
@            SOA  ns.{P}. hostmaster.{P}. 1 60 30 600 10
@            NS   ns
ns           A    127.0.0.1
; each MX points at a loopback address with a recording listener
loop         MX   10 mx.loop
mx.loop      A    127.0.0.61
mapped       MX   10 mx.mapped
mx.mapped    AAAA ::ffff:127.0.0.62
v6loop       MX   10 mx.v6loop
mx.v6loop    AAAA ::1
implicit     A    127.0.0.63
nat64        MX   10 mx.nat64
mx.nat64     AAAA 64:ff9b::7f00:40
metadata     MX   10 mx.metadata
mx.metadata  A    169.254.169.254
private      MX   10 mx.private
mx.private   A    10.0.0.5
; a loopback MX first, then a public one: only the public one is kept
mixed        MX   10 mx.loop
mixed        MX   20 mx.public
mx.public    A    8.8.8.8
"""


def many_zone(count: int = 500, *, with_addresses: bool = True) -> str:
    lines = [
        f"$ORIGIN {M}.",
        "$TTL 30",
        f"@ SOA ns.{M}. hostmaster.{M}. 1 60 30 600 10",
        "@ NS ns",
        "ns A 127.0.0.1",
    ]
    for n in range(count):
        lines.append(f"@ MX {10 + n} mx{n}")  # a strict preference order
        lines.append(f"none MX {10 + n} gone{n}")  # MX hosts that do not exist
        if with_addresses:
            lines.append(f"mx{n} A 127.1.{n // 250}.{n % 250 + 1}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def zones() -> Iterator[KnotServer]:
    server = KnotServer({P: POLICY_ZONE, M: many_zone()}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(zones: KnotServer) -> Iterator[CountingDNSProxy]:
    with CountingDNSProxy(zones.host, zones.port) as counting:
        yield counting


def resolver_for(zones: KnotServer, **options: object) -> Resolver:
    return Resolver(nameservers=[zones.host], port=zones.port, lifetime=5, **options)  # type: ignore[arg-type]


class Victims:
    """Listening sockets on one port at several loopback addresses; each
    records whether anyone connected (nothing accepts for real)."""

    def __init__(self, *hosts: str) -> None:
        self.socks: dict[str, socket.socket] = {}
        for _ in range(20):
            self.close()
            try:
                self._bind_all(hosts)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return
        raise RuntimeError("no common free port")

    def _bind_all(self, hosts: tuple[str, ...]) -> None:
        port = 0
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            self.socks[host] = sock
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(8)
            sock.setblocking(False)
        self.port = port

    def connected(self, host: str) -> int:
        """How many connections reached *host* (and closes them)."""
        count = 0
        while True:
            try:
                conn, _ = self.socks[host].accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks = {}

    def __enter__(self) -> Victims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


VICTIMS = ("127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.1", "::1")


# --- refused by default, before any connection -------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "victim", "shown"),
    [
        (f"a@loop.{P}", "127.0.0.61", "127.0.0.61 (loopback)"),
        (f"a@mapped.{P}", "127.0.0.62", "::ffff:7f00:3e (loopback)"),
        (f"a@v6loop.{P}", "::1", "::1 (loopback)"),
        (f"a@implicit.{P}", "127.0.0.63", "127.0.0.63 (loopback)"),
        (f"a@nat64.{P}", "127.0.0.1", "64:ff9b::7f00:40 (loopback)"),
        ("a@[127.0.0.61]", "127.0.0.61", "127.0.0.61 (loopback)"),
        ("a@[IPv6:::1]", "::1", "::1 (loopback)"),
        ("a@[169.254.169.254]", None, "169.254.169.254 (link-local)"),
        ("a@[10.0.0.5]", None, "10.0.0.5 (private)"),
        (f"a@metadata.{P}", None, "169.254.169.254 (link-local)"),
        (f"a@private.{P}", None, "10.0.0.5 (private)"),
    ],
)
def test_loopback_and_private_targets_are_refused_by_default_without_connecting(
    zones: KnotServer, recipient: str, victim: str | None, shown: str
) -> None:
    with Victims(*VICTIMS) as victims:
        report = deliver(
            b"Subject: x\r\n\r\nbody\r\n",
            sender="s@origin.test",
            recipients=[recipient],
            resolver=resolver_for(zones),
            port=victims.port,
            timeouts=TIMEOUTS,
        )
        outcome = report[recipient]
        assert outcome.status is Status.FAILED
        assert "target policy 'public'" in outcome.reason
        assert shown in outcome.reason
        assert outcome.enhanced == "5.4.4"
        assert isinstance(outcome.error, TargetPolicyError)
        assert report.domains[outcome.domain].attempts == ()
        assert {host: victims.connected(host) for host in VICTIMS} == dict.fromkeys(VICTIMS, 0)


def test_with_target_policy_any_the_same_target_is_connected_to(zones: KnotServer) -> None:
    # The control experiment: the recording listener does see a connection.
    with Victims(*VICTIMS) as victims:
        report = deliver(
            b"Subject: x\r\n\r\nbody\r\n",
            sender="s@origin.test",
            recipients=[f"a@loop.{P}", "b@[127.0.0.63]"],
            resolver=resolver_for(zones),
            port=victims.port,
            timeouts=dataclasses.replace(TIMEOUTS, greeting=0.5),
            target_policy="any",
        )
        assert [o.status for o in report] == [Status.DEFERRED, Status.DEFERRED]  # no greeting
        assert victims.connected("127.0.0.61") == 1
        assert victims.connected("127.0.0.63") == 1


def test_redeliver_applies_its_own_target_policy(zones: KnotServer) -> None:
    options = {
        "resolver": resolver_for(zones),
        "timeouts": dataclasses.replace(TIMEOUTS, greeting=0.5),
    }
    with Victims(*VICTIMS) as victims:
        content = b"Subject: x\r\n\r\nbody\r\n"
        first = deliver(
            content,
            sender="s@origin.test",
            recipients=[f"a@loop.{P}"],
            port=victims.port,
            target_policy="any",
            **options,  # type: ignore[arg-type]
        )
        assert victims.connected("127.0.0.61") == 1
        again = redeliver(first, content, port=victims.port, **options)
        assert again[f"a@loop.{P}"].status is Status.FAILED
        assert "target policy" in again[f"a@loop.{P}"].reason
        assert victims.connected("127.0.0.61") == 0


def test_private_policy_allows_private_but_not_loopback_or_link_local(zones: KnotServer) -> None:
    # Resolver level only: 10.0.0.5 is never connected to from a test.
    resolver = resolver_for(zones, target_policy="private")
    assert resolver.mail_hosts(f"private.{P}")[0].addresses == ("10.0.0.5",)
    with pytest.raises(TargetPolicyError, match="'private'"):
        resolver.mail_hosts(f"metadata.{P}")
    with pytest.raises(TargetPolicyError):
        resolver.mail_hosts(f"loop.{P}")
    with pytest.raises(TargetPolicyError, match="'public'"):
        resolver.mail_hosts(f"private.{P}", target_policy="public")


def test_a_refused_mx_is_skipped_and_the_next_allowed_one_kept(zones: KnotServer) -> None:
    hosts = resolver_for(zones).mail_hosts(f"mixed.{P}")
    assert [(h.name, h.addresses) for h in hosts] == [(f"mx.public.{P}", ("8.8.8.8",))]
    assert [h.name for h in resolver_for(zones, target_policy="any").mail_hosts(f"mixed.{P}")] == [
        f"mx.loop.{P}",
        f"mx.public.{P}",
    ]
    assert issubclass(TargetPolicyError, NoMailHostError)


# --- DNS amplification ------------------------------------------------------------------------


def test_500_mx_records_cost_only_the_lookups_the_address_cap_can_use(
    zones: KnotServer, proxy: CountingDNSProxy
) -> None:
    resolver = Resolver(nameservers=[proxy.host], port=proxy.port, lifetime=10, target_policy="any")
    targets = resolver.targets(M)
    assert [t.host for t in targets] == [f"mx{n}.{M}" for n in range(5)]
    assert proxy.distinct("MX") == [(M, "MX")]
    looked_up = {name for name, kind in proxy.distinct() if kind in ("A", "AAAA")}
    assert looked_up == {f"mx{n}.{M}" for n in range(5)}  # 10 queries, not 1,000


def test_the_hard_cap_holds_without_an_address_cap(
    zones: KnotServer, proxy: CountingDNSProxy
) -> None:
    resolver = Resolver(
        nameservers=[proxy.host],
        port=proxy.port,
        lifetime=10,
        max_addresses=0,
        target_policy="any",
    )
    hosts = resolver.mail_hosts(M)
    assert 0 < len(hosts) <= MAX_QUERIES // 2
    assert len(proxy.distinct()) <= MAX_QUERIES


def test_500_missing_mx_hosts_are_a_bounded_permanent_failure(
    zones: KnotServer, proxy: CountingDNSProxy
) -> None:
    resolver = Resolver(nameservers=[proxy.host], port=proxy.port, lifetime=10)
    report = deliver(
        b"Subject: x\r\n\r\nbody\r\n",
        sender="s@origin.test",
        recipients=[f"a@none.{M}"],
        resolver=resolver,
        timeouts=TIMEOUTS,
    )
    assert report[f"a@none.{M}"].status is Status.FAILED
    assert len(proxy.distinct()) <= MAX_QUERIES + 3


def test_500_refused_mx_hosts_are_a_bounded_target_policy_failure(
    zones: KnotServer, proxy: CountingDNSProxy
) -> None:
    # Every address is loopback: refusals do not fill the address cap, so
    # only the query cap stops the walk.
    resolver = Resolver(nameservers=[proxy.host], port=proxy.port, lifetime=10)
    report = deliver(
        b"Subject: x\r\n\r\nbody\r\n",
        sender="s@origin.test",
        recipients=[f"a@{M}"],
        resolver=resolver,
        timeouts=TIMEOUTS,
    )
    outcome = report[f"a@{M}"]
    assert outcome.status is Status.FAILED and "target policy 'public'" in outcome.reason
    assert report.domains[M].attempts == ()
    # the MX walk's cap, plus MTA-STS discovery: one TXT query (and, had it
    # found a record, A/AAAA for mta-sts.<domain>)
    assert len(proxy.distinct()) <= MAX_QUERIES + 3
    assert (f"_mta-sts.{M}", "TXT") in proxy.distinct()
