"""The rate limiter's arithmetic, on a fake clock (no sleeping, no sockets)."""

from __future__ import annotations

import pytest

from smtpclient.errors import (
    ServiceClosing,
    TransientGreetingRefused,
    TransientSenderRefused,
)
from smtpclient.pool import SessionPool
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.ratelimit import RateLimit, SendLimits, TokenBucket, server_is_busy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_serves_a_burst_then_spaces_reservations_in_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 3, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(6)]
    # three from the full bucket, then one every 0.1 s, each after the last
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_bucket_refills_only_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 2, clock=clock, sleep=clock.sleep)
    clock.now += 60  # a long quiet spell saves at most `burst` tokens
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.1])


def test_bucket_never_lets_more_than_rate_times_time_plus_burst_start() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20.0, 4, clock=clock, sleep=clock.sleep)
    starts = []
    for number in range(200):
        if number % 7 == 0:
            clock.now += 0.13  # irregular arrivals of work
        bucket.take(1 + number % 3)
        starts.append((clock.now, 1 + number % 3))
    for i, (first, _) in enumerate(starts):
        for last, _ in starts[i:]:
            count = sum(n for t, n in starts if first <= t <= last)
            assert count <= 20.0 * (last - first) + 4 + 2  # + the largest single take - 1
    assert starts[-1][0] - starts[0][0] > 0


@pytest.mark.parametrize("value", ["fast", True, [5]])
def test_a_rate_limit_of_the_wrong_type_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="rate_limit must be"):
        RateLimit.coerce(value)  # type: ignore[arg-type]


def test_bad_rate_limit_values_raise_value_error() -> None:
    for kwargs in (
        {"per_second": 0.0},
        {"per_second": float("nan")},
        {"burst": 0},
        {"busy_cooldown": -1.0},
    ):
        with pytest.raises(ValueError, match="must be"):
            RateLimit(**kwargs)  # type: ignore[arg-type]


def test_a_number_is_messages_per_second() -> None:
    assert RateLimit.coerce(5) == RateLimit(per_second=5.0)
    assert RateLimit.coerce(None).per_second is None


@pytest.mark.parametrize(
    ("error", "busy"),
    [
        (
            TransientGreetingRefused(reply=Reply(421, ("4.7.0 Try later",)), stage=Stage.GREETING),
            True,
        ),
        (
            ServiceClosing(
                reply=Reply(421, ("4.7.0 Too many concurrent SMTP connections",)), stage=Stage.MAIL
            ),
            True,
        ),
        (
            TransientSenderRefused(
                reply=Reply(451, ("4.7.1 Throttled: sending rate limit exceeded",)),
                stage=Stage.MAIL,
            ),
            True,
        ),
        (
            TransientSenderRefused(
                reply=Reply(421, ("4.7.0 Too many open sessions",)), stage=Stage.MAIL
            ),
            True,
        ),
        # a transaction limit, not a rate: split the recipients instead
        (
            TransientSenderRefused(
                reply=Reply(452, ("4.5.3 Too many recipients",)), stage=Stage.RCPT
            ),
            False,
        ),
        # an idle pooled connection timed out by the server: not a busy server
        (
            ServiceClosing(reply=Reply(421, ("4.4.2 Error: timeout exceeded",)), stage=Stage.MAIL),
            False,
        ),
        (TransientSenderRefused(reply=Reply(451, ("4.3.0 Local error",)), stage=Stage.MAIL), False),
        (
            TransientSenderRefused(
                reply=Reply(550, ("5.7.1 Too many bad recipients",)), stage=Stage.MAIL
            ),
            False,
        ),
        (ValueError("too many"), False),
    ],
)
def test_which_replies_mean_the_server_is_busy(error: Exception, busy: bool) -> None:
    assert server_is_busy(error) is busy


def test_busy_server_halves_concurrency_once_per_spell_then_grows_back() -> None:
    clock = FakeClock()
    pool = SessionPool(max_connections=8)  # none established: halving alone
    limits = SendLimits(RateLimit(busy_cooldown=10), pool, clock=clock)
    busy = ServiceClosing(reply=Reply(421, ("4.7.0 Too many connections",)), stage=Stage.MAIL)
    limits.observe(busy)
    limits.observe(busy)  # the same spell, seen on another connection
    assert limits.allowed == 4
    clock.now += 2
    limits.observe(busy)  # a new spell
    assert limits.allowed == 2
    clock.now += 9.9
    assert limits.allowed == 2  # still cooling down
    clock.now += 0.2
    assert limits.allowed == 3
    clock.now += 5
    assert limits.allowed == 4
    for _ in range(10):
        clock.now += 5
        limits.allowed  # noqa: B018 (reading it lets it grow)
    assert limits.allowed == 8  # never above the ceiling


def test_a_batch_carries_at_most_one_burst_under_a_rate() -> None:
    pool = SessionPool(max_connections=2)
    assert SendLimits(RateLimit(per_second=5, burst=3), pool).room(100) == 3
    assert SendLimits(RateLimit(), pool).room(100) == 100
