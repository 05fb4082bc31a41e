"""The Celery task's payload and verdicts, without Celery or a server: what
travels (JSON only), what is retried, and what each result dict says."""

from __future__ import annotations

import json
from email.message import EmailMessage

import pytest

from smtpclient.contrib.celery_payload import Job, RetrySchedule, encode, judge_error, judge_result
from smtpclient.errors import (
    CertificateVerifyError,
    PermanentRecipientsRefused,
    PermanentSenderRefused,
    ServerDisconnected,
    SMTPTimeoutError,
    TransientRecipientsRefused,
    TransientSenderRefused,
)
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult

OK = Reply(250, ("2.1.5 Ok",))
QUEUED = Reply(250, ("2.0.0 Ok: queued as ABC123",))
BUSY = Reply(451, ("4.2.1 Mailbox busy",))
GONE = Reply(550, ("5.1.1 No such user",))
SCHEDULE = RetrySchedule(attempts=3, jitter=0)


def job(*recipients: str, attempt: int = 1) -> Job:
    return Job("s@example.test", recipients, b"Subject: x\r\n\r\nx\r\n", "<id@x>", attempt=attempt)


def test_message_gets_a_message_id_and_loses_its_bcc() -> None:
    message = EmailMessage()
    message["From"] = "Sender <s@example.test>"
    message["To"] = "a@example.test"
    message["Bcc"] = "hidden@example.test"
    message.set_content("hello\n")
    encoded = encode(message)
    assert encoded.sender == "s@example.test"
    assert encoded.recipients == ("a@example.test", "hidden@example.test")
    assert b"hidden" not in encoded.data
    assert encoded.message_id is not None
    assert f"Message-ID: {encoded.message_id}\r\n".encode() in encoded.data
    assert "Message-ID" not in message  # the caller's message is not changed


def test_raw_data_keeps_its_message_id_or_gets_one_in_front() -> None:
    raw = b"Message-ID: <kept@example.test>\r\nSubject: a\r\n\r\nbody\r\n"
    assert encode(("s@example.test", "r@example.test", raw)).data == raw
    assert encode(("s@example.test", ["r@example.test"], raw)).message_id == "<kept@example.test>"
    bare = b"Subject: a\r\n\r\nMessage-ID: <in-the-body@x>\r\n"
    added = encode(("s@example.test", ["r@example.test"], bare))
    assert added.message_id != "<in-the-body@x>"
    assert added.data == f"Message-ID: {added.message_id}\r\n".encode() + bare


def test_payload_is_plain_json_and_round_trips() -> None:
    original = Job(
        "s@example.test",
        ("a@example.test", "b@example.test"),
        bytes(range(256)),
        "<id@x>",
        smtputf8=True,
        attempt=2,
        accepted=("c@example.test",),
        refused={"d@example.test": (550, "5.1.1 No")},
    )
    wire = json.loads(json.dumps(original.to_payload()))
    assert Job.from_payload(wire) == original


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"recipients": "a@example.test"},
        {"recipients": []},
        {"data": "not base64!"},
        {"sender": None},
        {"refused": {"a@example.test": [550]}},
        {"attempt": 0},
        {"message_id": 5},
    ],
)
def test_malformed_payload_is_a_value_error(change: dict[str, object]) -> None:
    payload = {**job("a@example.test").to_payload(), **change}
    with pytest.raises(ValueError, match="payload"):
        Job.from_payload(payload)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("text", TypeError),
        (("s@x", ["r@x"], "str data"), TypeError),
        (("s@x", [], b"x"), ValueError),
    ],
)
def test_what_cannot_be_queued(message: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(message)  # type: ignore[arg-type]


def test_delays_double_and_stay_below_half_the_visibility_timeout() -> None:
    schedule = RetrySchedule(first_delay=1.0, max_delay=100.0, jitter=0)
    assert [schedule.delay(n, 3600) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert schedule.delay(20, 3600) == 100.0
    assert schedule.delay(20, 60) == 30.0
    jittered = RetrySchedule(first_delay=10.0, jitter=0.5)
    assert all(5.0 <= jittered.delay(1, 3600) <= 15.0 for _ in range(50))
    assert all(jittered.delay(9, 40) <= 20.0 for _ in range(50))


def test_only_recipients_refused_with_4xx_are_retried() -> None:
    result = SendResult(
        "s@example.test",
        ("a@x", "b@x", "c@x"),
        accepted={"a@x": OK},
        refused={"b@x": BUSY, "c@x": GONE},
        data_replies=(QUEUED,),
        host="mx.test",
    )
    verdict = judge_result(job("a@x", "b@x", "c@x"), result, SCHEDULE)
    assert verdict.retry == ("b@x",)
    assert verdict.job.accepted == ("a@x",)
    assert verdict.job.refused == {"c@x": (550, "5.1.1 No such user")}
    # the last attempt: the 4xx recipient ends refused with its reply
    last = judge_result(job("a@x", "b@x", "c@x", attempt=3), result, SCHEDULE)
    assert last.retry == ()
    assert last.result["status"] == "sent"
    assert last.result["refused"] == {
        "b@x": [451, "4.2.1 Mailbox busy"],
        "c@x": [550, "5.1.1 No such user"],
    }
    assert last.result["queue_id"] == "ABC123"
    assert last.result["reply"] == [250, "2.0.0 Ok: queued as ABC123"]
    assert last.result["attempts"] == 3
    assert json.loads(json.dumps(last.result)) == last.result


def test_unknown_outcome_is_never_retried() -> None:
    lost = ServerDisconnected("lost after the dot", stage=Stage.DATA_DONE, outcome_unknown=True)
    verdict = judge_error(job("a@x"), lost, SCHEDULE)
    assert verdict.retry == ()
    assert verdict.result["status"] == "unknown"
    assert verdict.result["accepted"] == []


@pytest.mark.parametrize(
    "error",
    [
        TransientSenderRefused(reply=Reply(451, ("4.3.2 later",)), stage=Stage.MAIL),
        SMTPTimeoutError("slow", stage=Stage.RCPT),
        ServerDisconnected("gone", stage=Stage.MAIL),
    ],
)
def test_transient_failure_retries_everyone_then_fails_with_the_last_reply(
    error: Exception,
) -> None:
    assert judge_error(job("a@x", "b@x"), error, SCHEDULE).retry == ("a@x", "b@x")
    final = judge_error(job("a@x", "b@x", attempt=3), error, SCHEDULE)
    assert final.retry == ()
    assert final.result["status"] == "failed"
    assert final.result["error"] == str(error)
    assert set(final.result["refused"]) == {"a@x", "b@x"}


def test_permanent_and_hopeless_failures_fail_at_once() -> None:
    refused = PermanentSenderRefused(reply=Reply(553, ("5.7.1 Sender rejected",)), stage=Stage.MAIL)
    verdict = judge_error(job("a@x"), refused, SCHEDULE)
    assert verdict.retry == ()
    assert verdict.result["status"] == "failed"
    assert verdict.result["reply"] == [553, "5.7.1 Sender rejected"]
    assert verdict.result["refused"] == {"a@x": [553, "5.7.1 Sender rejected"]}
    untrusted = CertificateVerifyError("certificate verify failed", stage=Stage.STARTTLS)
    assert judge_error(job("a@x"), untrusted, SCHEDULE).retry == ()
    assert judge_error(job("a@x"), ValueError("bad address"), SCHEDULE).result["status"] == "failed"


def test_all_refused_mixed_retries_the_4xx_ones_only() -> None:
    partial = SendResult("s@example.test", ("a@x", "b@x"), refused={"a@x": BUSY, "b@x": GONE})
    for cls in (TransientRecipientsRefused, PermanentRecipientsRefused):
        error = cls(reply=BUSY, stage=Stage.RCPT, result=partial, recipients=partial.refused)
        verdict = judge_error(job("a@x", "b@x"), error, SCHEDULE)
        assert verdict.retry == ("a@x",)
        assert verdict.job.refused == {"b@x": (550, "5.1.1 No such user")}


def test_earlier_accepted_recipients_keep_the_status_sent() -> None:
    earlier = Job("s@x", ("b@x",), b"x", attempt=3, accepted=("a@x",))
    error = TransientSenderRefused(reply=Reply(451, ("4.3.2 later",)), stage=Stage.MAIL)
    verdict = judge_error(earlier, error, SCHEDULE)
    assert verdict.result["status"] == "sent"
    assert verdict.result["accepted"] == ["a@x"]
    assert verdict.result["refused"] == {"b@x": [451, "4.3.2 later"]}
