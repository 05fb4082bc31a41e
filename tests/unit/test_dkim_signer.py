"""``DKIMSigner``: what it accepts, what it refuses, what it publishes."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from smtpclient import DKIMSigner
from smtpclient.dkim import key_algorithm, sign_message, sign_raw, signers_from
from smtpclient.errors import DKIMError, NulOctetError

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()


def _pem(
    key: object, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())  # type: ignore[attr-defined]


RSA_PEM = _pem(_RSA)
ED_PEM = _pem(_ED)


def _spki(key: object) -> str:
    der = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def test_the_published_record_holds_the_public_key() -> None:
    signer = DKIMSigner("example.test", "s1", RSA_PEM)
    assert signer.record_name == "s1._domainkey.example.test"
    assert signer.dns_record() == f"v=DKIM1; k=rsa; p={_spki(_RSA)}"
    ed = DKIMSigner("example.test", "e1", ED_PEM, algorithm="ed25519-sha256")
    raw = _ED.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ed.dns_record() == f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def test_pkcs1_str_and_crlf_pem_are_read() -> None:
    pkcs1 = _pem(_RSA, serialization.PrivateFormat.TraditionalOpenSSL)
    assert b"BEGIN RSA PRIVATE KEY" in pkcs1
    for key in (pkcs1, pkcs1.decode(), RSA_PEM.replace(b"\n", b"\r\n")):
        assert DKIMSigner("example.test", "s1", key).dns_record().endswith(_spki(_RSA))


def test_the_algorithm_follows_the_key() -> None:
    assert key_algorithm(RSA_PEM) == "rsa-sha256"
    assert key_algorithm(ED_PEM) == "ed25519-sha256"


def test_settings_are_normalised() -> None:
    signer = DKIMSigner(
        "Bücher.Example", "s1", RSA_PEM, canonicalization="relaxed", headers=["Subject", "To"]
    )
    assert signer.domain == "xn--bcher-kva.example"
    assert signer.canonicalization == "relaxed/simple"  # RFC 6376 §3.5
    assert signer.headers == ("From", "Subject", "To")  # From is always signed
    assert "PRIVATE" not in repr(signer) and "MII" not in repr(signer)


BAD: dict[str, tuple[dict[str, object], type[Exception]]] = {
    "unknown algorithm": ({"algorithm": "rsa-sha1"}, ValueError),
    "RSA key, Ed25519 algorithm": ({"algorithm": "ed25519-sha256"}, ValueError),
    "Ed25519 key, RSA algorithm": ({"private_key": ED_PEM}, ValueError),
    "not PEM": ({"private_key": b"secret"}, ValueError),
    "bad base64": (
        {"private_key": b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----"},
        ValueError,
    ),
    "a public key": (
        {"private_key": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
        ValueError,
    ),
    "bad selector": ({"selector": "a b"}, ValueError),
    "selector with CRLF": ({"selector": "s1\r\nX: y"}, ValueError),
    "bad domain": ({"domain": "exa mple.test"}, ValueError),
    "bad canonicalization": ({"canonicalization": "loose/relaxed"}, ValueError),
    "headers as one string": ({"headers": "From"}, TypeError),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_settings_are_refused(case: str) -> None:
    changes, expected = BAD[case]
    arguments: dict[str, object] = {
        "domain": "example.test",
        "selector": "s1",
        "private_key": RSA_PEM,
    }
    arguments.update(changes)
    with pytest.raises(expected):
        DKIMSigner(**arguments)  # type: ignore[arg-type]


def test_dkim_takes_signers_only() -> None:
    signer = DKIMSigner("example.test", "s1", RSA_PEM)
    assert signers_from(None) == ()
    assert signers_from(signer) == (signer,)
    assert signers_from([signer, signer]) == (signer, signer)
    with pytest.raises(TypeError):
        signers_from(["s1"])  # type: ignore[list-item]


def test_raw_content_is_signed_as_it_goes_out() -> None:
    signer = DKIMSigner("example.test", "s1", RSA_PEM)
    signed = sign_raw("From: a@example.test\nSubject: x\n\nbody", (signer,))
    _, _, rest = signed.partition(b"\r\n\r\n")
    assert signed.startswith(b"DKIM-Signature: ") and rest == b"body\r\n"
    assert b"\n" not in signed.replace(b"\r\n", b"")  # CRLF only
    with pytest.raises(NulOctetError):
        sign_raw(b"From: a@example.test\r\n\r\n\x00", (signer,))
    with pytest.raises(TypeError):
        sign_raw(iter([b"From: a@example.test\r\n\r\n"]), (signer,))
    with pytest.raises(DKIMError):  # no From to sign
        sign_raw(b"Subject: x\r\n\r\nbody\r\n", (signer,))


def test_a_signed_message_has_its_envelope_and_no_bcc() -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Bcc"] = "a@example.test", "b@x.test", "c@y.test"
    message["Subject"] = "ü"
    message.set_content("ü\n")
    sender, recipients, data = sign_message(message, (DKIMSigner("example.test", "s1", RSA_PEM),))
    assert (sender, recipients) == ("a@example.test", ["b@x.test", "c@y.test"])
    assert b"Bcc" not in data and data.isascii()  # encoded words, quoted-printable


def test_the_signed_message_ends_as_it_goes_out() -> None:
    message = EmailMessage()
    message["From"], message["To"] = "a@example.test", "b@x.test"
    message.set_payload("no final line end")
    _, _, data = sign_message(message, (DKIMSigner("example.test", "s1", RSA_PEM),))
    assert data.endswith(b"no final line end\r\n")
