"""The DNS layer under the resolver: one cached query at a time, errors named.

``query()`` asks dnspython for one record type, follows CNAMEs (dnspython
does), and keeps the answer -- or the NXDOMAIN / no-data answer -- in the
cache for its TTL.  SERVFAIL, REFUSED and timeouts become transient errors
and are never cached.  Each error carries a locally made ``Reply`` so that a
delivery report can give every DNS failure a code and an enhanced status.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.name
import dns.resolver

from smtpclient.dnscache import DNSCache
from smtpclient.errors import (  # the DNS errors live there; re-exported here
    DNSError,
    DNSTimeoutError,
    DomainNotFound,
    HostsFilteredError,
    InvalidAddressError,
    MailLoopError,
    NoMailHostError,
    NullMXError,
    PermanentDNSError,
    TargetPolicyError,
    TransientDNSError,
)
from smtpclient.protocol.commands import normalise_domain
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.session.budget import CALL_DEADLINE

__all__ = [
    "Budget",
    "DNSError",
    "DNSTimeoutError",
    "DomainNotFound",
    "MailLoopError",
    "NoMailHostError",
    "NullMXError",
    "HostsFilteredError",
    "PermanentDNSError",
    "Records",
    "TargetPolicyError",
    "TransientDNSError",
    "address_literal",
    "ascii_name",
    "ask_for_dnssec",
    "dns_error",
    "query",
]

_NEGATIVE_TTL_UNKNOWN = 30.0


def dns_error(cls: type[DNSError], message: str, name: str, code: int, enhanced: str) -> DNSError:
    """An error of class *cls* carrying a locally made reply (*code*, *enhanced*)."""
    return cls(message, reply=Reply.build(code, message, enhanced), stage=Stage.DNS, host=name)


# --- lookups --------------------------------------------------------------------------


@dataclass(frozen=True)
class Records:
    """One DNS answer as the cache keeps it."""

    canonical: str  # the name at the end of any CNAME chain
    # MX: (preference, exchange); A/AAAA: address strings;
    # TLSA: (usage, selector, matching type, association data bytes)
    values: tuple[Any, ...]
    exists: bool = True  # False: NXDOMAIN
    # DNSSEC: the answer came with the AD bit from a resolver trusted to
    # validate (``query(..., trust_ad=True)``); always False otherwise.
    secure: bool = False


class Budget:
    """One overall time limit for all the queries of one lookup, and a cap
    on how many queries it may send (``max_queries``; cache hits are free).
    A ``deliver()`` deadline in force (``session.budget.CALL_DEADLINE``)
    shortens the time limit."""

    def __init__(self, seconds: float, name: str, max_queries: int | None = None) -> None:
        self.expires = time.monotonic() + seconds
        call = CALL_DEADLINE.get()
        if call is not None:
            self.expires = min(self.expires, call.expires)
        self.name = name
        self.max_queries = max_queries
        self.queries = 0

    def queries_left(self) -> int | None:
        """How many more queries may be sent (None: no cap)."""
        if self.max_queries is None:
            return None
        return max(0, self.max_queries - self.queries)

    def remaining(self) -> float:
        left = self.expires - time.monotonic()
        if left <= 0:
            raise dns_error(
                DNSTimeoutError,
                f"DNS lookups for {self.name} did not finish in time",
                self.name,
                451,
                "4.4.3",
            )
        return left


def name_text(name: dns.name.Name) -> str:
    if name == dns.name.root:
        return ""
    return str(name.to_text(omit_final_dot=True)).lower()


def negative_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    responses: dict[Any, Any] = exc.kwargs.get("responses") or {}
    try:
        return float(min(r.resolve_chaining().minimum_ttl for r in responses.values()))
    except Exception:  # an odd response: fall back to a short default
        return _NEGATIVE_TTL_UNKNOWN


def address_literal(domain: str) -> str | None:
    """The IP address inside an address literal ("[192.0.2.1]", "[IPv6:::1]")."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError as exc:
        raise InvalidAddressError(f"malformed address literal: {domain!r}") from exc


def ascii_name(domain: str) -> str:
    """*domain* as DNS is asked for it: IDNA A-labels (UTS #46,
    non-transitional), lower case, no final dot.

    Raises:
        InvalidAddressError: empty, malformed, or not valid IDNA.
    """
    if not isinstance(domain, str):
        raise TypeError(f"domain must be str, not {type(domain).__name__}")
    bare = domain[:-1] if domain.endswith(".") and not domain.endswith("..") else domain
    return normalise_domain(bare).lower()


def query(
    resolver: dns.resolver.Resolver,
    cache: DNSCache[Records],
    name: str,
    rdtype: str,
    budget: Budget,
    *,
    trust_ad: bool = False,
) -> Records:
    """One query for (*name*, *rdtype*), answered from *cache* when it can be.

    With *trust_ad* (the resolver is trusted to validate DNSSEC) the
    answer's AD bit becomes ``Records.secure``; otherwise it is ignored.

    Raises:
        TransientDNSError, DNSTimeoutError: no usable answer.
        InvalidAddressError: DNS cannot represent the name.
    """
    cached = cache.get(name, rdtype)
    if cached is not None:
        return cached
    left = budget.remaining()
    budget.queries += 1
    try:
        answer = resolver.resolve(
            name + ".", rdtype, lifetime=left, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN as exc:
        records = Records(name, (), exists=False)
        cache.put(name, rdtype, records, negative_ttl(exc), negative=True)
        return records
    except dns.exception.Timeout as exc:
        raise dns_error(
            DNSTimeoutError, f"DNS query {name} {rdtype} timed out", name, 451, "4.4.3"
        ) from exc
    except dns.resolver.NoNameservers as exc:
        raise dns_error(
            TransientDNSError,
            f"no nameserver answered {name} {rdtype} (SERVFAIL or REFUSED)",
            name,
            451,
            "4.4.3",
        ) from exc
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
        raise InvalidAddressError(f"{name!r} is not a valid DNS name: {exc}") from exc
    except (dns.exception.DNSException, OSError) as exc:
        raise dns_error(
            TransientDNSError,
            f"DNS query {name} {rdtype} failed: {exc}",
            name,
            451,
            "4.4.3",
        ) from exc
    records = records_from(name, rdtype, answer)
    if trust_ad and answer.response.flags & dns.flags.AD:
        records = Records(records.canonical, records.values, records.exists, secure=True)
    ttl = max(0.0, float(answer.expiration) - time.time())
    cache.put(name, rdtype, records, ttl, negative=not records.values)
    return records


def records_from(name: str, rdtype: str, answer: Any) -> Records:
    canonical = name_text(answer.canonical_name) if answer.canonical_name is not None else name
    rrset = answer.rrset
    if rrset is None:
        return Records(canonical, ())
    if rdtype == "MX":
        values: tuple[Any, ...] = tuple(
            sorted((int(rd.preference), name_text(rd.exchange)) for rd in rrset)
        )
    elif rdtype == "TXT":  # one string per record, its character-strings joined
        values = tuple(b"".join(rd.strings).decode("utf-8", "replace") for rd in rrset)
    elif rdtype == "TLSA":
        values = tuple(
            (int(rd.usage), int(rd.selector), int(rd.mtype), bytes(rd.cert)) for rd in rrset
        )
    else:
        values = tuple(str(rd.address) for rd in rrset)
    return Records(canonical, values)


def ask_for_dnssec(resolver: dns.resolver.Resolver) -> None:
    """Ask *resolver* for validated answers: a resolver sets AD only when the
    query has DO or AD (RFC 6840 §5.7); dnspython sets neither by default."""
    resolver.use_edns(0, dns.flags.DO, 1232)
    resolver.flags = dns.flags.RD | dns.flags.AD
