"""When a Mailer may send a message again: ``RetryPolicy`` and the rules for
a connection that died under a message.

Off by default: a web request usually wants to hear at once that the mail
server is unhappy and queue the work elsewhere.  When given, only transient
errors whose outcome is known are retried -- never a message that may
already have been delivered (``outcome_unknown``), never a permanent
refusal, and never an error that waiting cannot fix (a certificate that
does not verify, TLS that is not offered, the pool's own checkout timeout).

Separately, the helpers below say when a failure proves that nothing of a
message was delivered (a pooled connection found closed at MAIL, a message
a batch never reached), and whether its content can be sent twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import Message

from smtpclient.body import Body
from smtpclient.errors import (
    CertificateVerifyError,
    NotSentError,
    PoolTimeout,
    ServerDisconnected,
    ServiceClosing,
    SMTPClientError,
    TLSRequiredError,
    TransientError,
)
from smtpclient.protocol.state import Stage

__all__ = ["RetryPolicy", "closed_while_idle", "never_sent", "resendable"]

_HOPELESS: tuple[type[SMTPClientError], ...] = (
    CertificateVerifyError,
    TLSRequiredError,
    PoolTimeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient failures *attempts* times with exponential backoff.

    The wait before retry *n* (1-based) is ``backoff * multiplier ** (n - 1)``
    seconds, capped at ``max_backoff``, then spread by up to ``jitter`` (a
    fraction) either way so that many threads do not retry in step.  The
    wait blocks the calling thread: keep it short in a web request.

    Raises:
        ValueError: a negative or otherwise impossible setting.
    """

    attempts: int = 2
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 0:
            raise ValueError(f"attempts must be an int >= 0, not {self.attempts!r}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None) -> RetryPolicy | None:
        """Accept a policy, a number of attempts (default backoff), or None (off).

        Raises:
            TypeError: *value* is none of these.
        """
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(attempts=value)
        raise TypeError(f"retry must be a RetryPolicy, an int or None, not {type(value).__name__}")

    def allows(self, error: BaseException, retries_done: int) -> bool:
        """True when *error* is worth another try after *retries_done* retries."""
        return (
            retries_done < self.attempts
            and isinstance(error, TransientError)
            and not error.outcome_unknown
            and not isinstance(error, _HOPELESS)
        )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number *retry* (1-based)."""
        base = min(self.backoff * self.multiplier ** max(retry - 1, 0), self.max_backoff)
        if not self.jitter:
            return base
        spread = base * self.jitter
        return max(0.0, base + random.uniform(-spread, spread))  # noqa: S311 (not crypto)


# Failing here, nothing of the message has reached a recipient yet.
_BEFORE_RECIPIENTS = frozenset({Stage.MAIL, Stage.RSET, Stage.COMMAND})


def closed_while_idle(error: SMTPClientError) -> bool:
    """A hang-up or 421 before any recipient could have been accepted."""
    return (
        isinstance(error, (ServerDisconnected, ServiceClosing))
        and not error.outcome_unknown
        and error.stage in _BEFORE_RECIPIENTS
    )


def never_sent(error: SMTPClientError) -> bool:
    """``Session.send_many``'s outcome for a message it did not get to
    because the connection failed before it."""
    return isinstance(error, NotSentError)


def resendable(data: object) -> bool:
    """Can this content be sent a second time (not a one-shot iterable)?"""
    if isinstance(data, Message):
        return True
    if isinstance(data, tuple) and len(data) == 3:
        data = data[2]
    if isinstance(data, (bytes, str)):
        return True
    try:
        return Body(data).reusable  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # sending reports the problem; a retry would repeat it
