"""A DNSSEC-validating resolver on loopback: Knot signs, Unbound validates.

    with SignedKnotServer(zones, signed={"dane.test"}) as knot:
        with UnboundServer(knot, anchors={"dane.test": knot.ds("dane.test")},
                           insecure={"plain.test"}) as unbound:
            resolver = Resolver(nameservers=[unbound.host], port=unbound.port, dnssec=True)

Knot (``SignedKnotServer``) serves every zone and signs the ``signed`` ones
itself (ECDSA P-256, fresh keys at each start, so the trust anchor is taken
from the running server: ``ds()``).  Unbound (``UnboundServer``) asks only
that Knot (every zone and the root are stub zones pointing at it: nothing
leaves the machine), trusts the DS records it is given, and treats the
``insecure`` zones as unsigned.  A DS that matches no key makes a zone, or a
delegated child zone, bogus: Unbound answers SERVFAIL for it.  See
/work/shared/DNSSEC-RECIPE.md for the gotchas these configurations avoid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from ._proc import ChildServer, accepts, free_port, require_binary, wait_until
from .knot import KnotServer

__all__ = ["SignedKnotServer", "UnboundServer", "ask"]


def ask(
    host: str, port: int, name: str, rdtype: str, *, dnssec: bool = True
) -> dns.message.Message:
    """One query over TCP (no lost datagrams while a server starts)."""
    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
    query.flags |= dns.flags.AD | dns.flags.RD
    return dns.query.tcp(query, host, port=port, timeout=2)


class SignedKnotServer(KnotServer):
    """``KnotServer`` that signs the zones named in ``signed`` (automatic
    signing, KSK + ZSK, ECDSA P-256) and waits until they answer signed."""

    name = "knotd (signing)"

    def __init__(
        self, zones: Mapping[str, str], *, signed: Iterable[str], start_timeout: float = 20.0
    ) -> None:
        self.signed = {zone.rstrip(".").lower() for zone in signed}
        super().__init__(zones, start_timeout=start_timeout)
        unknown = self.signed - set(self.zones)
        if unknown:
            raise ValueError(f"signed zones not among the zones: {sorted(unknown)}")

    def _prepare(self) -> None:
        super()._prepare()
        (self.directory / "db").mkdir()  # Knot does not create it: signing would fail

    def _config(self) -> str:
        conf = super()._config()
        conf = conf.replace(
            "template:\n", "policy:\n  - id: local\n    algorithm: ecdsap256sha256\ntemplate:\n", 1
        )
        for zone in self.signed:
            conf = conf.replace(
                f"  - domain: {zone}\n",
                f"  - domain: {zone}\n    dnssec-signing: on\n    dnssec-policy: local\n",
                1,
            )
        return conf

    def _start_once(self) -> str | None:
        problem = super()._start_once()
        if problem is not None:
            return problem
        if wait_until(lambda: all(self._signed(zone) for zone in self.signed), 15):
            return None
        return "did not sign its zones in time"

    def _signed(self, zone: str) -> bool:
        try:
            answer = ask(self.host, self.port, zone, "DNSKEY")
        except (OSError, dns.exception.DNSException):
            return False
        types = {rrset.rdtype for rrset in answer.answer}
        return {dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG} <= types

    def ds(self, zone: str) -> str:
        """The DS record (SHA-256) of *zone*'s key-signing key, as a zone-file line."""
        answer = ask(self.host, self.port, zone, "DNSKEY")
        for rrset in answer.answer:
            if rrset.rdtype != dns.rdatatype.DNSKEY:
                continue
            for key in rrset:
                if key.flags & 0x0001:  # SEP: the key-signing key
                    ds = dns.dnssec.make_ds(rrset.name, key, "SHA256")
                    return f"{rrset.name.to_text()} DS {ds.to_text()}"
        raise RuntimeError(f"Knot serves no key-signing key for {zone}")


class UnboundServer(ChildServer):
    """``unbound -d`` on 127.0.0.1, validating with the DS lines in
    ``anchors`` ({zone: "zone. DS ..."}), every zone of *knot* a stub zone.

    Attributes: ``host``, ``port`` (UDP and TCP), ``directory``. ``log()``
    returns what Unbound printed (validation failures at val-log-level 2).
    """

    name = "unbound"

    def __init__(
        self,
        knot: KnotServer,
        *,
        anchors: Mapping[str, str],
        insecure: Iterable[str] = (),
        extra_stubs: Iterable[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        self._unbound = require_binary("unbound", "unbound")
        self.knot = knot
        self.anchors = dict(anchors)
        self.insecure = [zone.rstrip(".") for zone in insecure]
        self.stubs = [*knot.zones, *(zone.rstrip(".") for zone in extra_stubs)]
        self.host = "127.0.0.1"
        self.port = 0
        super().__init__("smtpclient-unbound-", start_timeout)

    @property
    def log_path(self) -> Path:
        return self.directory / "unbound.out"

    def _prepare(self) -> None:
        lines = [line if line.endswith("\n") else line + "\n" for line in self.anchors.values()]
        (self.directory / "anchors").write_text("".join(lines))

    def _start_once(self) -> str | None:
        self.port = free_port(self.host, udp_too=True)
        conf = self.directory / "unbound.conf"
        conf.write_text(self._config())
        self._launch([self._unbound, "-d", "-c", str(conf)], self.log_path)
        if self._wait_running(self._answers):
            return None
        return f"did not answer on {self.host}@{self.port}"

    def _answers(self) -> bool:
        if not accepts(self.host, self.port):
            return False
        try:
            ask(self.host, self.port, "example.invalid", "A")
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def _config(self) -> str:
        d = self.directory
        knot = f"{self.knot.host}@{self.knot.port}"
        insecure = "".join(f'    domain-insecure: "{zone}."\n' for zone in self.insecure)
        stubs = "".join(
            f'stub-zone:\n    name: "{zone}."\n    stub-addr: {knot}\n'
            for zone in [*self.stubs, ""]  # "": the root, so nothing leaves the machine
        )
        return f"""\
server:
    interface: {self.host}@{self.port}
    port: {self.port}
    do-ip6: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d / "unbound.pid"}"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "test." nodefault
    trust-anchor-file: "{d / "anchors"}"
{insecure}    qname-minimisation: no
    trust-anchor-signaling: no
    root-key-sentinel: no
    cache-max-ttl: 30
    cache-max-negative-ttl: 5
remote-control:
    control-enable: no
{stubs}"""
