"""EHLO replies parsed into Extensions."""

from __future__ import annotations

from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply


def ehlo(*lines: str) -> Extensions:
    return Extensions.parse(Reply(250, lines))


def test_keywords_are_case_insensitive_with_parameters() -> None:
    ext = ehlo(
        "mx.example.com Hello", "pipelining", "Size 35882577", "8BITMIME", "auth PLAIN login"
    )
    assert ext.server_name == "mx.example.com"
    assert "PIPELINING" in ext and "pipelining" in ext
    assert ext.pipelining and ext.eightbitmime and not ext.chunking
    assert ext.max_size == 35882577
    assert ext.auth_mechanisms == {"PLAIN", "LOGIN"}
    assert ext.params("size") == ("35882577",)
    assert ext.params("DSN") == ()


def test_old_auth_equals_form_is_folded_into_auth() -> None:
    ext = ehlo("mx", "AUTH=LOGIN PLAIN", "AUTH CRAM-MD5")
    assert ext.auth_mechanisms == {"LOGIN", "PLAIN", "CRAM-MD5"}


def test_size_without_value_or_zero_means_no_limit() -> None:
    assert ehlo("mx", "SIZE").max_size is None
    assert ehlo("mx", "SIZE 0").max_size is None
    assert ehlo("mx").max_size is None
    assert "SIZE" in ehlo("mx", "SIZE")


def test_all_flags() -> None:
    ext = ehlo(
        "mx",
        "CHUNKING",
        "BINARYMIME",
        "SMTPUTF8",
        "DSN",
        "STARTTLS",
        "REQUIRETLS",
        "ENHANCEDSTATUSCODES",
    )
    assert all(
        [
            ext.chunking,
            ext.binarymime,
            ext.smtputf8,
            ext.dsn,
            ext.starttls,
            ext.requiretls,
            ext.enhanced_status_codes,
        ]
    )
    assert ext.esmtp


def test_empty_extensions_for_helo() -> None:
    ext = Extensions()
    assert not ext.pipelining and ext.max_size is None and not ext.esmtp
    assert list(ext) == []
