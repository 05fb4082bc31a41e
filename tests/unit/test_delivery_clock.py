"""``DeliveryClock``: the whole call's budget, each attempt's share of it, and
the context variable through which the engine, DNS and MTA-STS see it."""

from __future__ import annotations

import time

import pytest

from smtpclient.delivery_settings import DeliveryClock, time_left
from smtpclient.protocol.state import Stage
from smtpclient.session.budget import CALL_DEADLINE
from smtpclient.timeouts import Deadline


def test_without_a_deadline_nothing_is_bounded() -> None:
    clock = DeliveryClock()
    assert not clock.expired
    with clock.domain():
        assert CALL_DEADLINE.get() is None
        with clock.attempt(None) as deadline:
            assert deadline is None and CALL_DEADLINE.get() is None
        with clock.attempt(30) as deadline:
            assert deadline is not None and CALL_DEADLINE.get() is deadline
            assert 0 < deadline.expires - time.monotonic() <= 30
        assert CALL_DEADLINE.get() is None  # the attempt's limit is gone again


def test_an_attempt_never_outlasts_the_call() -> None:
    clock = DeliveryClock(5)
    assert clock.overall is not None
    with clock.domain():
        assert CALL_DEADLINE.get() is clock.overall
        with clock.attempt(600) as deadline:  # longer than the call: capped
            assert deadline is not None and deadline.expires == clock.overall.expires
        with clock.attempt(1) as deadline:  # shorter: its own
            assert deadline is not None and deadline.expires < clock.overall.expires
        with clock.attempt(None) as deadline:  # none of its own: the call's
            assert deadline is clock.overall
    assert CALL_DEADLINE.get() is None


def test_the_budget_runs_out_and_says_so() -> None:
    clock = DeliveryClock(0.01)
    time.sleep(0.05)  # sleeps at least this long, however loaded the machine
    assert clock.expired
    assert clock.ran_out() == "the time budget of this delivery (deadline=0.01 s) ran out"
    with clock.attempt(60) as deadline:
        assert deadline is not None and deadline.expired


def test_time_left() -> None:
    assert time_left(None, 7.0) == 7.0
    assert time_left(Deadline(600, Stage.CONNECT), 7.0) == 7.0
    assert 0 < time_left(Deadline(5, Stage.CONNECT), 600.0) <= 5
    passed = Deadline(0.01, Stage.CONNECT)
    time.sleep(0.05)
    assert time_left(passed, 7.0) == 0.0


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("3", TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_deadline_is_refused(seconds: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        DeliveryClock(seconds)  # type: ignore[arg-type]
