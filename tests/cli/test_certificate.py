"""What probe prints about a certificate, with and without the optional cryptography."""

from __future__ import annotations

import ssl
import sys

import pytest
import trustme

from smtpclient.cli.certificate import describe_certificate
from smtpclient.tls import TLSInfo


def unverified_info() -> TLSInfo:
    leaf = trustme.CA().issue_cert("mx.example.test", "127.0.0.1")
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode("ascii"))
    return TLSInfo(
        "TLSv1.3", "TLS_AES_256_GCM_SHA384", False,
        peer_subject="O=trustme", peer_issuer="O=trustme CA",
        not_after="Jan  1 00:00:00 3000 GMT", peer_certificate=der,
    )


def test_cryptography_decodes_the_names_of_an_unverified_certificate() -> None:
    details = describe_certificate(unverified_info())
    assert details is not None
    assert details.decoded_by == "cryptography"
    assert details.names == ("mx.example.test", "127.0.0.1")
    assert details.key is not None and details.days_left is not None and details.days_left > 0


def test_without_cryptography_it_says_what_was_not_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import now fails
    details = describe_certificate(unverified_info())
    assert details is not None
    assert details.decoded_by == "smtpclient"
    assert details.subject == "O=trustme" and details.names is None
    lines = dict(details.lines())
    assert lines["subject"] == "O=trustme"
    assert "in " in lines["expires"] and "days" in lines["expires"]
    assert lines["names"].startswith("not decoded") and "smtpclient[cli]" in lines["names"]
