"""MTA-STS without IO (smtpclient.mtasts, smtpclient.hostpolicy): tables."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from smtpclient.hostpolicy import DomainTLS, host_tls
from smtpclient.mtasts import (
    MAX_MAX_AGE,
    PolicyCache,
    PolicyError,
    STSMode,
    STSPolicy,
    mx_matches,
    parse_policy,
    parse_txt,
)
from smtpclient.mtasts_fetch import PolicyLookup
from smtpclient.tls import TLSInfo, TLSMode
from smtpclient.tlspolicy import TLSPolicy


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20240101T000000;"], "20240101T000000"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=STSv1; id=abc; ext=value;"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=abc;"], "abc"),  # other records are discarded
        (["v=STSv1; id=abc;", "v=STSv1; id=def;"], None),  # two records: none
        ([], None),
        (["v=STSv2; id=abc;"], None),
        (["v=STSv1; id=;"], None),
        (["v=STSv1; id=a-b;"], None),  # alphanumerics only
        (["v=STSv1; id=" + "a" * 33 + ";"], None),  # at most 32
        (["v=STSv1;"], None),  # no id
        (["v=STSv1; junk;"], None),
        ([" v=STSv1; id=abc;"], None),  # must begin with v=STSv1;
    ],
)
def test_parse_txt(records: list[str], expected: str | None) -> None:
    assert parse_txt(records) == expected


GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"


@pytest.mark.parametrize(
    ("text", "mode", "mx", "max_age"),
    [
        (GOOD, STSMode.ENFORCE, ("mail.example.com", "*.example.net"), 86400),
        (GOOD.replace("\r\n", "\n"), STSMode.ENFORCE, ("mail.example.com", "*.example.net"), 86400),
        (
            "version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 5\n",
            STSMode.TESTING,
            ("mx.example.com",),
            5,
        ),
        ("version: STSv1\nmode: none\nmax_age: 0\n", STSMode.NONE, (), 0),
        (
            "version:STSv1\nmode:   enforce  \nmx:a.b\nmax_age:1\nfuture_field: x\n",
            STSMode.ENFORCE,
            ("a.b",),
            1,
        ),
        (
            "version: STSv1\nmode: enforce\nmode: none\nmx: a.b\nmax_age: 9999999999\n",
            STSMode.ENFORCE,
            ("a.b",),
            MAX_MAX_AGE,
        ),
    ],
)
def test_parse_policy(text: str, mode: STSMode, mx: tuple[str, ...], max_age: int) -> None:
    policy = parse_policy(text, "id1")
    assert (policy.mode, policy.mx, policy.max_age, policy.policy_id) == (mode, mx, max_age, "id1")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("mode: enforce\nmx: a.b\nmax_age: 1\n", "version"),
        ("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmx: a.b\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmx: a.b\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx pattern"),
        ("version: STSv1\nmode: testing\nmx: *.*.b\nmax_age: 1\n", "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: mail.b*\nmax_age: 1\n", "mx pattern"),
        ("<html>not a policy</html>\n", "line 1"),
        ("version STSv1\n", "line 1"),
    ],
)
def test_malformed_policies_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        parse_policy(text)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),  # the wildcard is one label
        ("*.example.com", "a.b.example.com", False),  # ... exactly one
        ("*.example.com", "mx1.example.org", False),
        ("*.example.com", ".example.com", False),
        ("*.mail.example.com", "mx.mail.example.com", True),
    ],
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def _policy(mode: STSMode = STSMode.ENFORCE, max_age: int = 100, pid: str = "a") -> STSPolicy:
    return STSPolicy(mode, ("*.example.com",), max_age, pid)


def test_cache_honours_max_age() -> None:
    now = [1000.0]
    cache = PolicyCache(clock=lambda: now[0])
    cache.put("Example.COM", _policy(max_age=100))
    assert cache.get("example.com") == _policy(max_age=100)
    now[0] += 99
    assert cache.get("example.com") is not None
    now[0] += 1
    assert cache.get("example.com") is None


def test_cache_file_survives_a_new_cache_and_a_broken_file_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "sts.json"
    now = [1000.0]
    PolicyCache(path, clock=lambda: now[0]).put("example.com", _policy(pid="x1"))
    again = PolicyCache(path, clock=lambda: now[0] + 50)
    assert again.get("example.com") == _policy(pid="x1")
    assert json.loads(path.read_text())["example.com"]["id"] == "x1"
    assert PolicyCache(path, clock=lambda: now[0] + 100).get("example.com") is None  # expired
    path.write_text("{not json")
    assert PolicyCache(path).get("example.com") is None


CTX = ssl.create_default_context()


@pytest.mark.parametrize(
    ("sts", "host", "tls", "policy", "mode", "required"),
    [
        (
            None,
            "mx.example.com",
            TLSMode.OPPORTUNISTIC,
            TLSPolicy.OPPORTUNISTIC,
            TLSMode.OPPORTUNISTIC,
            False,
        ),
        (None, "mx.example.com", TLSMode.NONE, TLSPolicy.NONE, TLSMode.NONE, False),
        (
            _policy(),
            "mx.example.com",
            TLSMode.OPPORTUNISTIC,
            TLSPolicy.MTA_STS_ENFORCE,
            TLSMode.STARTTLS,
            True,
        ),
        (
            _policy(),
            "mx.example.com",
            TLSMode.NONE,
            TLSPolicy.MTA_STS_ENFORCE,
            TLSMode.STARTTLS,
            True,
        ),
        (
            _policy(),
            "mx.example.com",
            TLSMode.IMPLICIT,
            TLSPolicy.MTA_STS_ENFORCE,
            TLSMode.IMPLICIT,
            True,
        ),
        (
            _policy(STSMode.TESTING),
            "mx.example.com",
            TLSMode.OPPORTUNISTIC,
            TLSPolicy.MTA_STS_TESTING,
            TLSMode.OPPORTUNISTIC,
            False,
        ),
        (
            _policy(),
            "[192.0.2.1]",
            TLSMode.OPPORTUNISTIC,
            TLSPolicy.OPPORTUNISTIC,
            TLSMode.OPPORTUNISTIC,
            False,
        ),
    ],
)
def test_host_tls_decision(
    sts: STSPolicy | None, host: str, tls: TLSMode, policy: TLSPolicy, mode: TLSMode, required: bool
) -> None:
    decision = host_tls("example.com", host, sts, tls=tls, ssl_context=CTX)
    assert (decision.policy, decision.mode, decision.required) == (policy, mode, required)
    if required:
        assert decision.context is not None
        assert decision.context.verify_mode == ssl.CERT_REQUIRED and decision.context.check_hostname
        assert decision.mechanism == "mta-sts"


def test_enforce_never_uses_a_context_that_does_not_verify() -> None:
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    decision = host_tls(
        "example.com", "mx.example.com", _policy(), tls=TLSMode.OPPORTUNISTIC, ssl_context=lax
    )
    assert decision.context is not lax and decision.context is not None
    assert decision.context.verify_mode == ssl.CERT_REQUIRED


def test_domain_tls_names_the_policy_and_notes_testing_failures() -> None:
    enforce = DomainTLS(
        "example.com",
        PolicyLookup(_policy(), "fetched"),
        tls=TLSMode.OPPORTUNISTIC,
        ssl_context=None,
    )
    assert enforce.accept_host is not None and enforce.accept_host("mx.example.com")
    assert not enforce.accept_host("mx.evil.test")
    assert "mta-sts enforce policy of example.com" in enforce.no_match()
    testing = DomainTLS(
        "example.com",
        PolicyLookup(_policy(STSMode.TESTING), "cached"),
        tls=TLSMode.OPPORTUNISTIC,
        ssl_context=None,
    )
    assert testing.accept_host is None
    verified = TLSInfo("TLSv1.3", "X", True)
    assert testing.testing_failure("mx.example.com", verified) is None
    note = testing.testing_failure("mx.example.org", None)
    assert note is not None and "mta-sts testing policy" in note
    assert "does not match" in note and "did not use TLS" in note
    unverified = TLSInfo("TLSv1.3", "X", False, verify_error="self-signed")
    assert "self-signed" in (testing.testing_failure("mx.example.com", unverified) or "")
    none = DomainTLS(
        "example.com",
        PolicyLookup(_policy(STSMode.NONE), "fetched"),
        tls=TLSMode.OPPORTUNISTIC,
        ssl_context=None,
    )
    assert none.policy is TLSPolicy.OPPORTUNISTIC and none.accept_host is None
