"""Mail exchangers of a domain, in the order to try them (RFC 5321 §5.1, RFC 7505).

``Resolver().mail_hosts("example.com")`` asks DNS (dnspython) for the MX
records, follows CNAMEs, falls back to the implicit MX (the domain's own
A/AAAA) only when there are no MX records at all, and returns ordered
``MailHost(name, preference, addresses)``.  ``targets()`` flattens that into
the addresses to connect to, families interleaved and capped.

Every failure is an error named for what the caller does next:

=============================  ==========  =====================================
DNS said                       error       reported as
=============================  ==========  =====================================
NXDOMAIN                       permanent   ``DomainNotFound``, 550 5.1.2
null MX (``MX 0 .``)           permanent   ``NullMXError``, 556 5.1.10
MX hosts without addresses     permanent   ``NoMailHostError``, 550 5.4.4
only ourselves in the list     permanent   ``MailLoopError``, 554 5.4.6
only addresses the target      permanent   ``TargetPolicyError``, 550 5.4.4
policy refuses (loopback ...)
``accept_host`` refused all    transient   ``HostsFilteredError``, 451 4.7.5
SERVFAIL, REFUSED, no servers  transient   ``TransientDNSError``, 451 4.4.3
no answer within ``lifetime``  transient   ``DNSTimeoutError``, 451 4.4.3
=============================  ==========  =====================================

Replies are made locally (``Reply.build``) so a report has codes for every
failure.  One ``lifetime`` and at most ``MAX_QUERIES`` queries bound one
``mail_hosts`` call: hosts are looked up until ``max_addresses`` are found.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from smtpclient.dnscache import DNSCache
from smtpclient.dnslookup import (
    Budget,
    DNSError,
    DNSTimeoutError,
    DomainNotFound,
    HostsFilteredError,
    MailLoopError,
    NoMailHostError,
    NullMXError,
    PermanentDNSError,
    Records,
    TargetPolicyError,
    TransientDNSError,
    address_literal,
    ascii_name,
    ask_for_dnssec,
    dns_error,
    query,
)
from smtpclient.netpolicy import TargetPolicy, allowed, check_target_policy, refusal
from smtpclient.targets import (
    FamilyPolicy,
    MailHost,
    PreferredFamily,
    Target,
    drop_self,
    is_null_mx,
    order_addresses,
    order_mx,
    plan_targets,
)

__all__ = [
    "DEFAULT_LIFETIME",
    "DNSError",
    "DNSTimeoutError",
    "DomainNotFound",
    "HostsFilteredError",
    "MAX_QUERIES",
    "MailHost",
    "MailLoopError",
    "NoMailHostError",
    "NullMXError",
    "PermanentDNSError",
    "Resolver",
    "Target",
    "TargetPolicyError",
    "TransientDNSError",
    "default_resolver",
    "mail_hosts",
]

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 30.0  # Timeouts.mta().dns


# Hard cap on the queries of one mail_hosts() call (cache hits are free): the
# MX query, then A/AAAA for at most a dozen hosts, however many MX records.
MAX_QUERIES = 25


@dataclass
class _Walk:
    """The state of one mail_hosts() call."""

    budget: Budget
    policy: TargetPolicy
    accept_host: Callable[[str], bool] | None
    wanted: int | None  # stop looking up hosts once this many addresses are found
    refused: list[str] = field(default_factory=list)  # addresses the policy refused
    filtered: list[str] = field(default_factory=list)  # hosts accept_host refused


class Resolver:
    """Finds and orders a domain's mail hosts; safe to share between threads.

    Args:
        nameservers: ask these servers (IP addresses) instead of the
            system's (/etc/resolv.conf).
        port: the nameservers' port (default 53).
        lifetime: seconds for all the queries of one lookup together
            (default 30, as ``Timeouts.mta().dns``).
        dns_resolver: a ``dns.resolver.Resolver`` of your own (not together
            with *nameservers*).
        family: "any" (both families), "ipv4" or "ipv6" (only that one).
        prefer: the family tried first when both are there: "ipv6"
            (RFC 8305's default) or "ipv4".
        max_addresses: at most this many targets from ``targets()``
            (Postfix's ``smtp_mx_address_limit``, default 5; 0: no limit);
            MX hosts are looked up only until this many are found.
        local_names: our own host names: an MX list naming one of them is
            cut at its preference (RFC 5321 §5.1 loop prevention).
        rng: the ``random.Random`` that orders equal preferences (seed it
            for repeatable tests).
        cache: a ``DNSCache`` to share with other resolvers (default: one
            of its own, shared by every thread using this resolver).
        target_policy: which addresses are returned: "public" (globally
            routable only, the default), "private" or "any"; see
            ``smtpclient.netpolicy``.  A call may override it.
        dnssec: trust the nameservers to validate DNSSEC: queries ask for
            it (EDNS DO and AD) and the AD bit of their answers marks them
            secure (``Records.secure``), which enables DANE (RFC 7672) in
            direct delivery.  Only for a validating resolver reached over a
            trusted path (e.g. Unbound on 127.0.0.1); never share its *cache*.

    Raises:
        ValueError: conflicting or out-of-range arguments.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        lifetime: float | None = None,
        dns_resolver: dns.resolver.Resolver | None = None,
        family: FamilyPolicy = "any",
        prefer: PreferredFamily = "ipv6",
        max_addresses: int | None = 5,
        local_names: Iterable[str] = (),
        rng: random.Random | None = None,
        cache: DNSCache[Records] | None = None,
        target_policy: TargetPolicy = "public",
        dnssec: bool = False,
    ) -> None:
        if dns_resolver is not None and (nameservers is not None or port != 53):
            raise ValueError("give either dns_resolver or nameservers/port, not both")
        if isinstance(nameservers, str):
            raise TypeError("nameservers must be a list of addresses, not one string")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, not {port!r}")
        if lifetime is not None and not lifetime > 0:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        order_addresses((), family=family, prefer=prefer)  # validates both
        if max_addresses is not None and max_addresses < 0:
            raise ValueError(f"max_addresses must be 0 (no limit) or more, not {max_addresses}")
        self.target_policy: TargetPolicy = check_target_policy(target_policy)
        self.lifetime = float(lifetime) if lifetime is not None else DEFAULT_LIFETIME
        self.family: FamilyPolicy = family
        self.prefer: PreferredFamily = prefer
        self.max_addresses = max_addresses
        self.local_names = frozenset(ascii_name(name) for name in local_names)
        self.cache: DNSCache[Records] = cache if cache is not None else DNSCache()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (not crypto)
        self._lock = threading.Lock()
        self._dns = dns_resolver
        if nameservers is not None:
            self._dns = dns.resolver.Resolver(configure=False)
            self._dns.nameservers = list(nameservers)
            self._dns.port = port
        self.dnssec = bool(dnssec)
        if self._dns is not None and self.dnssec:
            ask_for_dnssec(self._dns)

    # --- public ------------------------------------------------------------------------

    def mail_hosts(
        self,
        domain: str,
        *,
        target_policy: TargetPolicy | None = None,
        accept_host: Callable[[str], bool] | None = None,
    ) -> list[MailHost]:
        """The mail hosts of *domain*, in the order to try them.

        Hosts without an address (after the target policy) are left out.
        An address literal ("[192.0.2.1]") gives one host without asking
        DNS.  MX hosts are looked up in preference order only until
        ``max_addresses`` addresses are found, and never with more than
        ``MAX_QUERIES`` queries; the rest are not returned.  *accept_host*
        (a host name -> bool, e.g. an MTA-STS policy's patterns) skips the
        hosts it refuses without looking them up.

        Raises:
            InvalidAddressError: *domain* is malformed (a ``ValueError``).
            ValueError: *target_policy* is not a known policy.
            DomainNotFound, NullMXError, NoMailHostError, MailLoopError:
                permanent; ``reply`` holds the status to report.
                ``TargetPolicyError`` (a ``NoMailHostError``): every
                address was refused by the target policy.
            TransientDNSError, DNSTimeoutError: try again later.
                ``HostsFilteredError``: *accept_host* refused every host.
        """
        policy = check_target_policy(target_policy or self.target_policy)
        literal = address_literal(domain) if isinstance(domain, str) else None
        if literal is not None:
            return [self._literal(domain, literal, policy)]
        name = ascii_name(domain)
        wanted = self.max_addresses or None
        walk = _Walk(Budget(self.lifetime, name, MAX_QUERIES), policy, accept_host, wanted)
        mx = self._lookup(name, "MX", walk.budget)
        if not mx.exists:
            raise dns_error(DomainNotFound, f"domain {name} does not exist", name, 550, "5.1.2")
        records = [tuple(value) for value in mx.values]
        if is_null_mx(records):
            raise dns_error(
                NullMXError, f"{name} does not accept mail (null MX)", name, 556, "5.1.10"
            )
        if not records:
            return [self._implicit(name, mx.canonical, walk)]
        with self._lock:
            ordered = order_mx(records, self._rng)
        remaining, ours = drop_self(ordered, self.local_names)
        if ours is not None and not remaining:
            raise dns_error(
                MailLoopError,
                f"mail for {name} loops back to myself (MX preference {ours})",
                name,
                554,
                "5.4.6",
            )
        return self._hosts(name, remaining, walk)

    def targets(
        self,
        domain: str,
        *,
        target_policy: TargetPolicy | None = None,
        accept_host: Callable[[str], bool] | None = None,
    ) -> list[Target]:
        """The addresses to connect to for *domain*, in order, at most
        ``max_addresses`` of them.  Raises as ``mail_hosts``."""
        hosts = self.mail_hosts(domain, target_policy=target_policy, accept_host=accept_host)
        return plan_targets(hosts, prefer=self.prefer, max_addresses=self.max_addresses)

    def host_addresses(self, host: str, *, target_policy: TargetPolicy | None = None) -> list[str]:
        """The addresses of *host* (A/AAAA as the family policy allows, in
        the order to try) that the target policy allows.

        Raises:
            TargetPolicyError: the host has addresses, all of them refused.
            NoMailHostError: the host has no address (permanent).
            TransientDNSError, DNSTimeoutError: try again later.
            InvalidAddressError: *host* is malformed.
        """
        policy = check_target_policy(target_policy or self.target_policy)
        name = ascii_name(host)
        walk = _Walk(Budget(self.lifetime, name, MAX_QUERIES), policy, None, None)
        addresses = self._addresses(name, walk)
        if addresses:
            return list(addresses)
        if walk.refused:
            raise self._refused_error(name, f"{name} has", walk)
        raise dns_error(NoMailHostError, f"{name} has no usable address", name, 550, "5.4.4")

    def txt(self, name: str) -> tuple[str, ...]:
        """The TXT records of *name* (each record's strings joined); empty
        when the name does not exist or has none.

        Raises:
            TransientDNSError, DNSTimeoutError: try again later.
            InvalidAddressError: *name* is malformed.
        """
        ascii_ = ascii_name(name)
        records = self._lookup(ascii_, "TXT", Budget(self.lifetime, ascii_, MAX_QUERIES))
        return tuple(records.values) if records.exists else ()

    def lookup(self, name: str, rdtype: str) -> Records:
        """One (cached) query for *name* and *rdtype* ("MX", "A", "AAAA",
        "TLSA"), within this resolver's ``lifetime``.  ``Records.secure``
        says whether a ``dnssec=True`` resolver validated it.

        Raises:
            TransientDNSError, DNSTimeoutError: no usable answer (for a
                validating resolver that includes a bogus one: SERVFAIL).
            InvalidAddressError: *name* is not a valid DNS name.
        """
        name = ascii_name(name)
        return self._lookup(name, rdtype, Budget(self.lifetime, name, MAX_QUERIES))

    # --- steps -------------------------------------------------------------------------

    def _literal(self, domain: str, literal: str, policy: TargetPolicy) -> MailHost:
        """An address literal: one host, no DNS; the policies still apply."""
        addresses = order_addresses([literal], family=self.family, prefer=self.prefer)
        if not addresses:
            raise dns_error(
                NoMailHostError,
                f"{domain} is not an address of the allowed family ({self.family})",
                domain,
                550,
                "5.4.4",
            )
        if not allowed(literal, policy):
            raise dns_error(
                TargetPolicyError,
                f"{domain}: {refusal(literal, policy)} is refused by target policy {policy!r}",
                domain,
                550,
                "5.4.4",
            )
        return MailHost(domain, 0, addresses)

    def _refused_error(self, name: str, what: str, walk: _Walk) -> DNSError:
        shown = ", ".join(walk.refused[:3]) + (", ..." if len(walk.refused) > 3 else "")
        return dns_error(
            TargetPolicyError,
            f"{what} no address allowed by target policy {walk.policy!r} (refused: {shown})",
            name,
            550,
            "5.4.4",
        )

    def _implicit(self, name: str, canonical: str, walk: _Walk) -> MailHost:
        """No MX records: the domain itself is the mail host (preference 0)."""
        if canonical in self.local_names or name in self.local_names:
            raise dns_error(
                MailLoopError, f"mail for {name} loops back to myself", name, 554, "5.4.6"
            )
        if walk.accept_host is not None and not walk.accept_host(canonical):
            raise dns_error(
                HostsFilteredError,
                f"{name} (implicit MX) is not an accepted host",
                name,
                451,
                "4.7.5",
            )
        addresses = self._addresses(canonical, walk)
        if not addresses:
            if walk.refused:
                raise self._refused_error(name, f"{name} (implicit MX) has", walk)
            raise dns_error(
                NoMailHostError,
                f"{name} has no MX record and no usable address",
                name,
                550,
                "5.4.4",
            )
        return MailHost(canonical, 0, addresses, implicit=True)

    def _hosts(self, name: str, records: list[tuple[int, str]], walk: _Walk) -> list[MailHost]:
        hosts: list[MailHost] = []
        failure: TransientDNSError | None = None
        found: set[str] = set()
        per_host = 1 if self.family != "any" else 2
        capped = False
        for preference, exchange in records:
            if walk.wanted is not None and len(found) >= walk.wanted:
                break  # the address cap is full: the rest would never be tried
            if walk.accept_host is not None and not walk.accept_host(exchange):
                walk.filtered.append(exchange)
                continue
            left = walk.budget.queries_left()
            if left is not None and left < per_host and not self._cached(exchange):
                log.warning("%s: stopped looking up MX hosts after %d queries", name, MAX_QUERIES)
                capped = True
                break
            try:
                addresses = self._addresses(exchange, walk)
            except TransientDNSError as exc:
                log.info("%s: looking up MX host %s failed: %s", name, exchange, exc)
                failure = exc
                continue
            if addresses:
                hosts.append(MailHost(exchange, preference, addresses))
                found.update(addresses)
            else:
                log.info("%s: MX host %s has no usable address; skipped", name, exchange)
        if hosts:
            return hosts
        if failure is not None:
            # Never fall back to the domain's own address: try again later.
            raise dns_error(
                type(failure),
                f"no MX host of {name} could be resolved now: {failure.message}",
                name,
                451,
                "4.4.3",
            ) from failure
        if walk.refused:
            raise self._refused_error(name, f"no MX host of {name} has an address:", walk)
        if walk.filtered and not capped:
            raise dns_error(
                HostsFilteredError,
                f"none of the MX hosts of {name} is accepted ({', '.join(walk.filtered[:3])})",
                name,
                451,
                "4.7.5",
            )
        extra = f" among the first {MAX_QUERIES} DNS queries" if capped else ""
        raise dns_error(
            NoMailHostError,
            f"no MX host of {name} has a usable address{extra}",
            name,
            550,
            "5.4.4",
        )

    def _cached(self, host: str) -> bool:
        return self.cache.get(host, "A") is not None and self.cache.get(host, "AAAA") is not None

    def _addresses(self, host: str, walk: _Walk) -> tuple[str, ...]:
        """A host's addresses (A and/or AAAA as the family policy allows)
        that the target policy allows; refused ones go to ``walk.refused``."""
        rdtypes = {"any": ("AAAA", "A"), "ipv4": ("A",), "ipv6": ("AAAA",)}[self.family]
        found: list[str] = []
        failure: TransientDNSError | None = None
        for rdtype in rdtypes:
            try:
                records = self._lookup(host, rdtype, walk.budget)
            except TransientDNSError as exc:
                failure = exc
                continue
            if not records.exists:
                return ()
            found.extend(records.values)
        if failure is not None and not found:
            raise failure
        ordered = order_addresses(found, family=self.family, prefer=self.prefer)
        kept = tuple(a for a in ordered if allowed(a, walk.policy))
        walk.refused.extend(refusal(a, walk.policy) for a in ordered if a not in kept)
        return kept

    def _lookup(self, name: str, rdtype: str, budget: Budget) -> Records:
        resolver = self._dns_resolver(name)
        return query(resolver, self.cache, name, rdtype, budget, trust_ad=self.dnssec)

    def _dns_resolver(self, name: str) -> dns.resolver.Resolver:
        if self._dns is not None:
            return self._dns
        with self._lock:
            if self._dns is None:
                try:
                    self._dns = dns.resolver.Resolver()
                    if self.dnssec:
                        ask_for_dnssec(self._dns)
                except (dns.exception.DNSException, OSError) as exc:
                    raise dns_error(
                        TransientDNSError,
                        f"no nameservers are configured: {exc}",
                        name,
                        451,
                        "4.4.3",
                    ) from exc
            return self._dns

    def __repr__(self) -> str:
        servers = getattr(self._dns, "nameservers", None) or "system"
        dnssec = " dnssec" if self.dnssec else ""
        return f"<Resolver nameservers={servers} family={self.family} prefer={self.prefer}{dnssec}>"


_default: list[Resolver] = []
_default_lock = threading.Lock()


def default_resolver() -> Resolver:
    """The process-wide resolver (system nameservers), made on first use.
    Its cache is shared by every delivery that does not bring its own."""
    with _default_lock:
        if not _default:
            _default.append(Resolver())
        return _default[0]


def mail_hosts(domain: str) -> list[MailHost]:
    """``default_resolver().mail_hosts(domain)``."""
    return default_resolver().mail_hosts(domain)
