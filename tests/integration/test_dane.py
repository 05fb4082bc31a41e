"""DANE (RFC 7672) in direct delivery, against a real validating resolver.

Knot serves and signs ``dane.test`` (and a signed child zone whose DS in the
parent matches none of its keys: bogus), plus the unsigned ``plain.test`` and
the signed ``bogus.test`` whose trust anchor is wrong; Unbound validates with
a trust anchor taken from Knot's running keys.  Each recipient domain
``<case>.dane.test`` has one MX host ``mx-<case>.dane.test`` on its own
127.0.0.x address, an aiosmtpd server with STARTTLS and a trustme
certificate whose hashes the TLSA records publish (written into the zone
before Knot signs it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dns.flags
import dns.resolver
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from servers.multihome import on_one_port
from servers.smtpd import AiosmtpdServer
from servers.unbound import SignedKnotServer, UnboundServer

from smtpclient import Resolver, Timeouts, TLSMode, deliver
from smtpclient.cli import main
from smtpclient.report import DeliveryReport, Outcome, Status
from smtpclient.tlspolicy import TLSPolicy

pytestmark = pytest.mark.knot

TIMEOUTS = dataclasses.replace(Timeouts.uniform(10), connect=30.0, connect_total=60.0)


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def spki_sha256(pem: bytes) -> str:
    key = x509.load_pem_x509_certificate(pem).public_key()
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()


@dataclass
class Host:
    """One MX host of the test: its address, TLS setup and TLSA records."""

    case: str
    address: str
    tlsa: Callable[[Certs], list[str]]
    cert_name: str | None = None  # None: no STARTTLS offered
    send_ca: bool = True  # the CA certificate follows the leaf in the chain
    zone: str = "dane.test"

    @property
    def mx(self) -> str:
        return f"mx-{self.case}.{self.zone}" if self.zone == "dane.test" else f"mx.{self.zone}"

    @property
    def domain(self) -> str:
        return f"{self.case}.{self.zone}" if self.zone == "dane.test" else self.zone


class Certs:
    """One trustme CA (the DANE-TA anchor) and a leaf per host, plus an
    unrelated certificate for mismatches."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.stranger = trustme.CA().issue_cert("stranger.test")
        self.leaves: dict[str, trustme.LeafCert] = {}

    def leaf(self, name: str) -> trustme.LeafCert:
        if name not in self.leaves:
            self.leaves[name] = self.ca.issue_cert(name)
        return self.leaves[name]

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def server_context(self, host: Host) -> ssl.SSLContext:
        assert host.cert_name is not None
        leaf = self.leaf(host.cert_name)
        chain = self.directory / f"{host.case}-chain.pem"
        key = self.directory / f"{host.case}-key.pem"
        pems = [blob.bytes() for blob in leaf.cert_chain_pems]
        chain.write_bytes(b"".join(pems + ([self.ca_pem] if host.send_ca else [])))
        key.write_bytes(leaf.private_key_pem.bytes())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain, key)
        return context


def ee(name: str) -> Callable[[Certs], list[str]]:
    return lambda certs: [f"3 1 1 {spki_sha256(certs.leaf(name).cert_chain_pems[0].bytes())}"]


HOSTS = [
    # DANE-EE 3 1 1: the leaf's key matches; its name is someone else's (ignored).
    Host("ee", "127.0.0.41", ee("not-the-mx-name.test"), cert_name="not-the-mx-name.test"),
    # DANE-TA 2 1 1: the CA's key, presented in the chain; the leaf names the MX.
    Host("ta", "127.0.0.42", lambda c: [f"2 1 1 {spki_sha256(c.ca_pem)}"], "mx-ta.dane.test"),
    # DANE-TA 2 0 0: the whole CA certificate in DNS; the server sends only its leaf.
    Host(
        "tafull",
        "127.0.0.43",
        lambda c: [f"2 0 0 {der(c.ca_pem).hex()}"],
        "mx-tafull.dane.test",
        send_ca=False,
    ),
    # Records that match nothing the server has.
    Host(
        "mismatch",
        "127.0.0.44",
        lambda c: [
            f"3 1 1 {spki_sha256(c.stranger.cert_chain_pems[0].bytes())}",
            f"2 0 1 {hashlib.sha256(der(c.stranger.cert_chain_pems[0].bytes())).hexdigest()}",
        ],
        "mx-mismatch.dane.test",
    ),
    # DANE-TA matches, but the certificate names another host.
    Host("wrongname", "127.0.0.45", lambda c: [f"2 1 1 {spki_sha256(c.ca_pem)}"], "other.test"),
    # TLSA published, STARTTLS not offered.
    Host("notls", "127.0.0.46", lambda c: [f"3 1 1 {'ab' * 32}"]),
    # Only records SMTP cannot use (PKIX-EE, an unknown matching type): TLS
    # is still mandatory, authentication is not possible.
    Host(
        "unusable",
        "127.0.0.47",
        lambda c: [f"1 1 1 {'cd' * 32}", f"3 1 9 {'ef' * 32}"],
        "mx-unusable.dane.test",
    ),
    # TLSA records in a child zone that is bogus (the DS matches none of its keys).
    Host("bogus", "127.0.0.48", lambda c: [f"3 1 1 {'ab' * 32}"], "mx-bogus.dane.test"),
    # An unsigned zone: its (mismatching) TLSA records mean nothing.
    Host(
        "plain", "127.0.0.49", lambda c: [f"3 1 1 {'ab' * 32}"], "mx.plain.test", zone="plain.test"
    ),
    # A signed zone whose trust anchor is wrong: every answer is bogus.
    Host("badzone", "127.0.0.50", ee("mx.bogus.test"), "mx.bogus.test", zone="bogus.test"),
]
BY_CASE = {host.case: host for host in HOSTS}
BAD_DS = "12345 13 2 " + "00" * 32


def zone_text(origin: str, port: int, certs: Certs) -> str:
    lines = [
        "$TTL 60",
        f"@ SOA ns.{origin}. hostmaster.{origin}. 1 60 60 600 60",
        "@ NS ns",
        "ns A 127.0.0.1",
    ]
    for host in HOSTS:
        if host.zone != origin:
            continue
        mx = host.mx.removesuffix(f".{origin}")
        owner = host.domain.removesuffix(origin).rstrip(".") or "@"
        lines += [f"{owner} MX 10 {mx}", f"{mx} A {host.address}"]
        tlsa_owner = f"_{port}._tcp.{mx}"
        if host.case == "bogus":  # delegated to a child zone, with a DS that matches nothing
            lines += [f"{tlsa_owner} NS ns.{origin}.", f"{tlsa_owner} DS {BAD_DS}"]
        else:
            lines += [f"{tlsa_owner} TLSA {record}" for record in host.tlsa(certs)]
    if origin == "dane.test":  # a host that fails DANE first, then one that passes
        lines += ["fallback MX 10 mx-mismatch", "fallback MX 20 mx-ee"]
    return "\n".join(lines) + "\n"


def child_zone_text(certs: Certs) -> str:
    """The bogus child zone holding mx-bogus's TLSA records."""
    head = "$TTL 60\n@ SOA ns.dane.test. hostmaster.dane.test. 1 60 60 600 60\n@ NS ns.dane.test.\n"
    return head + "".join(f"@ TLSA {r}\n" for r in BY_CASE["bogus"].tlsa(certs))


@dataclass
class World:
    port: int
    resolver: Resolver
    servers: dict[str, AiosmtpdServer]
    unbound: UnboundServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    certs = Certs(tmp_path_factory.mktemp("dane-certs"))

    def starter(host: Host) -> Callable[[int], AiosmtpdServer]:
        context = certs.server_context(host) if host.cert_name else None
        return lambda port: AiosmtpdServer(host=host.address, port=port, tls_context=context)

    with on_one_port(*(starter(host) for host in HOSTS)) as (port, started):
        child = f"_{port}._tcp.mx-bogus.dane.test"
        zones = {
            "dane.test": zone_text("dane.test", port, certs),
            child: child_zone_text(certs),
            "plain.test": zone_text("plain.test", port, certs),
            "bogus.test": zone_text("bogus.test", port, certs),
        }
        signed = {"dane.test", child, "bogus.test"}
        try:
            knot = SignedKnotServer(zones, signed=signed).start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            anchors = {"dane.test": knot.ds("dane.test"), "bogus.test": f"bogus.test. DS {BAD_DS}"}
            with UnboundServer(knot, anchors=anchors, insecure=["plain.test"]) as unbound:
                resolver = Resolver(
                    nameservers=[unbound.host], port=unbound.port, lifetime=10, dnssec=True
                )
                servers = {host.case: server for host, server in zip(HOSTS, started, strict=True)}
                yield World(port, resolver, servers, unbound)
        finally:
            knot.stop()


def send(world: World, case: str, **options: Any) -> tuple[Outcome, DeliveryReport]:
    domain = BY_CASE[case].domain if case in BY_CASE else f"{case}.dane.test"
    msg = EmailMessage()
    msg["From"] = "sender@origin.test"
    msg["To"] = f"user@{domain}"
    msg["Subject"] = f"dane {case}"
    msg.set_content("hello\n")
    options.setdefault("resolver", world.resolver)
    options.setdefault("target_policy", "any")  # the test hosts are on loopback
    report = deliver(msg, port=world.port, timeouts=TIMEOUTS, **options)
    (outcome,) = report.outcomes
    return outcome, report


def received(world: World, case: str) -> int:
    return len(world.servers[case].messages)


def test_dane_ee_match_is_delivered_and_verified(world: World) -> None:
    before = received(world, "ee")
    outcome, _ = send(world, "ee")
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.DANE
    assert outcome.tls is not None and outcome.tls.verified
    assert outcome.tls.server_hostname == "mx-ee.dane.test"  # SNI: the MX name
    assert received(world, "ee") == before + 1


@pytest.mark.parametrize("case", ["ta", "tafull"])
def test_dane_ta_match_is_delivered_and_verified(world: World, case: str) -> None:
    before = received(world, case)
    outcome, _ = send(world, case)
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.DANE
    assert outcome.tls is not None and outcome.tls.verified
    assert received(world, case) == before + 1


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("mismatch", ("dane", "tlsa", "matches none")),
        ("wrongname", ("dane", "tlsa", "mx-wrongname.dane.test")),
        ("notls", ("dane", "tlsa", "starttls")),
        ("bogus", ("dane", "tlsa", "servfail")),
    ],
)
def test_dane_failures_defer_without_sending(
    world: World, case: str, words: tuple[str, ...]
) -> None:
    before = received(world, case)
    outcome, _ = send(world, case)
    assert outcome.status is Status.DEFERRED
    assert outcome.tls_policy is TLSPolicy.DANE
    assert outcome.retry_after is not None
    for word in words:
        assert word in outcome.reason.lower(), outcome.reason
    assert received(world, case) == before  # no message data reached the host


def test_unusable_records_still_require_tls(world: World) -> None:
    outcome, _ = send(world, "unusable")
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.DANE
    assert outcome.tls is not None and not outcome.tls.verified  # encrypted, not authenticated


def test_unsigned_zone_is_opportunistic(world: World) -> None:
    before = received(world, "plain")
    outcome, _ = send(world, "plain")
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.OPPORTUNISTIC
    assert outcome.tls is not None and not outcome.tls.verified  # the trustme CA is not trusted
    assert received(world, "plain") == before + 1


def test_bogus_zone_is_deferred(world: World) -> None:
    before = received(world, "badzone")
    outcome, _ = send(world, "badzone")
    assert outcome.status is Status.DEFERRED
    assert "servfail" in outcome.reason.lower(), outcome.reason
    assert received(world, "badzone") == before
    assert "validation failure" in world.unbound.log()


def test_without_a_validating_resolver_dane_is_off(world: World) -> None:
    """The same resolver without dnssec=True: the AD bit is not trusted, the
    mismatching TLSA records are not used, delivery is opportunistic."""
    plain = Resolver(
        nameservers=[world.unbound.host], port=world.unbound.port, lifetime=10, dnssec=False
    )
    before = received(world, "mismatch")
    outcome, _ = send(world, "mismatch", resolver=plain)
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.OPPORTUNISTIC
    assert received(world, "mismatch") == before + 1


def test_resolver_reports_secure_answers(world: World) -> None:
    resolver = world.resolver
    assert resolver.lookup("ee.dane.test", "MX").secure
    assert resolver.lookup("mx-ee.dane.test", "A").secure
    assert not resolver.lookup("plain.test", "MX").secure
    tlsa = resolver.lookup(f"_{world.port}._tcp.mx-ee.dane.test", "TLSA")
    assert tlsa.secure and tlsa.values[0][:3] == (3, 1, 1)


def test_cli_mx_shows_dane_status(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    dns_args = ["--nameserver", world.unbound.host, "--dns-port", str(world.unbound.port)]
    port_args = ["--port", str(world.port)]
    assert main(["mx", "ee.dane.test", *dns_args, "--target-policy", "any", *port_args, "--dnssec", "--json"]) == 0
    (host,) = json.loads(capsys.readouterr().out)["hosts"]
    assert host["dane"]["status"] == "active"
    assert host["dane"]["tlsa_name"] == f"_{world.port}._tcp.mx-ee.dane.test"
    assert [r.split()[:3] for r in host["dane"]["records"]] == [["3", "1", "1"]]
    assert main(["mx", "unusable.dane.test", *dns_args, "--target-policy", "any", *port_args, "--dnssec"]) == 0
    assert "STARTTLS required, not authenticated" in capsys.readouterr().out
    assert main(["mx", "bogus.dane.test", *dns_args, "--target-policy", "any", *port_args, "--dnssec"]) == 0
    assert "TLSA lookup failed" in capsys.readouterr().out
    assert main(["mx", "plain.test", *dns_args, "--target-policy", "any", *port_args, "--dnssec"]) == 0
    assert "DANE: insecure" in capsys.readouterr().out
    assert main(["mx", "ee.dane.test", *dns_args, "--target-policy", "any", *port_args]) == 0  # no --dnssec
    assert "DANE: not checked" in capsys.readouterr().out


def test_ad_bit_is_ignored_unless_the_resolver_is_trusted(world: World) -> None:
    """A dnspython resolver that asks for AD gets it back from Unbound, yet a
    Resolver not told dnssec=True never calls the answer secure."""
    asking = dns.resolver.Resolver(configure=False)
    asking.nameservers = [world.unbound.host]
    asking.port = world.unbound.port
    asking.use_edns(0, dns.flags.DO, 1232)
    asking.flags = dns.flags.RD | dns.flags.AD
    raw = asking.resolve("ee.dane.test.", "MX")
    assert raw.response.flags & dns.flags.AD  # the resolver did validate
    untrusted = Resolver(dns_resolver=asking)
    assert not untrusted.lookup("ee.dane.test", "MX").secure
    trusted = Resolver(nameservers=[world.unbound.host], port=world.unbound.port, dnssec=True)
    assert trusted.lookup("ee.dane.test", "MX").secure


def test_a_host_failing_dane_gives_way_to_the_next_mx(world: World) -> None:
    before = received(world, "mismatch"), received(world, "ee")
    outcome, report = send(world, "fallback")
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.host == "mx-ee.dane.test" and outcome.tls_policy is TLSPolicy.DANE
    assert outcome.tls is not None and outcome.tls.verified
    first, *_ = report.domains["fallback.dane.test"].visits
    assert first.host == "mx-mismatch.dane.test" and "DANE" in first.result
    assert (received(world, "mismatch"), received(world, "ee")) == (before[0], before[1] + 1)


def test_tls_none_switches_dane_off(world: World) -> None:
    """The caller's explicit "no TLS" is the one setting DANE does not override."""
    outcome, _ = send(world, "mismatch", tls=TLSMode.NONE)
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.NONE and outcome.tls is None
