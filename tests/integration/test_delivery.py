"""Direct delivery against Knot DNS and real SMTP servers on 127.0.0.x and ::1.

The zone (tests/servers/zones/example.test.zone) points each scenario's MX
hosts at fixed loopback addresses; each test puts a real server (aiosmtpd
or a scripted one), a refusing address or a black hole on each, all on one
ephemeral port, and checks the ORDER in which the addresses were tried,
what each server received, and the outcome of every recipient.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from servers.knot import KnotServer
from servers.multihome import BlackHole, Refusing, on_one_port
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo
from servers.smtpd import AiosmtpdServer

from smtpclient import Resolver, Timeouts, deliver
from smtpclient.report import Status

pytestmark = pytest.mark.knot

Z = "example.test"
# RFC 5321 stage limits, except a short wait for replies so a broken test
# fails quickly; connecting keeps 30 s per address: Happy Eyeballs must not
# need to wait for it.
TIMEOUTS = dataclasses.replace(Timeouts.uniform(10), connect=30.0, connect_total=60.0)


@pytest.fixture
def resolver(knot: KnotServer) -> Resolver:
    return Resolver(nameservers=[knot.host], port=knot.port, lifetime=5)


def message(*to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@origin.test"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "direct delivery"
    msg.set_content("hello\n")
    return msg


def smtpd(host: str) -> Callable[[int], AiosmtpdServer]:
    return lambda port: AiosmtpdServer(host=host, port=port)


def scripted(host: str, handler: Callable[[Conn], None]) -> Callable[[int], ScriptedServer]:
    return lambda port: ScriptedServer(handler, host=host, port=port)


def refusing(host: str) -> Callable[[int], Refusing]:
    return lambda port: Refusing(host, port)


def black_hole(host: str) -> Callable[[int], BlackHole]:
    return lambda port: BlackHole(host, port)


def greeting(reply: str) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        conn.reply(reply)
        if conn.line().upper().startswith(b"QUIT"):  # after a 5xx greeting
            conn.reply("221 2.0.0 Bye")

    return handler


def mta(
    *,
    mail: str = "250 2.1.0 Ok",
    rcpt: Callable[[str], str] = lambda address: "250 2.1.5 Ok",
    data: str | None = "250 2.0.0 Ok: queued as Q1",
    extensions: tuple[str, ...] = ("8BITMIME",),  # no PIPELINING: one command at a time
) -> Callable[[Conn], None]:
    """A scripted server with per-recipient answers; ``data=None`` closes
    the connection after the final "." without a reply; a STARTTLS is
    answered 220 and followed by bytes that are not TLS."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, extensions)
        accepted = 0
        while True:
            line = conn.line()
            verb = line[:4].upper()
            if verb == b"MAIL":
                conn.reply(mail)
                accepted = 0
            elif verb == b"RCPT":
                answer = rcpt(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                accepted += answer.startswith("2")
                conn.reply(answer)
            elif verb == b"DATA":
                conn.reply("354 go ahead")
                conn.read_data()
                if data is None:
                    conn.close()
                    return
                conn.reply(data)
            elif verb == b"QUIT":
                conn.reply("221 2.0.0 Bye")
                return
            elif verb == b"STAR":
                conn.reply("220 2.0.0 go ahead")
                conn.send(b"this is not a TLS handshake\r\n")
                return
            else:
                conn.reply("250 2.0.0 Ok")

    return handler


def rcpt_lines(server: ScriptedServer) -> list[bytes]:
    return [
        line
        for conn in server.conns
        for line in bytes(conn.received).split(b"\r\n")
        if line.upper().startswith(b"RCPT")
    ]


# --- the walk over hosts and addresses ---------------------------------------------------


def test_happy_eyeballs_does_not_wait_out_the_connect_timeout(resolver: Resolver) -> None:
    with on_one_port(black_hole("127.0.0.101"), smtpd("127.0.0.102")) as (port, (hole, live)):
        assert hole.hangs()
        started = time.monotonic()
        report = deliver(
            message(f"bob@eyeballs.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        elapsed = time.monotonic() - started
        assert [m.rcpt_tos for m in live.messages] == [[f"bob@eyeballs.{Z}"]]
    outcome = report[f"bob@eyeballs.{Z}"]
    assert outcome.status is Status.DELIVERED
    assert (outcome.host, outcome.address) == (f"live.eyeballs.{Z}", "127.0.0.102")
    assert outcome.queue_id == "TEST123" and outcome.tls is None
    trace = report.domains[f"eyeballs.{Z}"]
    assert trace.tried == ("127.0.0.101", "127.0.0.102")
    assert [a.outcome for a in trace.attempts] == ["cancelled", "connected"]
    assert elapsed < 15.0  # the black hole's connect timeout is 30 s


def test_next_host_after_refusal_and_4xx_and_5xx_greetings(resolver: Resolver) -> None:
    with on_one_port(
        refusing("127.0.0.111"),
        scripted("127.0.0.112", greeting("421 4.3.2 too busy")),
        scripted("127.0.0.113", greeting("554 5.7.1 no SMTP service here")),
        smtpd("127.0.0.114"),
    ) as (port, (_, busy, closed, live)):
        report = deliver(
            message(f"ann@failover.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert busy.connections == 1 and closed.connections == 1
        assert len(live.messages) == 1
    trace = report.domains[f"failover.{Z}"]
    assert trace.tried == ("127.0.0.111", "127.0.0.112", "127.0.0.113", "127.0.0.114")
    assert [a.outcome for a in trace.attempts] == ["refused", "connected", "connected", "connected"]
    assert [v.host for v in trace.visits] == [f"{n}.failover.{Z}" for n in "bcd"]
    assert "421" in trace.visits[0].result and "554" in trace.visits[1].result
    assert report[f"ann@failover.{Z}"].host == f"d.failover.{Z}"


def test_multihomed_host_addresses_in_interleaved_order(resolver: Resolver) -> None:
    with on_one_port(
        refusing("::1"),
        black_hole("127.0.0.2"),
        refusing("127.0.0.3"),
        smtpd("127.0.0.4"),
    ) as (port, servers):
        report = deliver(
            message(f"cy@multihomed-mx.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert len(servers[3].messages) == 1
    trace = report.domains[f"multihomed-mx.{Z}"]
    assert trace.tried == ("::1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
    assert [a.outcome for a in trace.attempts] == ["refused", "cancelled", "refused", "connected"]
    assert report[f"cy@multihomed-mx.{Z}"].address == "127.0.0.4"


def test_at_most_two_sessions_per_delivery(resolver: Resolver) -> None:
    later = mta(rcpt=lambda address: "451 4.3.0 try again later")
    with on_one_port(
        scripted("127.0.0.121", later),
        scripted("127.0.0.122", later),
        scripted("127.0.0.123", later),
    ) as (port, (first, second, third)):
        before = datetime.now(UTC)
        report = deliver(
            message(f"dee@capped.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert (first.connections, second.connections, third.connections) == (1, 1, 0)
    assert report.domains[f"capped.{Z}"].tried == ("127.0.0.121", "127.0.0.122")
    outcome = report[f"dee@capped.{Z}"]
    assert outcome.status is Status.DEFERRED
    assert outcome.code == 451 and outcome.host == f"c2.capped.{Z}"
    assert outcome.retry_after is not None
    wait = outcome.retry_after - before
    assert timedelta(minutes=29) < wait < timedelta(minutes=31)  # RFC 5321 §4.5.4.1


def test_transient_mail_from_refusal_moves_to_the_next_host(resolver: Resolver) -> None:
    with on_one_port(
        scripted("127.0.0.141", mta(mail="451 4.3.0 queue full")), smtpd("127.0.0.142")
    ) as (port, (first, live)):
        report = deliver(
            message(f"eve@mailfrom.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert first.connections == 1 and len(live.messages) == 1
    assert report[f"eve@mailfrom.{Z}"].host == f"m2.mailfrom.{Z}"
    assert report.domains[f"mailfrom.{Z}"].visits[0].result == "delivered 0"


def test_domains_in_parallel_grouped_without_changing_local_part_case(
    resolver: Resolver,
) -> None:
    recipients = [
        f"Bob@SECOND.{Z}",
        f"bob@second.{Z}",
        "bob@Second.Example.Test",  # the same recipient as the one before: once
        f"carol@third.{Z}",
        f"x@nullmx.{Z}",
        "not an address",
    ]
    with on_one_port(smtpd("127.0.0.181"), smtpd("127.0.0.182")) as (port, (second, third)):
        report = deliver(
            b"Subject: raw\r\n\r\nraw content\r\n",
            sender="sender@origin.test",
            recipients=recipients,
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert [m.rcpt_tos for m in second.messages] == [[f"Bob@SECOND.{Z}", f"bob@second.{Z}"]]
        assert [m.rcpt_tos for m in third.messages] == [[f"carol@third.{Z}"]]
        assert second.messages[0].content.endswith(b"raw content\r\n")
    assert [o.recipient for o in report] == [r for i, r in enumerate(recipients) if i != 2]
    assert [o.status for o in report] == [Status.DELIVERED] * 3 + [Status.FAILED] * 2
    assert (report[f"x@nullmx.{Z}"].code, report[f"x@nullmx.{Z}"].enhanced) == (556, "5.1.10")
    assert report.domains[f"nullmx.{Z}"].attempts == ()  # RFC 7505: no connection at all
    assert report["not an address"].enhanced == "5.1.3"


def test_dns_failures_become_outcomes(resolver: Resolver) -> None:
    report = deliver(
        message(f"a@does-not-exist.{Z}", f"b@noaddr.{Z}"),
        resolver=resolver,
        timeouts=TIMEOUTS,
        target_policy="any",
    )
    assert [(o.status, o.enhanced) for o in report] == [
        (Status.FAILED, "5.1.2"),
        (Status.FAILED, "5.4.4"),
    ]


def test_unresponsive_nameserver_defers(silent_dns: tuple[str, int]) -> None:
    host, port = silent_dns
    resolver = Resolver(nameservers=[host], port=port, lifetime=1.0)
    report = deliver(message(f"a@{Z}"), resolver=resolver, timeouts=TIMEOUTS, target_policy="any")
    outcome = report[f"a@{Z}"]
    assert outcome.status is Status.DEFERRED and outcome.enhanced == "4.4.3"
    assert outcome.retry_after is not None and report.domains[Z].dns_error


@pytest.fixture
def silent_dns() -> Iterator[tuple[str, int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()
    finally:
        sock.close()
