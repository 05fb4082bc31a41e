"""DeliveryReport and the retry advice of RFC 5321 §4.5.4.1, without sockets."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from smtpclient.delivery import RequireTLSUnavailable, deliver, redeliver
from smtpclient.errors import ServerDisconnected
from smtpclient.eyeballs import Attempt
from smtpclient.protocol.reply import Reply
from smtpclient.report import (
    GIVE_UP_AFTER,
    DeliveryReport,
    DomainTrace,
    Outcome,
    Status,
    suggest_retry,
)
from smtpclient.targets import Target

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "elapsed", "wait"),
    [
        (1, timedelta(0), timedelta(minutes=30)),  # at least 30 minutes apart
        (2, timedelta(minutes=30), timedelta(minutes=30)),  # two attempts in the first hour
        (3, timedelta(hours=1), timedelta(hours=2)),  # then every two hours...
        (8, timedelta(hours=23), timedelta(hours=2)),
        (12, timedelta(days=2), timedelta(hours=3)),  # ...and three after the first day
        (40, timedelta(days=4, hours=20), timedelta(hours=3)),
    ],
)
def test_retry_schedule(attempt: int, elapsed: timedelta, wait: timedelta) -> None:
    now = T0 + elapsed
    assert suggest_retry(attempt, T0, now) == now + wait


def test_retry_stops_after_five_days() -> None:
    assert suggest_retry(50, T0, T0 + GIVE_UP_AFTER - timedelta(hours=1)) is None
    assert timedelta(days=5) == GIVE_UP_AFTER


def _outcome(recipient: str, status: Status, **details: object) -> Outcome:
    return Outcome(recipient, status, recipient.rpartition("@")[2], **details)  # type: ignore[arg-type]


def _report() -> DeliveryReport:
    outcomes = (
        _outcome("a@x.test", Status.DELIVERED, reply=Reply.build(250, "ok", "2.0.0")),
        _outcome("b@x.test", Status.DEFERRED, retry_after=T0 + timedelta(minutes=30)),
        _outcome("c@y.test", Status.FAILED, reply=Reply.build(550, "no", "5.1.1")),
        _outcome(
            "d@y.test", Status.UNKNOWN, error=ServerDisconnected("gone", outcome_unknown=True)
        ),
        _outcome("e@y.test", Status.DEFERRED, retry_after=T0 + timedelta(minutes=40)),
    )
    trace = DomainTrace(
        "x.test",
        (Target("mx.x.test", 10, "127.0.0.1"),),
        (Attempt("127.0.0.1", 25, 0.0, 0.001, "connected"),),
    )
    return DeliveryReport("s@z.test", outcomes, {"x.test": trace}, first_attempt=T0)


def test_report_groups_outcomes_by_status() -> None:
    report = _report()
    assert [o.recipient for o in report.delivered] == ["a@x.test"]
    assert [o.recipient for o in report.deferred] == ["b@x.test", "e@y.test"]
    assert report["c@y.test"].enhanced == "5.1.1"
    assert report["c@y.test"].final and not report["d@y.test"].final
    assert not report.complete
    assert report.next_retry == T0 + timedelta(minutes=30)
    assert report.expires == T0 + GIVE_UP_AFTER
    assert report.summary() == "5 recipients: 1 delivered, 2 deferred, 1 failed, 1 unknown"
    assert report.domains["x.test"].tried == ("127.0.0.1",)
    with pytest.raises(KeyError):
        report["nobody@x.test"]


def test_retry_goes_to_deferred_only_unless_unknown_is_asked_for() -> None:
    report = _report()
    assert report.retry_recipients() == ("b@x.test", "e@y.test")
    assert report.retry_recipients(include_unknown=True) == ("b@x.test", "d@y.test", "e@y.test")


def test_merged_replaces_only_the_retried_recipients() -> None:
    report = _report()
    newer = DeliveryReport(
        "s@z.test",
        (_outcome("b@x.test", Status.DELIVERED), _outcome("e@y.test", Status.FAILED)),
        attempt=2,
        first_attempt=T0 + timedelta(hours=1),
    )
    merged = report.merged(newer)
    assert [o.recipient for o in merged] == [o.recipient for o in report]
    assert [o.status for o in merged] == [
        Status.DELIVERED,
        Status.DELIVERED,
        Status.FAILED,
        Status.UNKNOWN,
        Status.FAILED,
    ]
    assert merged.attempt == 2 and merged.first_attempt == T0
    assert merged.domains["x.test"] is report.domains["x.test"]


def test_report_pickles() -> None:
    report = _report()
    copy = pickle.loads(pickle.dumps(report))
    assert copy.outcomes == report.outcomes
    assert copy["d@y.test"].error is not None and copy["d@y.test"].error.outcome_unknown


@pytest.mark.parametrize(
    "options",
    [{"requiretls": True}, {"mail_options": ["REQUIRETLS"]}, {"mail_options": ["requiretls"]}],
)
def test_requiretls_is_refused_for_mx_delivery(options: dict[str, object]) -> None:
    # RFC 8689 §4.2.1: only to MX hosts validated by DNSSEC or MTA-STS.
    with pytest.raises(RequireTLSUnavailable, match="8689"):
        deliver(b"x", sender="s@z.test", recipients=["a@x.test"], **options)  # type: ignore[arg-type]
    assert issubclass(RequireTLSUnavailable, ValueError)


@pytest.mark.parametrize(
    ("content", "options", "error"),
    [
        (iter([b"one-shot"]), {"sender": "s@z.test", "recipients": ["a@x.test"]}, TypeError),
        (b"raw", {"recipients": ["a@x.test"]}, ValueError),  # no sender
        (b"raw", {"sender": "s@z.test", "recipients": []}, ValueError),
        (b"raw", {"sender": "s@z.test", "recipients": ["a@x.test"], "max_sessions": 0}, ValueError),
        (b"raw", {"sender": "s@z.test", "recipients": ["a@x.test"], "port": 0}, ValueError),
        (
            b"raw",
            {"sender": "s@z.test", "recipients": ["a@x.test"], "target_policy": "all"},
            ValueError,
        ),
        (b"raw", {"sender": "s@z.test", "recipients": ["a@x.test"], "mta_sts_port": 0}, ValueError),
    ],
)
def test_bad_arguments_raise_before_anything_is_sent(
    content: object, options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        deliver(content, **options)  # type: ignore[arg-type]


def test_redeliver_with_nothing_to_retry_returns_the_report() -> None:
    report = DeliveryReport("s@z.test", (_outcome("a@x.test", Status.DELIVERED),))
    assert redeliver(report, b"x") is report
    with pytest.raises(TypeError):
        redeliver(_report(), b"x", recipients=["a@x.test"])
