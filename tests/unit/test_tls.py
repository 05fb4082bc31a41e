"""TLS policy without a network: context defaults, the default mode per port,
and reading a certificate's names and dates from DER (checked against
OpenSSL's own decoding)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import certifi
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from servers.tlsfaults import TestCA, self_signed

from smtpclient import Session, TLSInfo, TLSMode
from smtpclient.certinfo import summarize
from smtpclient.tls import default_mode, unverified_context, verifying_context

# --- contexts ------------------------------------------------------------------------


def _ca_subjects(context: ssl.SSLContext) -> list[object]:
    return [cert["subject"] for cert in context.get_ca_certs()]


def test_the_verifying_context_is_strict_by_default() -> None:
    context = verifying_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.protocol is ssl.PROTOCOL_TLS_CLIENT


def test_the_verifying_context_trusts_exactly_certifis_bundle() -> None:
    reference = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reference.load_verify_locations(cafile=certifi.where())
    subjects = _ca_subjects(verifying_context())
    assert len(subjects) > 50
    assert subjects == _ca_subjects(reference)


def test_a_private_ca_replaces_certifi_rather_than_adding_to_it(tmp_path: Path) -> None:
    ca = TestCA()
    ca_file = ca.write_ca_file(tmp_path)
    for context in (verifying_context(cafile=ca_file), ca.client_context()):
        (only,) = context.get_ca_certs()
        assert dict(rdn[0] for rdn in only["subject"])["organizationName"] == "smtpclient test CA"
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_client_certificate_is_loaded(tmp_path: Path) -> None:
    leaf = TestCA().leaf("client.example.test")
    (tmp_path / "c.pem").write_bytes(leaf.chain_pem)
    (tmp_path / "k.pem").write_bytes(leaf.key_pem)
    verifying_context(certfile=tmp_path / "c.pem", keyfile=tmp_path / "k.pem")
    with pytest.raises(ssl.SSLError):
        verifying_context(certfile=tmp_path / "k.pem", keyfile=tmp_path / "k.pem")


def test_the_unverified_context_encrypts_only() -> None:
    context = unverified_context()
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_the_unverified_context_never_goes_below_tls_1_2() -> None:
    base = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    base.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert unverified_context(base).minimum_version is ssl.TLSVersion.TLSv1_2
    base.minimum_version = ssl.TLSVersion.TLSv1_3
    base.maximum_version = ssl.TLSVersion.TLSv1_3
    copy = unverified_context(base)
    assert copy.minimum_version is ssl.TLSVersion.TLSv1_3
    assert copy.maximum_version is ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("port", "mode"),
    [
        (465, TLSMode.IMPLICIT),
        (587, TLSMode.OPPORTUNISTIC),
        (25, TLSMode.OPPORTUNISTIC),
        (2525, TLSMode.OPPORTUNISTIC),
        (24, TLSMode.OPPORTUNISTIC),
    ],
)
def test_the_default_mode_follows_the_port(port: int, mode: TLSMode) -> None:
    assert default_mode(port) is mode


def test_a_wrong_tls_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="TLSMode"):
        Session.connect("127.0.0.1", 1, tls="starttls")  # type: ignore[arg-type]


def test_tlsinfo_keeps_the_certificate_out_of_its_repr() -> None:
    info = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", False, peer_certificate=b"\x30" * 900)
    assert "\\x30" not in repr(info) and "0000" not in repr(info)
    assert str(info) == "TLSv1.3 TLS_AES_256_GCM_SHA384, certificate NOT verified"
    verified = TLSInfo("TLSv1.2", "ECDHE", True)
    assert str(verified).endswith("certificate verified")


# --- certificate summaries --------------------------------------------------------------


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(
        pem.decode("ascii").split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )


def _openssl_view(pem: bytes, tmp_path: Path) -> dict[str, object]:
    """OpenSSL's decoding of a certificate (the private stdlib helper is fine
    as a test oracle; the library itself does not use it)."""
    path = tmp_path / "cert.pem"
    path.write_bytes(pem)
    return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined,no-any-return]


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "countryName": "C",
    "organizationalUnitName": "OU",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _format(name: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    def escape(value: str) -> str:
        return "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)

    return ", ".join(f"{_SHORT[key]}={escape(value)}" for rdn in name for key, value in rdn)


def _build(
    subject: list[tuple[x509.ObjectIdentifier, str]],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuer, Inc.")]))
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


UTC = datetime.UTC


@pytest.mark.parametrize(
    ("subject", "not_before", "not_after"),
    [
        (
            [
                (NameOID.COUNTRY_NAME, "DE"),
                (NameOID.ORGANIZATION_NAME, "Müller & Söhne"),
                (NameOID.COMMON_NAME, "mx.müller.example"),
            ],
            datetime.datetime(2024, 1, 5, 3, 4, 5, tzinfo=UTC),
            datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),  # UTCTime
        ),
        (
            [(NameOID.COMMON_NAME, 'a, b + c; <d> "e" \\f')],
            datetime.datetime(1999, 6, 1, tzinfo=UTC),  # UTCTime, 19xx
            datetime.datetime(2051, 2, 28, 12, 0, 0, tzinfo=UTC),  # GeneralizedTime
        ),
        (
            [
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "日本語"),
                (NameOID.LOCALITY_NAME, "Zürich"),
                (NameOID.STATE_OR_PROVINCE_NAME, "ZH"),
            ],
            datetime.datetime(2020, 2, 29, tzinfo=UTC),
            datetime.datetime(3000, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_summaries_agree_with_openssl(
    tmp_path: Path,
    subject: list[tuple[x509.ObjectIdentifier, str]],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> None:
    pem = _build(subject, not_before, not_after)
    summary = summarize(_der(pem))
    reference = _openssl_view(pem, tmp_path)
    assert summary is not None
    assert summary.subject == _format(reference["subject"])  # type: ignore[arg-type]
    assert summary.issuer == "CN=Issuer\\, Inc."
    assert summary.not_before == reference["notBefore"]
    assert summary.not_after == reference["notAfter"]
    assert ssl.cert_time_to_seconds(summary.not_after) == int(not_after.timestamp())


def test_trustme_and_self_signed_certificates_are_summarised() -> None:
    leaf = TestCA().leaf("mx.example.test")
    summary = summarize(_der(leaf.chain_pem))
    assert summary is not None
    assert summary.subject == "O=Example Mail, OU=Mail, CN=mx.example.test"
    assert summary.issuer is not None and summary.issuer.startswith("O=smtpclient test CA")
    own = summarize(_der(self_signed("self.example.test").chain_pem))
    assert (
        own is not None and own.subject == own.issuer == "O=Self Signed Ltd, CN=self.example.test"
    )


def test_control_characters_in_names_are_escaped() -> None:
    pem = _build(
        [(NameOID.COMMON_NAME, "evil\r\nInjected: log line")],
        datetime.datetime(2024, 1, 1, tzinfo=UTC),
        datetime.datetime(2030, 1, 1, tzinfo=UTC),
    )
    summary = summarize(_der(pem))
    assert summary is not None and summary.subject == "CN=evil\\x0d\\x0aInjected: log line"


@pytest.mark.parametrize(
    "junk", [b"", None, b"\x30", b"\x30\x80", b"\x30\x03\x02\x01\x00", b"hello"]
)
def test_garbage_is_not_a_certificate(junk: bytes | None) -> None:
    assert summarize(junk) is None


_REAL = _der(trustme.CA().issue_cert("x.example").cert_chain_pems[0].bytes())


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    summarize(data)


@given(st.integers(0, len(_REAL) - 1), st.integers(0, 255))
def test_a_corrupted_certificate_never_raises(index: int, value: int) -> None:
    corrupted = bytearray(_REAL)
    corrupted[index] = value
    summarize(bytes(corrupted))


@given(st.integers(0, len(_REAL)))
def test_a_truncated_certificate_never_raises(length: int) -> None:
    result = summarize(_REAL[:length])
    if length < len(_REAL) - 80:  # the signature is at the end; the names are early
        assert result is None
