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
SERVFAIL, REFUSED, no servers  transient   ``TransientDNSError``, 451 4.4.3
no answer within ``lifetime``  transient   ``DNSTimeoutError``, 451 4.4.3
=============================  ==========  =====================================

The replies are made locally (``Reply.build``) so that a delivery report
can give every failure a code and an enhanced status code.  One ``lifetime``
bounds all the queries of one ``mail_hosts`` call together.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable, Sequence

import dns.exception
import dns.resolver

from smtpclient.dnscache import DNSCache
from smtpclient.dnslookup import (
    Budget,
    DNSError,
    DNSTimeoutError,
    DomainNotFound,
    MailLoopError,
    NoMailHostError,
    NullMXError,
    PermanentDNSError,
    Records,
    TransientDNSError,
    address_literal,
    ascii_name,
    dns_error,
    query,
)
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
    "MailHost",
    "MailLoopError",
    "NoMailHostError",
    "NullMXError",
    "PermanentDNSError",
    "Resolver",
    "Target",
    "TransientDNSError",
    "default_resolver",
    "mail_hosts",
]

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 30.0  # Timeouts.mta().dns


# --- lookups --------------------------------------------------------------------------


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
            (Postfix's ``smtp_mx_address_limit``, default 5; 0: no limit).
        local_names: our own host names: an MX list naming one of them is
            cut at its preference (RFC 5321 §5.1 loop prevention).
        rng: the ``random.Random`` that orders equal preferences (seed it
            for repeatable tests).
        cache: a ``DNSCache`` to share with other resolvers (default: one
            of its own, shared by every thread using this resolver).

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

    # --- public ------------------------------------------------------------------------

    def mail_hosts(self, domain: str) -> list[MailHost]:
        """The mail hosts of *domain*, in the order to try them.

        Hosts without an address are left out.  An address literal
        ("[192.0.2.1]") gives one host without asking DNS.

        Raises:
            InvalidAddressError: *domain* is malformed (a ``ValueError``).
            DomainNotFound, NullMXError, NoMailHostError, MailLoopError:
                permanent; ``reply`` holds the status to report.
            TransientDNSError, DNSTimeoutError: try again later.
        """
        literal = address_literal(domain) if isinstance(domain, str) else None
        if literal is not None:
            addresses = order_addresses([literal], family=self.family, prefer=self.prefer)
            if not addresses:
                raise dns_error(
                    NoMailHostError,
                    f"{domain} is not an address of the allowed family ({self.family})",
                    domain,
                    550,
                    "5.4.4",
                )
            return [MailHost(domain, 0, addresses)]
        name = ascii_name(domain)
        budget = Budget(self.lifetime, name)
        mx = self._lookup(name, "MX", budget)
        if not mx.exists:
            raise dns_error(DomainNotFound, f"domain {name} does not exist", name, 550, "5.1.2")
        records = [tuple(value) for value in mx.values]
        if is_null_mx(records):
            raise dns_error(
                NullMXError, f"{name} does not accept mail (null MX)", name, 556, "5.1.10"
            )
        if not records:
            return [self._implicit(name, mx.canonical, budget)]
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
        return self._hosts(name, remaining, budget)

    def targets(self, domain: str) -> list[Target]:
        """The addresses to connect to for *domain*, in order, at most
        ``max_addresses`` of them.  Raises as ``mail_hosts``."""
        return plan_targets(
            self.mail_hosts(domain), prefer=self.prefer, max_addresses=self.max_addresses
        )

    def txt(self, name: str) -> tuple[str, ...]:
        """The TXT records of *name* (each record's strings joined); empty
        when the name does not exist or has none.

        Raises:
            TransientDNSError, DNSTimeoutError: try again later.
            InvalidAddressError: *name* is malformed.
        """
        ascii_ = ascii_name(name)
        try:
            answer = self._dns_resolver(ascii_).resolve(
                ascii_, "TXT", lifetime=self.lifetime, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return ()
        except dns.exception.DNSException as exc:
            kind = DNSTimeoutError if isinstance(exc, dns.exception.Timeout) else TransientDNSError
            raise dns_error(kind, f"TXT {ascii_}: {exc}", ascii_, 451, "4.4.3") from exc
        if answer.rrset is None:
            return ()
        return tuple(b"".join(rd.strings).decode("utf-8", "replace") for rd in answer.rrset)

    # --- steps -------------------------------------------------------------------------

    def _implicit(self, name: str, canonical: str, budget: Budget) -> MailHost:
        """No MX records: the domain itself is the mail host (preference 0)."""
        if canonical in self.local_names or name in self.local_names:
            raise dns_error(
                MailLoopError, f"mail for {name} loops back to myself", name, 554, "5.4.6"
            )
        addresses = self._addresses(canonical, budget)
        if not addresses:
            raise dns_error(
                NoMailHostError,
                f"{name} has no MX record and no usable address",
                name,
                550,
                "5.4.4",
            )
        return MailHost(canonical, 0, addresses, implicit=True)

    def _hosts(self, name: str, records: list[tuple[int, str]], budget: Budget) -> list[MailHost]:
        hosts: list[MailHost] = []
        failure: TransientDNSError | None = None
        for preference, exchange in records:
            try:
                addresses = self._addresses(exchange, budget)
            except TransientDNSError as exc:
                log.info("%s: looking up MX host %s failed: %s", name, exchange, exc)
                failure = exc
                continue
            if addresses:
                hosts.append(MailHost(exchange, preference, addresses))
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
        raise dns_error(
            NoMailHostError, f"no MX host of {name} has a usable address", name, 550, "5.4.4"
        )

    def _addresses(self, host: str, budget: Budget) -> tuple[str, ...]:
        """A host's addresses (A and/or AAAA as the family policy allows)."""
        rdtypes = {"any": ("AAAA", "A"), "ipv4": ("A",), "ipv6": ("AAAA",)}[self.family]
        found: list[str] = []
        failure: TransientDNSError | None = None
        for rdtype in rdtypes:
            try:
                records = self._lookup(host, rdtype, budget)
            except TransientDNSError as exc:
                failure = exc
                continue
            if not records.exists:
                return ()
            found.extend(records.values)
        if failure is not None and not found:
            raise failure
        return order_addresses(found, family=self.family, prefer=self.prefer)

    def _lookup(self, name: str, rdtype: str, budget: Budget) -> Records:
        return query(self._dns_resolver(name), self.cache, name, rdtype, budget)

    def _dns_resolver(self, name: str) -> dns.resolver.Resolver:
        if self._dns is not None:
            return self._dns
        with self._lock:
            if self._dns is None:
                try:
                    self._dns = dns.resolver.Resolver()
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
        return f"<Resolver nameservers={servers} family={self.family} prefer={self.prefer}>"


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
