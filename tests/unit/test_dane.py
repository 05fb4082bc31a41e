"""DANE's pure parts: which TLSA records SMTP can use, how they match a
certificate, and the per-host decision from what DNS said (RFC 7672 §2.2,
§3.1; RFC 6698 §2.1)."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.dane import (
    DANEError,
    DANEStatus,
    HostPolicy,
    TLSARecord,
    anchor_context,
    host_policy,
    open_session,
    spki_of,
    tlsa_name,
    usable_records,
)
from smtpclient.dnslookup import Records, TransientDNSError, dns_error
from smtpclient.errors import TransientError

D32, D64 = b"\x01" * 32, b"\x02" * 64
CERT = ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode())


@pytest.mark.parametrize(
    ("usage", "selector", "mtype", "data", "usable"),
    [
        (3, 1, 1, D32, True),  # DANE-EE SPKI SHA-256: the common record
        (3, 0, 2, D64, True),
        (2, 0, 0, CERT, True),  # DANE-TA full certificate
        (2, 0, 0, b"\x30\x03\x02\x01\x01", False),  # "full certificate" that is not one
        (3, 1, 0, b"\x30\x00", True),  # a full key is not parsed: it only has to match
        (2, 1, 1, D32, True),
        (0, 1, 1, D32, False),  # PKIX-TA: unusable for SMTP (RFC 7672 §3.1.3)
        (1, 1, 1, D32, False),  # PKIX-EE: unusable too
        (4, 1, 1, D32, False),  # unknown usage
        (3, 2, 1, D32, False),  # unknown selector
        (3, 1, 3, D32, False),  # unknown matching type
        (3, 1, 1, D32[:31], False),  # a SHA-256 digest must be 32 bytes
        (3, 1, 2, D32, False),  # a SHA-512 digest must be 64 bytes
        (3, 1, 0, b"", False),  # nothing to match exactly
    ],
)
def test_usable_records(usage: int, selector: int, mtype: int, data: bytes, usable: bool) -> None:
    record = TLSARecord(usage, selector, mtype, data)
    assert record.usable is usable
    assert usable_records([(usage, selector, mtype, data)]) == ((record,) if usable else ())


@pytest.fixture(scope="module")
def certificate() -> tuple[bytes, bytes]:
    """(DER certificate, DER SubjectPublicKeyInfo) as cryptography reads them."""
    pem = trustme.CA().issue_cert("mx.example.test").cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return cert.public_bytes(Encoding.DER), spki


def test_spki_of_agrees_with_cryptography(certificate: tuple[bytes, bytes]) -> None:
    der, spki = certificate
    assert spki_of(der) == spki


def test_spki_of_an_rsa_ca_certificate() -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki_of(cert.public_bytes(Encoding.DER)) == spki


@given(st.binary(max_size=200))
def test_spki_of_never_raises(data: bytes) -> None:
    result = spki_of(data)
    assert result is None or isinstance(result, bytes)


def test_spki_of_truncated_certificate_is_none(certificate: tuple[bytes, bytes]) -> None:
    der, _ = certificate
    assert spki_of(der[:40]) is None
    assert spki_of(b"") is None


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_matching(certificate: tuple[bytes, bytes], selector: int, mtype: int) -> None:
    der, spki = certificate
    selected = spki if selector == 1 else der
    data = {0: selected, 1: hashlib.sha256(selected).digest(), 2: hashlib.sha512(selected).digest()}
    record = TLSARecord(3, selector, mtype, data[mtype])
    assert record.matches(der)
    other = trustme.CA().issue_cert("mx.example.test").cert_chain_pems[0].bytes()
    assert not record.matches(ssl.PEM_cert_to_DER_cert(other.decode()))
    flipped = bytes([data[mtype][0] ^ 1]) + data[mtype][1:]
    assert not TLSARecord(3, selector, mtype, flipped).matches(der)


def test_spki_selector_on_garbage_matches_nothing() -> None:
    assert not TLSARecord(3, 1, 1, hashlib.sha256(b"junk").digest()).matches(b"junk")


def test_tlsa_name_is_port_aware() -> None:
    assert tlsa_name("mx.example.com") == "_25._tcp.mx.example.com"
    assert tlsa_name("mx.example.com", 2525) == "_2525._tcp.mx.example.com"


# --- the per-host decision -------------------------------------------------------------


@dataclass
class FakeResolver:
    """What host_policy asks of a Resolver: answers by (name, type)."""

    answers: dict[tuple[str, str], Records | Exception]
    dnssec: bool = True
    family: str = "any"
    asked: list[tuple[str, str]] = field(default_factory=list)

    def lookup(self, name: str, rdtype: str) -> Records:
        self.asked.append((name, rdtype))
        answer = self.answers[(name, rdtype)]
        if isinstance(answer, Exception):
            raise answer
        return answer


def secure(*values: object) -> Records:
    return Records("x", tuple(values), secure=True)


def insecure(*values: object) -> Records:
    return Records("x", tuple(values))


SERVFAIL = dns_error(TransientDNSError, "SERVFAIL", "x", 451, "4.4.3")
TLSA = "_25._tcp.mx.example.com"


def answers(**changes: Records | Exception) -> dict[tuple[str, str], Records | Exception]:
    base: dict[tuple[str, str], Records | Exception] = {
        ("example.com", "MX"): secure((10, "mx.example.com")),
        ("mx.example.com", "A"): secure("192.0.2.1"),
        ("mx.example.com", "AAAA"): secure(),
        (TLSA, "TLSA"): secure((3, 1, 1, D32), (0, 0, 1, D32)),
    }
    keys = {"mx": ("example.com", "MX"), "a": ("mx.example.com", "A"), "tlsa": (TLSA, "TLSA")}
    keys["aaaa"] = ("mx.example.com", "AAAA")
    for key, value in changes.items():
        base[keys[key]] = value
    return base


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, DANEStatus.ACTIVE),
        ({"mx": insecure((10, "mx.example.com"))}, DANEStatus.INSECURE),
        ({"a": insecure("192.0.2.1")}, DANEStatus.INSECURE),
        ({"aaaa": insecure()}, DANEStatus.INSECURE),
        ({"tlsa": insecure((3, 1, 1, D32))}, DANEStatus.INSECURE),
        ({"tlsa": secure()}, DANEStatus.NO_TLSA),  # secure "no such record"
        ({"tlsa": secure((1, 1, 1, D32), (3, 1, 7, D32))}, DANEStatus.UNUSABLE),
        ({"tlsa": SERVFAIL}, DANEStatus.FAILED),  # bogus or unreachable: not this host
        ({"a": SERVFAIL}, DANEStatus.FAILED),
    ],
)
def test_host_policy(changes: dict[str, Records | Exception], status: DANEStatus) -> None:
    resolver = FakeResolver(answers(**changes))
    policy = host_policy(resolver, "example.com", "mx.example.com")  # type: ignore[arg-type]
    assert policy.status is status
    assert policy.name == TLSA
    assert policy.applies is (status in (DANEStatus.ACTIVE, DANEStatus.UNUSABLE, DANEStatus.FAILED))
    if status is DANEStatus.ACTIVE:
        assert policy.records == (TLSARecord(3, 1, 1, D32),)  # the PKIX-TA record dropped
    else:
        assert policy.records == ()
    if status is DANEStatus.FAILED:
        assert "tlsa" in policy.reason.lower()


def test_no_lookups_without_a_validating_resolver() -> None:
    resolver = FakeResolver(answers(), dnssec=False)
    policy = host_policy(resolver, "example.com", "mx.example.com")  # type: ignore[arg-type]
    assert policy.status is DANEStatus.NOT_VALIDATED and not policy.applies
    assert resolver.asked == []


def test_address_literals_have_no_tlsa() -> None:
    resolver = FakeResolver({})
    policy = host_policy(resolver, "[192.0.2.1]", "[192.0.2.1]")  # type: ignore[arg-type]
    assert policy.status is DANEStatus.NOT_VALIDATED and resolver.asked == []


def test_family_decides_which_address_records_must_be_secure() -> None:
    resolver = FakeResolver(answers(aaaa=insecure()), family="ipv4")
    policy = host_policy(resolver, "example.com", "mx.example.com", 25)  # type: ignore[arg-type]
    assert policy.status is DANEStatus.ACTIVE
    assert ("mx.example.com", "AAAA") not in resolver.asked


def test_failed_lookup_never_connects() -> None:
    policy = HostPolicy("mx.example.com", DANEStatus.FAILED, reason="DANE: TLSA lookup failed")

    def connect(context: ssl.SSLContext) -> object:
        raise AssertionError("must not connect")

    with pytest.raises(DANEError) as caught:
        open_session(policy, connect)  # type: ignore[arg-type]
    assert isinstance(caught.value, TransientError)
    assert caught.value.reply is not None and caught.value.reply.code == 451
    assert caught.value.host == "mx.example.com"


def test_anchor_context_trusts_only_the_anchor() -> None:
    context = anchor_context([CERT], "mx.example.com")
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    serial = x509.load_der_x509_certificate(CERT).serial_number
    assert [int(c["serialNumber"], 16) for c in context.get_ca_certs()] == [serial]
    with pytest.raises(DANEError, match="trust anchor"):
        anchor_context([b"\x30\x03\x02\x01\x01"], "mx.example.com")
