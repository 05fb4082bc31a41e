"""Direct delivery: every recipient's outcome, the retry helper, and TLS policy.

Knot DNS resolves the scenario domains of tests/servers/zones/example.test.zone
to 127.0.0.x; real (aiosmtpd) and scripted SMTP servers answer there.
"""

from __future__ import annotations

import dataclasses
import io
import ssl
import threading
from collections.abc import Callable

import pytest
from servers.certs import TestCertificates
from servers.knot import KnotServer
from servers.multihome import Refusing, on_one_port
from servers.scripted import Conn, greet_and_ehlo
from servers.smtpd import AiosmtpdServer

from smtpclient import Resolver, TLSMode, deliver
from smtpclient.delivery import redeliver
from smtpclient.report import Status
from smtpclient.timeouts import DATA_DONE_FLOOR

from .test_delivery import TIMEOUTS, Z, message, mta, rcpt_lines, scripted, smtpd

pytestmark = pytest.mark.knot


@pytest.fixture
def resolver(knot: KnotServer) -> Resolver:
    return Resolver(nameservers=[knot.host], port=knot.port, lifetime=5)


def by_local_part(address: str) -> str:
    local = address.split("@", maxsplit=1)[0]
    if local.startswith("gone"):
        return "550 5.1.1 no such user"
    if local.startswith("later"):
        return "450 4.2.1 mailbox busy"
    return "250 2.1.5 Ok"


def test_each_recipient_gets_its_own_outcome(resolver: Resolver) -> None:
    recipients = [f"ok@rcpts.{Z}", f"gone@rcpts.{Z}", f"later@rcpts.{Z}"]
    with on_one_port(scripted("127.0.0.151", mta(rcpt=by_local_part))) as (port, (server,)):
        report = deliver(
            message(*recipients),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
    ok, gone, later = (report[r] for r in recipients)
    assert (ok.status, ok.queue_id, ok.address, ok.code) == (
        Status.DELIVERED,
        "Q1",
        "127.0.0.151",
        250,
    )
    assert (gone.status, gone.enhanced) == (Status.FAILED, "5.1.1")
    assert (later.status, later.enhanced) == (Status.DEFERRED, "4.2.1")
    assert later.retry_after is not None
    assert (
        len(report) == 3 and report.summary() == "3 recipients: 1 delivered, 1 deferred, 1 failed"
    )
    assert server.connections == 1


def test_lost_after_the_final_dot_is_unknown_and_never_sent_again(resolver: Resolver) -> None:
    with on_one_port(scripted("127.0.0.161", mta(data=None)), smtpd("127.0.0.162")) as (
        port,
        (first, second),
    ):
        report = deliver(
            message(f"fay@lost.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        outcome = report[f"fay@lost.{Z}"]
        assert outcome.status is Status.UNKNOWN
        assert outcome.error is not None and outcome.error.outcome_unknown
        assert second.recorder.connections == 0  # not re-sent to the next MX
        options = {"resolver": resolver, "port": port, "timeouts": TIMEOUTS}
        assert redeliver(report, message(f"fay@lost.{Z}"), **options, target_policy="any") is report
        assert first.connections == 1
        again = redeliver(
            report, message(f"fay@lost.{Z}"), include_unknown=True, **options, target_policy="any"
        )
        assert first.connections == 2 and second.recorder.connections == 0
    assert again.attempt == 2 and again[f"fay@lost.{Z}"].status is Status.UNKNOWN


@pytest.mark.slow
def test_timeout_after_the_final_dot_is_unknown(resolver: Resolver) -> None:
    def stall_after_dot(conn: Conn) -> None:
        greet_and_ehlo(conn, ())
        for answer in ("250 2.1.0 Ok", "250 2.1.5 Ok", "354 go ahead"):
            conn.line()
            conn.reply(answer)
        conn.read_data()
        conn.stall(DATA_DONE_FLOOR + 5)

    timeouts = dataclasses.replace(TIMEOUTS, data_done=DATA_DONE_FLOOR)
    with on_one_port(scripted("127.0.0.161", stall_after_dot), smtpd("127.0.0.162")) as (
        port,
        (_, second),
    ):
        report = deliver(
            message(f"gil@lost.{Z}"),
            resolver=resolver,
            port=port,
            timeouts=timeouts,
            target_policy="any",
        )
        assert second.recorder.connections == 0
    outcome = report[f"gil@lost.{Z}"]
    assert outcome.status is Status.UNKNOWN
    assert isinstance(outcome.error, TimeoutError)


def test_retry_helper_resends_only_to_deferred_recipients(resolver: Resolver) -> None:
    calls = {"count": 0}
    lock = threading.Lock()

    def flaky(conn: Conn) -> None:
        with lock:
            calls["count"] += 1
            first = calls["count"] == 1
        later = "450 4.2.1 busy" if first else "250 2.1.5 Ok"
        mta(rcpt=lambda a: later if a.startswith("bea") else "250 2.1.5 Ok")(conn)

    recipients = [f"abe@retry.{Z}", f"bea@retry.{Z}", f"cal@lost.{Z}"]
    with on_one_port(
        scripted("127.0.0.171", flaky),
        scripted("127.0.0.161", mta(data=None)),
        smtpd("127.0.0.162"),
    ) as (port, (retry_host, lost_host, _)):
        options = {"resolver": resolver, "port": port, "timeouts": TIMEOUTS}
        report = deliver(message(*recipients), **options, target_policy="any")
        assert [o.status for o in report] == [Status.DELIVERED, Status.DEFERRED, Status.UNKNOWN]
        assert report.retry_recipients() == (f"bea@retry.{Z}",)
        again = redeliver(report, message(*recipients), **options, target_policy="any")
        assert lost_host.connections == 1  # the unknown one was not retried
        assert retry_host.connections == 2
        assert rcpt_lines(retry_host)[-1] == f"RCPT TO:<bea@retry.{Z}>".encode()
        assert len(rcpt_lines(retry_host)) == 3  # abe, bea; then bea alone
    assert [o.status for o in again] == [Status.DELIVERED, Status.DELIVERED, Status.UNKNOWN]
    assert again.attempt == 2 and again.first_attempt == report.first_attempt
    assert again.complete is False and again[f"abe@retry.{Z}"] == report[f"abe@retry.{Z}"]


def test_a_file_goes_whole_to_every_domain(resolver: Resolver) -> None:
    content = io.BytesIO(b"Subject: file\r\n\r\n" + b"line\r\n" * 5000)
    with on_one_port(smtpd("127.0.0.181"), smtpd("127.0.0.182")) as (port, (second, third)):
        report = deliver(
            content,
            sender="s@origin.test",
            recipients=[f"a@second.{Z}", f"b@third.{Z}"],
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert [len(m.content) for m in second.messages + third.messages] == [
            len(content.getvalue())
        ] * 2
    assert report.complete and content.tell() == 0


# --- TLS ---------------------------------------------------------------------------------


def tls_server(certs: TestCertificates) -> Callable[[int], AiosmtpdServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    return lambda port: AiosmtpdServer(host="127.0.0.1", port=port, tls_context=context)


@pytest.mark.parametrize("trusted", [False, True])
def test_opportunistic_tls_encrypts_and_records_verification(
    resolver: Resolver, server_certs: TestCertificates, trusted: bool
) -> None:
    context = server_certs.client_context() if trusted else None
    with on_one_port(lambda port: Refusing("::1", port), tls_server(server_certs)) as (
        port,
        (_, server),
    ):
        report = deliver(
            message(f"tls@{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            ssl_context=context,
            target_policy="any",
        )
        assert len(server.messages) == 1
    outcome = report[f"tls@{Z}"]
    assert outcome.status is Status.DELIVERED
    assert outcome.tls is not None and outcome.tls.version.startswith("TLSv1.")
    assert outcome.tls.verified is trusted  # Postfix "may": encrypted even when unverified
    assert (outcome.tls.verify_error is None) is trusted
    assert outcome.tls.server_hostname == f"mail.{Z}"  # SNI and checks use the MX name


def test_opportunistic_tls_falls_back_to_plaintext_on_a_new_connection(
    resolver: Resolver,
) -> None:
    broken_tls = mta(extensions=("8BITMIME", "STARTTLS"))
    with on_one_port(lambda port: Refusing("::1", port), scripted("127.0.0.1", broken_tls)) as (
        port,
        (_, server),
    ):
        report = deliver(
            message(f"tls@{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            target_policy="any",
        )
        assert server.connections == 2
        assert b"STARTTLS" not in bytes(server.conns[1].received)  # plaintext, as Postfix "may"
    outcome = report[f"tls@{Z}"]
    assert outcome.status is Status.DELIVERED and outcome.tls is None
    visits = report.domains[Z].visits
    assert "plaintext" in visits[0].result and visits[-1].result == "delivered 1"
    assert report.domains[Z].tried == ("::1", "127.0.0.1", "127.0.0.1")


def test_required_tls_without_starttls_defers(resolver: Resolver) -> None:
    with on_one_port(
        lambda port: Refusing("::1", port), lambda port: AiosmtpdServer(host="127.0.0.1", port=port)
    ) as (port, (_, server)):
        report = deliver(
            message(f"tls@{Z}"),
            resolver=resolver,
            port=port,
            timeouts=TIMEOUTS,
            tls=TLSMode.STARTTLS,
            target_policy="any",
        )
        assert server.messages == []
    outcome = report[f"tls@{Z}"]
    assert outcome.status is Status.DEFERRED and "STARTTLS" in outcome.reason
