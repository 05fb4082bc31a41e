"""The target policy's address table (smtpclient.netpolicy), without sockets."""

from __future__ import annotations

import pytest

from smtpclient.netpolicy import (
    TARGET_POLICIES,
    address_class,
    allowed,
    check_target_policy,
    refusal,
)

# address, its class, allowed under "public", under "private"
TABLE = [
    ("8.8.8.8", "global", True, True),
    ("1.1.1.1", "global", True, True),
    ("2a00:1450:4001:80b::200e", "global", True, True),
    ("127.0.0.1", "loopback", False, False),
    ("127.255.255.254", "loopback", False, False),
    ("::1", "loopback", False, False),
    ("10.0.0.5", "private", False, True),
    ("172.16.0.1", "private", False, True),
    ("172.31.255.255", "private", False, True),
    ("172.32.0.1", "global", True, True),  # just outside 172.16/12
    ("192.168.1.1", "private", False, True),
    ("fd00::1", "private", False, True),  # unique local
    ("fec0::1", "private", False, True),  # site-local (deprecated)
    ("100.64.0.1", "shared address space", False, True),  # CGNAT
    ("100.127.255.255", "shared address space", False, True),
    ("100.128.0.1", "global", True, True),
    ("169.254.169.254", "link-local", False, False),  # cloud metadata
    ("fe80::1", "link-local", False, False),
    ("0.0.0.0", "unspecified", False, False),
    ("0.1.2.3", "unspecified", False, False),
    ("::", "unspecified", False, False),
    ("224.0.0.1", "multicast", False, False),
    ("239.255.255.250", "multicast", False, False),
    ("ff02::1", "multicast", False, False),
    ("255.255.255.255", "broadcast", False, False),
    ("240.0.0.1", "reserved", False, False),
    ("192.0.0.8", "reserved", False, False),
    ("192.88.99.1", "reserved", False, False),
    ("192.0.2.1", "documentation", False, False),
    ("198.51.100.7", "documentation", False, False),
    ("203.0.113.9", "documentation", False, False),
    ("2001:db8::1", "documentation", False, False),
    ("3fff::1", "documentation", False, False),
    ("198.18.0.1", "benchmarking", False, False),
    ("198.19.255.255", "benchmarking", False, False),
    ("198.20.0.1", "global", True, True),
    # IPv4 inside IPv6 is judged by the IPv4 address
    ("::ffff:127.0.0.1", "loopback", False, False),
    ("::ffff:10.1.2.3", "private", False, True),
    ("::ffff:8.8.8.8", "global", True, True),
    ("64:ff9b::7f00:1", "loopback", False, False),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local", False, False),  # NAT64 of 169.254.169.254
    ("64:ff9b::808:808", "global", True, True),  # NAT64 of 8.8.8.8
    ("64:ff9b:1::1", "private", False, True),  # RFC 8215 local-use NAT64
    ("2002:7f00:1::1", "loopback", False, False),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private", False, True),  # 6to4 of 192.168.1.1
    ("2002:808:808::1", "global", True, True),  # 6to4 of 8.8.8.8
    ("::127.0.0.1", "reserved", False, False),  # IPv4-compatible (deprecated)
    ("100::1", "reserved", False, False),  # discard-only
    ("2001::1", "reserved", False, False),  # Teredo
    ("2001:2::1", "reserved", False, False),  # benchmarking
    ("4000::1", "reserved", False, False),  # outside 2000::/3
]


@pytest.mark.parametrize(("address", "kind", "public", "private"), TABLE)
def test_address_table(address: str, kind: str, public: bool, private: bool) -> None:
    assert address_class(address) == kind
    assert allowed(address, "public") is public
    assert allowed(address, "private") is private
    assert allowed(address, "any") is True


def test_refusal_names_the_address_and_its_class() -> None:
    assert refusal("127.0.0.1", "public") == "127.0.0.1 (loopback)"
    assert refusal("mx.example", "public") == "mx.example (not an IP address)"


def test_a_name_is_never_allowed_unless_any() -> None:
    assert not allowed("localhost", "public")
    assert not allowed("localhost", "private")
    with pytest.raises(ValueError):
        address_class("localhost")


@pytest.mark.parametrize("policy", TARGET_POLICIES)
def test_known_policies_pass(policy: str) -> None:
    assert check_target_policy(policy) == policy


@pytest.mark.parametrize("policy", ["PUBLIC", "all", "", None, 1])
def test_unknown_policies_are_a_value_error(policy: object) -> None:
    with pytest.raises(ValueError, match="target_policy"):
        check_target_policy(policy)
