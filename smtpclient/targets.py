"""Target selection for direct delivery, as pure functions (no DNS, no sockets).

The resolver feeds these functions what DNS said; they decide the order in
which MX hosts and their addresses are tried:

* RFC 5321 §5.1: lower preference first; equal preferences in random order
  (the caller supplies the ``random.Random``, so tests can seed it); a host
  that finds one of its own names in the list drops that preference and
  every worse one (loop prevention).
* RFC 7505: a single MX whose exchange is the root (".") is a null MX.
* RFC 8305 §4 (Happy Eyeballs): addresses of both families interleaved,
  the preferred family first, so a broken family costs one short delay
  rather than a run of timeouts.
* Postfix's ``smtp_mx_address_limit``: at most ``max_addresses`` targets.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FAMILY_POLICIES",
    "FamilyPolicy",
    "MailHost",
    "PreferredFamily",
    "Target",
    "address_family",
    "drop_self",
    "interleave_families",
    "is_null_mx",
    "order_addresses",
    "order_mx",
    "plan_targets",
]

FamilyPolicy = Literal["any", "ipv4", "ipv6"]
PreferredFamily = Literal["ipv6", "ipv4"]
FAMILY_POLICIES: tuple[FamilyPolicy, ...] = ("any", "ipv4", "ipv6")


@dataclass(frozen=True)
class MailHost:
    """One mail exchanger of a domain, with its addresses in the order to try.

    Attributes:
        name: the host name as an ASCII (A-label) name without the final dot,
            or an address literal such as ``"[192.0.2.1]"``.
        preference: the MX preference (0 for an implicit MX).
        addresses: IP addresses as strings, families interleaved.
        implicit: True when the domain had no MX records and its own A/AAAA
            records stand in for one (RFC 5321 §5.1).
    """

    name: str
    preference: int
    addresses: tuple[str, ...] = ()
    implicit: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Target:
    """One address to connect to, with the host (and preference) it belongs to."""

    host: str
    preference: int
    address: str

    @property
    def family(self) -> int:
        """4 or 6."""
        return address_family(self.address)


def address_family(address: str) -> int:
    """4 or 6 for an IP address string.

    Raises:
        ValueError: *address* is not an IP address.
    """
    return ipaddress.ip_address(address).version


def is_null_mx(records: Sequence[tuple[int, str]]) -> bool:
    """True for RFC 7505's null MX: the only record(s) name the root ("").

    *records* are (preference, exchange) with exchanges normalised (no final
    dot, so the root is "").
    """
    return bool(records) and all(exchange == "" for _, exchange in records)


def order_mx(records: Iterable[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """Sort MX records by preference, shuffling each group of equals.

    A name listed twice keeps its best (lowest) preference; null exchanges
    ("") are dropped (a null MX mixed with real ones is a zone error, and the
    root cannot be connected to anyway).
    """
    best: dict[str, int] = {}
    for preference, exchange in records:
        if exchange == "":
            continue
        if exchange not in best or preference < best[exchange]:
            best[exchange] = preference
    levels: dict[int, list[str]] = {}
    # Start from a fixed order so that a seeded rng gives the same shuffle
    # whatever order the DNS server returned the records in.
    for exchange, preference in sorted(best.items()):
        levels.setdefault(preference, []).append(exchange)
    ordered: list[tuple[int, str]] = []
    for preference in sorted(levels):
        names = levels[preference]
        rng.shuffle(names)
        ordered.extend((preference, name) for name in names)
    return ordered


def drop_self(
    records: Sequence[tuple[int, str]], local_names: Iterable[str]
) -> tuple[list[tuple[int, str]], int | None]:
    """Apply RFC 5321 §5.1's loop rule: if one of our own names is an MX,
    drop every record with that preference or a worse one.

    Returns the remaining records and the preference at which we found
    ourselves (None if we are not in the list).  An empty remainder with a
    preference found means the mail would loop back to us.
    """
    ours = {name.lower().rstrip(".") for name in local_names}
    found = [preference for preference, exchange in records if exchange.lower() in ours]
    if not found:
        return list(records), None
    cutoff = min(found)
    return [(p, e) for p, e in records if p < cutoff], cutoff


def _usable(address: str) -> bool:
    """An address worth connecting to: not unspecified ("0.0.0.0" reaches the
    local host on Linux) and not multicast."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (parsed.is_unspecified or parsed.is_multicast)


def interleave_families(addresses: Sequence[str], prefer: PreferredFamily = "ipv6") -> list[str]:
    """Alternate the families, starting with *prefer* when it is present
    (RFC 8305 §4); order within each family is kept."""
    sixes = [a for a in addresses if address_family(a) == 6]
    fours = [a for a in addresses if address_family(a) == 4]
    first, second = (sixes, fours) if prefer == "ipv6" else (fours, sixes)
    if not first:
        first, second = second, first
    out: list[str] = []
    for index in range(max(len(first), len(second))):
        if index < len(first):
            out.append(first[index])
        if index < len(second):
            out.append(second[index])
    return out


def order_addresses(
    addresses: Iterable[str],
    *,
    family: FamilyPolicy = "any",
    prefer: PreferredFamily = "ipv6",
) -> tuple[str, ...]:
    """One host's addresses: unusable ones and duplicates removed, filtered
    by the *family* policy, families interleaved.

    Raises:
        ValueError: *family* or *prefer* is not one of the allowed values.
    """
    _check_policy(family, prefer)
    kept: list[str] = []
    for address in addresses:
        if not _usable(address):
            continue
        canonical = str(ipaddress.ip_address(address))
        version = address_family(canonical)
        if family == "ipv4" and version != 4:
            continue
        if family == "ipv6" and version != 6:
            continue
        if canonical not in kept:
            kept.append(canonical)
    return tuple(interleave_families(kept, prefer))


def plan_targets(
    hosts: Sequence[MailHost],
    *,
    prefer: PreferredFamily = "ipv6",
    max_addresses: int | None = 5,
) -> list[Target]:
    """Flatten ordered *hosts* into the addresses to try, in order.

    Within one preference level the hosts keep their (shuffled) order, and
    the level's addresses are interleaved by family across its hosts, so
    that the first attempts cover both families.  At most *max_addresses*
    targets are returned (None or 0: no limit); an address shared by two
    hosts is tried once.

    Raises:
        ValueError: *max_addresses* is negative.
    """
    if max_addresses is not None and max_addresses < 0:
        raise ValueError(f"max_addresses must be 0 (no limit) or more, not {max_addresses}")
    targets: list[Target] = []
    seen: set[str] = set()
    start = 0
    while start < len(hosts):
        preference = hosts[start].preference
        end = start
        while end < len(hosts) and hosts[end].preference == preference:
            end += 1
        pairs = [(host, address) for host in hosts[start:end] for address in host.addresses]
        sixes = [p for p in pairs if address_family(p[1]) == 6]
        fours = [p for p in pairs if address_family(p[1]) == 4]
        first, second = (sixes, fours) if prefer == "ipv6" else (fours, sixes)
        if not first:
            first, second = second, first
        for index in range(max(len(first), len(second))):
            for group in (first, second):
                if index < len(group):
                    host, address = group[index]
                    if address not in seen:
                        seen.add(address)
                        targets.append(Target(host.name, host.preference, address))
        start = end
    if max_addresses:
        del targets[max_addresses:]
    return targets


def _check_policy(family: str, prefer: str) -> None:
    if family not in FAMILY_POLICIES:
        raise ValueError(f"family must be one of {', '.join(FAMILY_POLICIES)}, not {family!r}")
    if prefer not in ("ipv6", "ipv4"):
        raise ValueError(f"prefer must be 'ipv6' or 'ipv4', not {prefer!r}")
