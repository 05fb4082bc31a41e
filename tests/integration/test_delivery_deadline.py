"""What bounds a ``deliver()`` call (issue 15 item 3), against Knot DNS and
scripted servers that drip their replies on 127.0.0.x.

* ``deliver(..., deadline=S)`` bounds the whole call: DNS, the MTA-STS
  policy fetch, every domain and host.  When it runs out, nothing new is
  started and every open recipient is DEFERRED, saying the budget ran out.
* ``Timeouts.total`` bounds each attempt (one host's session); the next
  host is tried after it.
* Once "." is written the reply is still waited for (the data_done floor):
  giving up there would make duplicates.

The stage timeouts stay at ``Timeouts.mta()``'s minutes, so only the
budget under test can end a call in seconds.  Durations are checked only
as upper bounds with generous slack (a loaded machine is slow).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from servers.knot import KnotServer
from servers.multihome import on_one_port
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

from smtpclient import Resolver, Timeouts, deliver
from smtpclient.delivery import redeliver
from smtpclient.mtasts import PolicyCache
from smtpclient.report import DeliveryReport, Status
from smtpclient.timeouts import DATA_DONE_FLOOR

pytestmark = pytest.mark.knot

B = "budget.test"
DEADLINE = 3.0  # seconds: ample to reach each stage under test, even on a loaded machine
SLACK = 6.0  # far more than a loaded machine needs; far less than any stage timeout
DRIP = 0.4  # seconds between the octets of a dripped reply (each takes 5-9 s in all)

ZONE = f"""\
$ORIGIN {B}.
$TTL 30
@            SOA  ns.{B}. hostmaster.{B}. 1 60 30 600 10
@            NS   ns
ns           A    127.0.0.1
; two MX hosts: the first drips, the second answers at once
greet        MX   10 mx1.greet
greet        MX   20 mx2.greet
mx1.greet    A    127.0.0.241
mx2.greet    A    127.0.0.242
ehlo         MX   10 mx1.ehlo
ehlo         MX   20 mx2.ehlo
mx1.ehlo     A    127.0.0.243
mx2.ehlo     A    127.0.0.244
rcpt         MX   10 mx.rcpt
mx.rcpt      A    127.0.0.245
dot          MX   10 mx.dot
mx.dot       A    127.0.0.246
; MTA-STS: the policy host accepts TCP and never says a word
sts          MX   10 mx.sts
mx.sts       A    127.0.0.247
_mta-sts.sts TXT  "v=STSv1; id=20261207"
mta-sts.sts  A    127.0.0.248
; a well-behaved domain, delivered to after a slow one
ok           MX   10 mx.ok
mx.ok        A    127.0.0.249
"""


@pytest.fixture(scope="module")
def zone() -> Iterator[KnotServer]:
    server = KnotServer({B: ZONE}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def resolver(zone: KnotServer) -> Resolver:
    return Resolver(nameservers=[zone.host], port=zone.port, lifetime=30)


def message(*to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@origin.test"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "on a budget"
    msg.set_content("hello\n")
    return msg


def at(host: str, handler: Callable[[Conn], None]) -> Callable[[int], ScriptedServer]:
    return lambda port: ScriptedServer(handler, host=host, port=port)


def drip(conn: Conn, reply: str) -> None:
    conn.drip(reply.encode() + b"\r\n", DRIP)


def normal(conn: Conn) -> None:
    greet_and_ehlo(conn)
    serve_normally(conn)


def dripping_greeting(conn: Conn) -> None:
    drip(conn, "220 slow.test ESMTP")
    serve_normally(conn)


def dripping_ehlo(conn: Conn) -> None:
    conn.reply("220 slow.test ESMTP")
    conn.expect(b"EHLO")
    drip(conn, "250 slow.test")
    serve_normally(conn)


def dripping_rcpt(conn: Conn) -> None:
    greet_and_ehlo(conn, ("8BITMIME",))  # no PIPELINING: RCPT waits alone
    conn.expect(b"MAIL")
    conn.reply("250 2.1.0 Ok")
    conn.expect(b"RCPT")
    drip(conn, "250 2.1.5 Ok")
    serve_normally(conn)


def timed(call: Callable[[], DeliveryReport]) -> tuple[DeliveryReport, float]:
    started = time.monotonic()
    report = call()
    return report, time.monotonic() - started


def deliver_timed(
    resolver: Resolver, port: int, *recipients: str, **options: Any
) -> tuple[DeliveryReport, float]:
    """``deliver()`` to the loopback test hosts, timed: no MTA-STS and the
    test's ``DEADLINE`` unless *options* say otherwise."""
    options = {"target_policy": "any", "mta_sts": False, "deadline": DEADLINE, **options}
    return timed(lambda: deliver(message(*recipients), resolver=resolver, port=port, **options))


def assert_deferred_by_the_budget(report: DeliveryReport, *recipients: str) -> None:
    assert [outcome.recipient for outcome in report] == list(recipients)  # none lost
    for recipient in recipients:
        outcome = report[recipient]
        assert outcome.status is Status.DEFERRED, outcome
        assert "time budget" in outcome.reason and f"deadline={DEADLINE:g} s" in outcome.reason
        assert outcome.retry_after is not None


# --- the whole call ----------------------------------------------------------------------


def test_a_dripped_greeting_uses_up_the_deadline_and_nothing_more_starts(
    resolver: Resolver,
) -> None:
    slow, later = f"ann@greet.{B}", f"bob@ok.{B}"
    servers = (
        at("127.0.0.241", dripping_greeting),
        at("127.0.0.242", normal),
        at("127.0.0.249", normal),
    )
    with on_one_port(*servers) as (port, (first, second, other)):
        report, took = deliver_timed(
            resolver,
            port,
            slow,
            later,
            max_workers=1,  # ok.budget.test waits for greet.budget.test
        )
        assert first.connections == 1
        # The budget ran out on the first host: neither the next MX host nor
        # the domain still waiting for a worker was connected to.
        assert second.connections == 0 and other.connections == 0
    assert took < DEADLINE + SLACK
    assert_deferred_by_the_budget(report, slow, later)
    assert "greeting" in report[slow].reason  # what was going on when it ran out


def test_a_dripped_ehlo_is_cut_by_the_deadline(resolver: Resolver) -> None:
    rcpt = f"cy@ehlo.{B}"
    with on_one_port(at("127.0.0.243", dripping_ehlo), at("127.0.0.244", normal)) as (
        port,
        (first, second),
    ):
        report, took = deliver_timed(resolver, port, rcpt)
        assert first.connections == 1 and second.connections == 0
    assert took < DEADLINE + SLACK
    assert_deferred_by_the_budget(report, rcpt)


def test_a_stalled_tls_handshake_is_not_retried_in_plaintext_past_the_deadline(
    resolver: Resolver,
) -> None:
    # OPPORTUNISTIC retries a broken handshake in plaintext on a new
    # connection -- but not once the budget is spent.
    def stalled_handshake(conn: Conn) -> None:
        greet_and_ehlo(conn, ("STARTTLS", "8BITMIME"))
        conn.expect(b"STARTTLS")
        conn.reply("220 2.0.0 go ahead")
        conn.stall(30)  # the client's hello is never answered

    rcpt = f"dot@greet.{B}"
    with on_one_port(at("127.0.0.241", stalled_handshake), at("127.0.0.242", normal)) as (
        port,
        (first, second),
    ):
        report, took = deliver_timed(resolver, port, rcpt)
        assert first.connections == 1 and second.connections == 0
    assert took < DEADLINE + SLACK
    assert_deferred_by_the_budget(report, rcpt)


def test_a_dripped_rcpt_reply_defers_before_any_data(resolver: Resolver) -> None:
    recipients = (f"di@rcpt.{B}", f"ed@rcpt.{B}")
    with on_one_port(at("127.0.0.245", dripping_rcpt)) as (port, (server,)):
        report, took = deliver_timed(resolver, port, *recipients)
        wire = bytes(server.conns[0].received)
    assert took < DEADLINE + SLACK
    assert b"RCPT TO:<di@rcpt." in wire and b"DATA" not in wire  # never reached the content
    assert_deferred_by_the_budget(report, *recipients)


def test_the_reply_to_the_final_dot_is_awaited_past_the_deadline(resolver: Resolver) -> None:
    late = DEADLINE + 2.0  # after the deadline, well inside the data_done floor

    def late_reply(conn: Conn) -> None:
        greet_and_ehlo(conn, ("8BITMIME",))
        for answer in ("250 2.1.0 Ok", "250 2.1.5 Ok", "354 go ahead"):
            conn.line()
            conn.reply(answer)
        conn.read_data()
        conn.stall(late)
        conn.reply("250 2.0.0 Ok: queued as LATE")
        serve_normally(conn)

    rcpt = f"flo@dot.{B}"
    with on_one_port(at("127.0.0.246", late_reply)) as (port, (server,)):
        report, took = deliver_timed(resolver, port, rcpt)
        assert server.connections == 1
    outcome = report[rcpt]
    # Delivered, not deferred: a deferral here would be sent again (a duplicate).
    assert (outcome.status, outcome.queue_id) == (Status.DELIVERED, "LATE")
    assert took < late + SLACK


def test_quit_waits_no_longer_than_the_deadline(resolver: Resolver) -> None:
    def silent_quit(conn: Conn) -> None:
        greet_and_ehlo(conn, ("8BITMIME",))
        for answer in ("250 2.1.0 Ok", "250 2.1.5 Ok", "354 go ahead"):
            conn.line()
            conn.reply(answer)
        conn.read_data()
        conn.reply("250 2.0.0 Ok: queued as QUICK")
        conn.stall(30)  # QUIT (Timeouts.mta().quit: 20 s) is never answered

    rcpt = f"lou@ok.{B}"
    with on_one_port(at("127.0.0.249", silent_quit)) as (port, _):
        report, took = deliver_timed(resolver, port, rcpt)
    assert (report[rcpt].status, report[rcpt].queue_id) == (Status.DELIVERED, "QUICK")
    assert took < DEADLINE + SLACK


def test_no_second_transaction_starts_after_the_deadline(resolver: Resolver) -> None:
    # 101 recipients make two transactions (at most 100 each); the first
    # one's reply comes after the deadline (inside the floor), so the second
    # is never started and its recipient is deferred.
    def late_first_reply(conn: Conn) -> None:
        greet_and_ehlo(conn, ("8BITMIME",))
        conn.expect(b"MAIL")
        conn.reply("250 2.1.0 Ok")
        while conn.line().upper().startswith(b"RCPT"):
            conn.reply("250 2.1.5 Ok")
        conn.reply("354 go ahead")  # the line just read was DATA
        conn.read_data()
        conn.stall(DEADLINE + 1)
        conn.reply("250 2.0.0 Ok: queued as FIRST")
        serve_normally(conn)

    recipients = [f"r{n}@dot.{B}" for n in range(101)]
    with on_one_port(at("127.0.0.246", late_first_reply)) as (port, (server,)):
        report, took = deliver_timed(resolver, port, *recipients)
        wire = bytes(server.conns[0].received)
    assert wire.count(b"MAIL FROM") == 1
    assert [report[r].status for r in recipients[:100]] == [Status.DELIVERED] * 100
    last = report[recipients[100]]
    assert last.status is Status.DEFERRED and "time budget" in last.reason
    assert took < DEADLINE + 1 + SLACK


@pytest.mark.slow
def test_no_reply_to_the_final_dot_is_unknown_after_the_floor(resolver: Resolver) -> None:
    def silent_after_dot(conn: Conn) -> None:
        greet_and_ehlo(conn, ("8BITMIME",))
        for answer in ("250 2.1.0 Ok", "250 2.1.5 Ok", "354 go ahead"):
            conn.line()
            conn.reply(answer)
        conn.read_data()
        conn.stall(DATA_DONE_FLOOR + SLACK + 5)

    rcpt = f"gus@dot.{B}"
    with on_one_port(at("127.0.0.246", silent_after_dot)) as (port, _):
        report, took = deliver_timed(resolver, port, rcpt)
    outcome = report[rcpt]
    assert outcome.status is Status.UNKNOWN  # may have been delivered: never deferred
    assert isinstance(outcome.error, TimeoutError)
    assert took < DEADLINE + DATA_DONE_FLOOR + SLACK


def test_dns_lookups_count_against_the_deadline() -> None:
    # A nameserver that never answers: the resolver alone would wait its
    # 30-second lifetime for the _mta-sts TXT and again for the MX.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = Resolver(nameservers=["127.0.0.1"], port=silent.getsockname()[1], lifetime=30)
        rcpt = f"hal@nowhere.{B}"
        report, took = timed(lambda: deliver(message(rcpt), resolver=resolver, deadline=DEADLINE))
    assert took < DEADLINE + SLACK
    assert_deferred_by_the_budget(report, rcpt)


def test_the_mta_sts_fetch_counts_against_the_deadline(resolver: Resolver) -> None:
    def silent(conn: Conn) -> None:
        conn.stall(30)  # takes the TCP connection, never answers the TLS hello

    rcpt = f"ida@sts.{B}"
    with on_one_port(at("127.0.0.248", silent), at("127.0.0.247", normal)) as (
        port,
        (policy_host, mx),
    ):
        report, took = deliver_timed(
            resolver,
            port,
            rcpt,
            mta_sts_port=port,
            mta_sts_cache=PolicyCache(),
            mta_sts=True,
        )
        assert policy_host.connections == 1  # the fetch was under way
        assert mx.connections == 0  # and used up the budget
    assert took < DEADLINE + SLACK
    assert_deferred_by_the_budget(report, rcpt)


def test_redeliver_takes_a_deadline_of_its_own(resolver: Resolver) -> None:
    rcpt = f"ned@rcpt.{B}"
    options = {"resolver": resolver, "target_policy": "any", "mta_sts": False}
    with on_one_port(at("127.0.0.245", dripping_rcpt)) as (port, (server,)):
        first = deliver(message(rcpt), port=port, deadline=DEADLINE, **options)  # type: ignore[arg-type]
        assert first[rcpt].status is Status.DEFERRED
        report, took = timed(
            lambda: redeliver(first, message(rcpt), port=port, deadline=DEADLINE, **options)
        )
        assert server.connections == 2
    assert took < DEADLINE + SLACK
    assert report.attempt == 2
    assert_deferred_by_the_budget(report, rcpt)


# --- each attempt ------------------------------------------------------------------------


def slow_ehlo_then_slow_mail(conn: Conn) -> None:
    # Each reply alone fits in the total; EHLO and MAIL together do not.
    step = 0.65 * DEADLINE
    conn.reply("220 slow.test ESMTP")
    conn.expect(b"EHLO")
    conn.stall(step)
    conn.reply("250 slow.test")
    conn.expect(b"MAIL")
    conn.stall(step)
    conn.reply("250 2.1.0 Ok")
    serve_normally(conn)


def test_timeouts_total_bounds_each_attempt_and_the_next_host_delivers(
    resolver: Resolver,
) -> None:
    # One attempt is one budget, from connecting to the last reply: the
    # session's opening and its transaction do not each get a total afresh.
    per_attempt = dataclasses.replace(Timeouts.mta(), total=DEADLINE)
    rcpt = f"jo@ehlo.{B}"
    first_host = at("127.0.0.243", slow_ehlo_then_slow_mail)
    with on_one_port(first_host, at("127.0.0.244", normal)) as (
        port,
        (first, second),
    ):
        report, took = deliver_timed(
            resolver,
            port,
            rcpt,
            timeouts=per_attempt,
            deadline=None,
        )
        assert first.connections == 1 and second.connections == 1
    outcome = report[rcpt]
    assert (outcome.status, outcome.address) == (Status.DELIVERED, "127.0.0.244")
    trace = report.domains[f"ehlo.{B}"]
    assert b"MAIL FROM" in bytes(first.conns[0].received)  # it got as far as the transaction
    assert any(
        v.address == "127.0.0.243" and f"Timeouts.total={DEADLINE:g} s" in v.result
        for v in trace.visits
    )
    assert took < DEADLINE + SLACK


# --- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline", "error"),
    [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("5", TypeError)],
)
def test_a_bad_deadline_is_refused_before_anything(
    deadline: object, error: type[Exception]
) -> None:
    class NoDNS(Resolver):
        def mail_hosts(self, *args: object, **kwargs: object) -> list[object]:  # type: ignore[override]
            raise AssertionError("nothing may be looked up")

    with pytest.raises(error):
        deliver(message(f"kim@ok.{B}"), resolver=NoDNS(), deadline=deadline)  # type: ignore[arg-type]
