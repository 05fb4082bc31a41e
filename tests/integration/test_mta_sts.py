"""MTA-STS (RFC 8461) in direct delivery, against real servers on loopback.

Knot serves the ``sts.test`` zone (``_mta-sts`` TXT records, MX hosts on
127.0.0.8x, ``mta-sts.<domain>`` at 127.0.0.80); a local HTTPS server with
a trustme certificate serves the policies on an ephemeral port
(``mta_sts_port``); the MX hosts are aiosmtpd servers, with STARTTLS and a
certificate for their MX name from the same CA, or without STARTTLS.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from servers.knot import KnotServer
from servers.mtasts_https import PolicyServer, Reply, policy_text
from servers.multihome import on_one_port
from servers.smtpd import AiosmtpdServer

from smtpclient import Resolver, Timeouts, deliver
from smtpclient.cli import main
from smtpclient.mtasts import MAX_POLICY_BYTES, PolicyCache, STSMode, STSPolicy
from smtpclient.mtasts_fetch import PolicyFetchError, fetch_policy
from smtpclient.report import DeliveryReport, Status
from smtpclient.tlspolicy import TLSPolicy

pytestmark = pytest.mark.knot

S = "sts.test"
TIMEOUTS = dataclasses.replace(Timeouts.uniform(10), connect=10.0, connect_total=20.0)

# domain -> (MX records as (preference, host, address)); every domain has
# _mta-sts TXT "v=STSv1; id=<domain label>1;" and mta-sts.<domain> A 127.0.0.80
DOMAINS: dict[str, list[tuple[int, str, str]]] = {
    "enforce": [(10, "mx1", "127.0.0.81")],
    "testing": [(10, "mx1", "127.0.0.82")],
    "wild": [(5, "a.mx1", "127.0.0.84"), (10, "mx1", "127.0.0.83")],
    "exclude": [(10, "rogue", "127.0.0.85"), (20, "good", "127.0.0.86")],
    "plain": [(10, "mx1", "127.0.0.87")],
    "badcert": [(10, "mx1", "127.0.0.88")],
    "none": [(10, "mx1", "127.0.0.89")],
    "nomatch": [(10, "mx1", "127.0.0.90")],
    "cached": [(10, "mx1", "127.0.0.91")],
    "broken": [(10, "mx1", "127.0.0.92")],
    "off": [(10, "mx1", "127.0.0.93")],
}


def zone() -> str:
    lines = [
        f"$ORIGIN {S}.",
        "$TTL 30",
        f"@ SOA ns.{S}. hostmaster.{S}. 1 60 30 600 10",
        "@ NS ns",
        "ns A 127.0.0.1",
    ]
    for label, hosts in DOMAINS.items():
        lines.append(f'_mta-sts.{label} TXT "v=STSv1; id={label}1;"')
        lines.append(f"mta-sts.{label} A 127.0.0.80")
        for preference, host, address in hosts:
            lines.append(f"{label} MX {preference} {host}.{label}")
            lines.append(f"{host}.{label} A {address}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def knot_sts() -> Iterator[KnotServer]:
    server = KnotServer({S: zone()}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def mx_context(ca: trustme.CA) -> ssl.SSLContext:
    """The MX hosts' server context: a certificate naming every MX host
    (except badcert's, which gets a certificate for another name)."""
    names = [
        f"{host}.{label}.{S}"
        for label, hosts in DOMAINS.items()
        if label != "badcert"
        for _, host, _ in hosts
    ]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def wrong_name_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"somebody-else.{S}").configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def mx(address: str, context: ssl.SSLContext | None) -> Callable[[int], AiosmtpdServer]:
    return lambda port: AiosmtpdServer(host=address, port=port, tls_context=context)


def message(*to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@origin.test"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "mta-sts"
    msg.set_content("hello\n")
    return msg


def send(
    knot: KnotServer,
    port: int,
    https: PolicyServer | int,
    context: ssl.SSLContext,
    *to: str,
    **options: Any,
) -> DeliveryReport:
    options.setdefault("mta_sts_cache", PolicyCache())
    return deliver(
        message(*to),
        resolver=Resolver(nameservers=[knot.host], port=knot.port, lifetime=5),
        port=port,
        timeouts=TIMEOUTS,
        ssl_context=context,
        mta_sts_ssl_context=context,
        mta_sts_port=https if isinstance(https, int) else https.port,
        target_policy="any",
        **options,
    )


POLICIES: dict[str, str | Reply] = {
    "enforce": policy_text("enforce", f"mx1.enforce.{S}"),
    "testing": policy_text("testing", f"mx1.testing.{S}"),
    "wild": policy_text("enforce", f"*.wild.{S}"),
    "exclude": policy_text("enforce", f"good.exclude.{S}"),
    "plain": policy_text("enforce", f"mx1.plain.{S}"),
    "badcert": policy_text("enforce", f"mx1.badcert.{S}"),
    "none": policy_text("none"),
    "nomatch": policy_text("enforce", f"*.elsewhere.{S}"),
    "cached": policy_text("enforce", f"mx1.cached.{S}"),
    "off": policy_text("enforce", f"mx1.off.{S}"),
}


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[PolicyServer]:
    with PolicyServer(ca, {f"{label}.{S}": text for label, text in POLICIES.items()}) as server:
        yield server


# --- enforce ------------------------------------------------------------------------------


def test_enforce_delivers_over_verified_starttls(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    to = f"bob@enforce.{S}"
    with on_one_port(mx("127.0.0.81", mx_context)) as (port, (server,)):
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert outcome.tls_policy is TLSPolicy.MTA_STS_ENFORCE
    assert str(outcome.tls_policy) == "mta-sts enforce"
    assert outcome.tls is not None and outcome.tls.verified
    assert outcome.tls.server_hostname == f"mx1.enforce.{S}"  # SNI and the name checked
    assert [m.rcpt_tos for m in server.messages] == [[to]]
    assert https.requests == [f"mta-sts.enforce.{S}"]
    assert report.domains[f"enforce.{S}"].mta_sts.startswith("enforce (fetched)")


def test_enforce_defers_when_the_mx_offers_no_starttls(
    knot_sts: KnotServer, https: PolicyServer, client_context: ssl.SSLContext
) -> None:
    to = f"pat@plain.{S}"
    with on_one_port(mx("127.0.0.87", None)) as (port, (server,)):
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DEFERRED
    assert "mta-sts enforce policy of plain.sts.test" in outcome.reason
    assert outcome.tls_policy is TLSPolicy.MTA_STS_ENFORCE
    assert server.messages == []


def test_enforce_defers_when_the_certificate_does_not_name_the_mx(
    knot_sts: KnotServer,
    https: PolicyServer,
    wrong_name_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    to = f"bea@badcert.{S}"
    with on_one_port(mx("127.0.0.88", wrong_name_context)) as (port, (server,)):
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DEFERRED
    assert "mta-sts enforce policy" in outcome.reason and "TLS" in outcome.reason
    assert server.messages == []


def test_a_policy_that_excludes_one_mx_never_connects_to_it(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    to = f"eve@exclude.{S}"
    with on_one_port(mx("127.0.0.85", mx_context), mx("127.0.0.86", mx_context)) as (
        port,
        (rogue, _),
    ):
        report = send(knot_sts, port, https, client_context, to)
    assert report[to].status is Status.DELIVERED
    assert report[to].host == f"good.exclude.{S}"
    assert rogue.recorder.connections == 0
    assert [t.host for t in report.domains[f"exclude.{S}"].targets] == [f"good.exclude.{S}"]


def test_the_wildcard_matches_exactly_one_label(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    # *.wild.sts.test: mx1.wild.sts.test matches, a.mx1.wild.sts.test (preference 5) does not.
    to = f"wil@wild.{S}"
    with on_one_port(mx("127.0.0.84", mx_context), mx("127.0.0.83", mx_context)) as (
        port,
        (deeper, matching),
    ):
        report = send(knot_sts, port, https, client_context, to)
    assert report[to].status is Status.DELIVERED
    assert report[to].host == f"mx1.wild.{S}"
    assert deeper.recorder.connections == 0 and len(matching.messages) == 1


def test_no_mx_matching_the_policy_defers_without_connecting(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    to = f"nia@nomatch.{S}"
    with on_one_port(mx("127.0.0.90", mx_context)) as (port, (server,)):
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DEFERRED
    assert "mta-sts enforce policy of nomatch.sts.test" in outcome.reason
    assert "no MX host matches" in outcome.reason
    assert outcome.enhanced == "4.7.5"
    assert server.recorder.connections == 0


# --- testing and none ---------------------------------------------------------------------


def test_testing_delivers_as_usual_and_records_the_failure(
    knot_sts: KnotServer, https: PolicyServer, client_context: ssl.SSLContext
) -> None:
    to = f"tim@testing.{S}"
    with on_one_port(mx("127.0.0.82", None)) as (port, (server,)):  # no STARTTLS
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DELIVERED
    assert outcome.tls_policy is TLSPolicy.MTA_STS_TESTING
    assert outcome.tls is None
    assert outcome.tls_policy_failure is not None
    assert "mta-sts testing policy" in outcome.tls_policy_failure
    assert "did not use TLS" in outcome.tls_policy_failure
    assert len(server.messages) == 1


def test_testing_with_a_verified_mx_records_no_failure(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    to = f"tom@testing.{S}"
    with on_one_port(mx("127.0.0.82", mx_context)) as (port, _):
        report = send(knot_sts, port, https, client_context, to)
    outcome = report[to]
    assert outcome.status is Status.DELIVERED
    assert outcome.tls is not None and outcome.tls.verified
    assert outcome.tls_policy_failure is None


def test_mode_none_is_opportunistic(
    knot_sts: KnotServer, https: PolicyServer, client_context: ssl.SSLContext
) -> None:
    to = f"nod@none.{S}"
    with on_one_port(mx("127.0.0.89", None)) as (port, _):
        report = send(knot_sts, port, https, client_context, to)
    assert report[to].status is Status.DELIVERED
    assert report[to].tls_policy is TLSPolicy.OPPORTUNISTIC
    assert report.domains[f"none.{S}"].mta_sts.startswith("none (fetched)")


def test_mta_sts_false_fetches_nothing(
    knot_sts: KnotServer, https: PolicyServer, client_context: ssl.SSLContext
) -> None:
    to = f"oz@off.{S}"
    with on_one_port(mx("127.0.0.93", None)) as (port, _):
        report = send(knot_sts, port, https, client_context, to, mta_sts=False)
    assert report[to].status is Status.DELIVERED  # the enforce policy was never seen
    assert report[to].tls_policy is TLSPolicy.OPPORTUNISTIC
    assert https.requests == []
    assert report.domains[f"off.{S}"].mta_sts == ""


# --- the cache and fetch failures (RFC 8461 §5.1) -----------------------------------------


def test_a_cached_policy_applies_when_the_https_server_is_down(
    knot_sts: KnotServer, ca: trustme.CA, mx_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    to = f"cat@cached.{S}"
    cache = PolicyCache()
    with PolicyServer(ca, {f"{label}.{S}": text for label, text in POLICIES.items()}) as server:
        https_port = server.port
        with on_one_port(mx("127.0.0.91", mx_context)) as (port, _):
            first = send(knot_sts, port, server, client_context, to, mta_sts_cache=cache)
        assert first[to].tls_policy is TLSPolicy.MTA_STS_ENFORCE
        assert server.requests == [f"mta-sts.cached.{S}"]
    # The server is gone; the same TXT id: the cached policy is used, no fetch.
    with on_one_port(mx("127.0.0.91", None)) as (port, (plain,)):
        again = send(knot_sts, port, https_port, client_context, to, mta_sts_cache=cache)
    assert again[to].status is Status.DEFERRED  # enforce still holds: no STARTTLS, no mail
    assert again[to].tls_policy is TLSPolicy.MTA_STS_ENFORCE
    assert plain.messages == []
    assert again.domains[f"cached.{S}"].mta_sts.startswith("enforce (cached)")


def test_a_failed_refetch_keeps_the_cached_policy(
    knot_sts: KnotServer, client_context: ssl.SSLContext
) -> None:
    # The TXT id ("cached1") differs from the cached one: a fetch is tried,
    # fails (nothing listens), and the cached enforce policy still applies.
    to = f"cy@cached.{S}"
    cache = PolicyCache()
    cache.put(f"cached.{S}", STSPolicy(STSMode.ENFORCE, (f"mx1.cached.{S}",), 86400, "old0"))
    with on_one_port(mx("127.0.0.91", None)) as (port, (plain,)):
        report = send(knot_sts, port, 9, client_context, to, mta_sts_cache=cache)
    assert report[to].status is Status.DEFERRED
    assert report[to].tls_policy is TLSPolicy.MTA_STS_ENFORCE
    assert "fetch failed" in report.domains[f"cached.{S}"].mta_sts
    assert plain.messages == []


def test_without_a_cached_policy_a_fetch_failure_means_no_policy(
    knot_sts: KnotServer, client_context: ssl.SSLContext
) -> None:
    to = f"ned@cached.{S}"
    with on_one_port(mx("127.0.0.91", None)) as (port, _):
        report = send(knot_sts, port, 9, client_context, to)
    assert report[to].status is Status.DELIVERED
    assert report[to].tls_policy is TLSPolicy.OPPORTUNISTIC
    assert report.domains[f"cached.{S}"].mta_sts.startswith(
        "no policy; MTA-STS policy fetch failed"
    )


@pytest.mark.parametrize(
    ("served", "complaint"),
    [
        (
            Reply(
                body=b"version: STSv1\r\nmode: enforce\r\nmx: " + b"a" * MAX_POLICY_BYTES + b"\r\n"
            ),
            "too large",
        ),
        (Reply(body=b"<html>this is not a policy</html>"), "line 1"),
        (Reply(body=b"version: STSv1\r\nmode: sometimes\r\nmx: x.test\r\nmax_age: 1\r\n"), "mode"),
        (
            Reply(
                content_type="text/html", body=policy_text("enforce", "*.broken.sts.test").encode()
            ),
            "text/plain",
        ),
        (
            Reply(301, headers=(("Location", "https://elsewhere.test/"),)),
            "redirects are not followed",
        ),
        (Reply(404), "HTTP 404"),
    ],
)
def test_an_oversized_or_malformed_policy_is_no_policy(
    knot_sts: KnotServer,
    ca: trustme.CA,
    client_context: ssl.SSLContext,
    served: Reply,
    complaint: str,
) -> None:
    to = f"bo@broken.{S}"
    with (
        PolicyServer(ca, {"broken.sts.test": served}) as server,
        on_one_port(mx("127.0.0.92", None)) as (port, (plain,)),
    ):
        report = send(knot_sts, port, server, client_context, to)
    assert server.requests == [f"mta-sts.broken.{S}"]
    assert report[to].status is Status.DELIVERED  # no usable policy: delivered as usual
    assert report[to].tls_policy is TLSPolicy.OPPORTUNISTIC
    note = report.domains[f"broken.{S}"].mta_sts
    assert "fetch failed" in note and complaint in note
    assert len(plain.messages) == 1


def test_the_policy_fetch_obeys_the_target_policy(
    knot_sts: KnotServer,
    https: PolicyServer,
    mx_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    # mta-sts.enforce.sts.test is 127.0.0.80: refused under "public" like any target.
    resolver = Resolver(nameservers=[knot_sts.host], port=knot_sts.port, lifetime=5)
    with pytest.raises(PolicyFetchError, match="target policy 'public'"):
        fetch_policy(f"enforce.{S}", resolver=resolver, ssl_context=client_context, port=https.port)
    assert https.requests == []
    text = fetch_policy(
        f"enforce.{S}",
        resolver=resolver,
        ssl_context=client_context,
        port=https.port,
        target_policy="any",
    )
    assert "mode: enforce" in text


def test_the_policy_fetch_verifies_the_certificate(
    knot_sts: KnotServer, https: PolicyServer
) -> None:
    resolver = Resolver(nameservers=[knot_sts.host], port=knot_sts.port, lifetime=5)
    with pytest.raises(PolicyFetchError, match="certificate"):  # certifi does not know the test CA
        fetch_policy(f"enforce.{S}", resolver=resolver, port=https.port, target_policy="any")


def test_the_policy_fetch_has_one_deadline(
    knot_sts: KnotServer, client_context: ssl.SSLContext
) -> None:
    # A server that accepts TCP (the kernel does) but never answers the TLS handshake.
    resolver = Resolver(nameservers=[knot_sts.host], port=knot_sts.port, lifetime=5)
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.80", 0))
        stalled.listen(4)
        started = time.monotonic()
        with pytest.raises(PolicyFetchError, match="time limit"):
            fetch_policy(
                f"enforce.{S}",
                resolver=resolver,
                ssl_context=client_context,
                port=stalled.getsockname()[1],
                target_policy="any",
                timeout=1.0,
            )
        assert time.monotonic() - started < 10  # 1 s, with generous slack


def test_the_mx_command_shows_the_policy(
    knot_sts: KnotServer,
    https: PolicyServer,
    ca: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    common = [
        "--nameserver",
        knot_sts.host,
        "--dns-port",
        str(knot_sts.port),
        "--target-policy",
        "any",
        "--mta-sts-port",
        str(https.port),
        "--mta-sts-cafile",
        str(cafile),
    ]
    assert main(["mx", f"exclude.{S}", *common]) == 0
    out = capsys.readouterr().out
    assert "MTA-STS: enforce (fetched): mode enforce, mx good.exclude.sts.test" in out
    assert f"rogue.exclude.{S}  127.0.0.85  (not in the MTA-STS policy)" in out
    assert main(["mx", f"testing.{S}", *common, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["mta_sts"]["mode"] == "testing"
    assert found["mta_sts"]["mx"] == [f"mx1.testing.{S}"]
    assert found["mta_sts"]["id"] == "testing1"
    assert main(["mx", f"enforce.{S}", *common, "--no-mta-sts", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mta_sts"] is None
    assert https.requests == [f"mta-sts.exclude.{S}", f"mta-sts.testing.{S}"]


def test_a_dripping_policy_server_is_cut_off_at_the_deadline(
    knot_sts: KnotServer, ca: trustme.CA, client_context: ssl.SSLContext
) -> None:
    # Each byte of the answer comes within the socket timeout, so only the
    # fetch's overall deadline can stop it.
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.enforce.{S}").configure_cert(server_context)
    stop = threading.Event()
    sent = []

    def drip(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)  # the request
            for byte in b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Slow: " + b"x" * 200:
                if stop.wait(0.1):
                    return
                tls.sendall(bytes([byte]))
                sent.append(byte)

    resolver = Resolver(nameservers=[knot_sts.host], port=knot_sts.port, lifetime=5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.80", 0))
        listener.listen(1)
        worker = threading.Thread(target=drip, args=(listener,))
        worker.start()
        started = time.monotonic()
        try:
            with pytest.raises(PolicyFetchError, match="time limit"):
                fetch_policy(
                    f"enforce.{S}",
                    resolver=resolver,
                    ssl_context=client_context,
                    port=listener.getsockname()[1],
                    target_policy="any",
                    timeout=1.5,
                )
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            worker.join(10)
    assert sent  # the server did answer, slowly
    assert elapsed < 10  # 1.5 s, with generous slack; the drip alone takes 23 s
