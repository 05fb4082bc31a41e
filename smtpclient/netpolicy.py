"""Which IP addresses direct delivery may connect to (the *target policy*).

``deliver()`` connects wherever a recipient's domain points: its MX hosts,
its own address (implicit MX), an address literal (``user@[10.0.0.5]``),
its MTA-STS policy host.  Whoever controls that domain would otherwise make
the sender open connections inside its own network (SSRF: 127.0.0.1, a
cloud metadata service at 169.254.169.254, an internal relay that trusts
the sender).  The target policy says which addresses are fair game:

* ``"public"`` (the default) -- globally routable unicast addresses only;
* ``"private"`` -- those plus private networks (RFC 1918, RFC 6598 shared
  address space, IPv6 unique-local and site-local, RFC 8215 local NAT64);
* ``"any"`` -- everything (tests on loopback, a lab network).

The classification is a fixed table (IANA special-purpose registries,
RFC 6890) rather than ``ipaddress.is_global``, whose answers changed
between Python patch releases.  IPv4 embedded in IPv6 -- IPv4-mapped
(``::ffff:0:0/96``), NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``) --
is judged by the IPv4 address inside.  Pure functions: no IO.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

__all__ = [
    "TARGET_POLICIES",
    "TargetPolicy",
    "address_class",
    "allowed",
    "check_target_policy",
    "refusal",
]

TargetPolicy = Literal["public", "private", "any"]
TARGET_POLICIES: tuple[TargetPolicy, ...] = ("public", "private", "any")

GLOBAL = "global"
PRIVATE = "private"
SHARED = "shared address space"

_ALLOWED: dict[str, frozenset[str]] = {
    "public": frozenset({GLOBAL}),
    "private": frozenset({GLOBAL, PRIVATE, SHARED}),
}

_V4 = [
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host
    ("10.0.0.0/8", PRIVATE),
    ("100.64.0.0/10", SHARED),  # RFC 6598, carrier-grade NAT
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata services live here
    ("172.16.0.0/12", PRIVATE),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", PRIVATE),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
]
_V6 = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),  # deprecated IPv4-compatible addresses
    ("64:ff9b:1::/48", PRIVATE),  # RFC 8215 local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, ORCHID, ...)
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),  # RFC 9637
    ("fc00::/7", PRIVATE),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", PRIVATE),  # deprecated site-local
    ("ff00::/8", "multicast"),
]
_V4_TABLE = [(ipaddress.IPv4Network(net), name) for net, name in _V4]
_V6_TABLE = [(ipaddress.IPv6Network(net), name) for net, name in _V6]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def check_target_policy(policy: object) -> TargetPolicy:
    """*policy* if it is one of ``TARGET_POLICIES``.

    Raises:
        ValueError: anything else.
    """
    for known in TARGET_POLICIES:
        if policy == known:
            return known
    raise ValueError(f"target_policy must be one of {', '.join(TARGET_POLICIES)}, not {policy!r}")


def _v4_class(address: ipaddress.IPv4Address) -> str:
    for network, name in _V4_TABLE:
        if address in network:
            return name
    return GLOBAL


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_class(address: str) -> str:
    """What kind of address *address* is: "global", "private", "shared
    address space", "loopback", "link-local", "unspecified", "multicast",
    "broadcast", "documentation", "benchmarking" or "reserved".

    Raises:
        ValueError: *address* is not an IP address.
    """
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        return _v4_class(parsed)
    inner = _embedded_v4(parsed)
    if inner is not None:
        return _v4_class(inner)
    for network, name in _V6_TABLE:
        if parsed in network:
            return name
    return GLOBAL if parsed in _GLOBAL_UNICAST else "reserved"


def allowed(address: str, policy: TargetPolicy) -> bool:
    """True when *policy* lets direct delivery connect to *address*.
    Anything that is not an IP address is not allowed (except under "any")."""
    if policy == "any":
        return True
    try:
        kind = address_class(address)
    except ValueError:
        return False
    return kind in _ALLOWED[check_target_policy(policy)]


def refusal(address: str, policy: TargetPolicy) -> str:
    """One phrase saying why *policy* refuses *address*, e.g.
    "127.0.0.1 (loopback)"; for messages that name the target policy."""
    try:
        kind = address_class(address)
    except ValueError:
        kind = "not an IP address"
    return f"{address} ({kind})"
