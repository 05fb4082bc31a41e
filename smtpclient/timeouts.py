"""Per-stage deadlines (RFC 5321 §4.5.3.2) and the monotonic clock that enforces them.

A ``Timeouts`` holds one limit per stage.  A ``Deadline`` is one such limit
started on the monotonic clock: it covers the *whole* reply or write it
guards, so a server dripping one byte a second still times out when the
stage's time is up.  The optional ``total`` bounds a whole send (connect to
final reply) on top of the per-stage limits.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from smtpclient.errors import SMTPTimeoutError
from smtpclient.protocol.state import Stage

__all__ = ["DATA_DONE_FLOOR", "Deadline", "Timeouts"]

# A short wait after the final "." is how duplicates are made: the server
# may still accept the message after we gave up and will retry.  RFC 5321
# asks for 10 minutes; we never wait less than this.
DATA_DONE_FLOOR = 10.0

_STAGE_FIELDS = {
    Stage.DNS: "dns",
    Stage.CONNECT: "connect",
    Stage.GREETING: "greeting",
    Stage.EHLO: "ehlo",
    Stage.STARTTLS: "starttls",
    Stage.AUTH: "auth",
    Stage.MAIL: "mail",
    Stage.RCPT: "rcpt",
    Stage.DATA_INIT: "data_init",
    Stage.DATA_BLOCK: "data_block",
    Stage.DATA_DONE: "data_done",
    Stage.RSET: "rset",
    Stage.QUIT: "quit",
    Stage.COMMAND: "rset",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each stage; ``total`` (or None) bounds a whole send.

    Use ``Timeouts.submission()`` (the default for sessions and the Mailer)
    or ``Timeouts.mta()`` (RFC 5321 minimums, the default for direct MX
    delivery), and ``dataclasses.replace`` to change single fields.  Any API
    taking a ``Timeouts`` also takes a plain number, meaning "this many
    seconds for every stage" (``data_done`` still keeps its floor).

    Raises:
        ValueError: a value is not positive, or ``data_done`` is below
            ``DATA_DONE_FLOOR``.
    """

    dns: float = 15.0
    connect: float = 15.0  # per address tried
    connect_total: float = 45.0  # all addresses of one host together
    greeting: float = 30.0
    ehlo: float = 30.0
    starttls: float = 30.0
    auth: float = 30.0
    mail: float = 30.0
    rcpt: float = 30.0
    data_init: float = 30.0
    data_block: float = 30.0  # each block of content written
    data_done: float = 60.0  # wait for the reply to the final "." / BDAT LAST
    rset: float = 15.0
    quit: float = 5.0  # the QUIT reply is a courtesy: never wait long
    total: float | None = 120.0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "total":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"Timeouts.{item.name} must be a number, not {value!r}")
            if not value > 0 or math.isnan(value):
                raise ValueError(f"Timeouts.{item.name} must be positive, not {value!r}")
        if self.data_done < DATA_DONE_FLOOR:
            raise ValueError(
                f"Timeouts.data_done must be at least {DATA_DONE_FLOOR} s: a short wait "
                "after the final '.' makes the server deliver a message we reported as failed"
            )

    @classmethod
    def submission(cls) -> Timeouts:
        """For a submission server: about 30 s a stage and two minutes in all."""
        return cls()

    @classmethod
    def mta(cls) -> Timeouts:
        """RFC 5321 §4.5.3.2 minimums, as Postfix uses them: for MX delivery."""
        return cls(
            dns=30.0,
            connect=30.0,
            connect_total=120.0,
            greeting=300.0,
            ehlo=300.0,
            starttls=300.0,
            auth=300.0,
            mail=300.0,
            rcpt=300.0,
            data_init=120.0,
            data_block=180.0,
            data_done=600.0,
            rset=20.0,
            quit=20.0,
            total=None,
        )

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """The same limit for every stage (``data_done`` at least the floor), no total."""
        values = {item.name: float(seconds) for item in dataclasses.fields(cls)}
        values["data_done"] = max(float(seconds), DATA_DONE_FLOOR)
        values["connect_total"] = float(seconds) * 3
        values["total"] = None  # type: ignore[assignment]
        return cls(**values)

    @classmethod
    def coerce(cls, value: Timeouts | float | None, default: Timeouts | None = None) -> Timeouts:
        """Accept a ``Timeouts``, a number of seconds, or None (the default)."""
        if value is None:
            return default if default is not None else cls.submission()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls.uniform(value)
        raise TypeError(f"timeouts must be a Timeouts or a number, not {type(value).__name__}")

    def for_stage(self, stage: Stage) -> float:
        """The limit for *stage* in seconds."""
        value: float = getattr(self, _STAGE_FIELDS[stage])
        return value


class Deadline:
    """A point on the monotonic clock by which one stage must finish.

    It may be capped by an outer deadline (the total for a send); whichever
    comes first wins, and the error names the stage that was running.
    """

    __slots__ = ("expires", "stage")

    def __init__(self, seconds: float, stage: Stage, cap: Deadline | None = None) -> None:
        self.stage = stage
        self.expires = time.monotonic() + seconds
        if cap is not None and cap.expires < self.expires:
            self.expires = cap.expires

    @classmethod
    def for_stage(cls, timeouts: Timeouts, stage: Stage, cap: Deadline | None = None) -> Deadline:
        """A deadline for *stage* from *timeouts*, capped by *cap*."""
        return cls(timeouts.for_stage(stage), stage, cap)

    def remaining(self) -> float:
        """Seconds left; raises once the deadline has passed.

        Raises:
            SMTPTimeoutError: the deadline has passed.
        """
        left = self.expires - time.monotonic()
        if left <= 0:
            raise SMTPTimeoutError(f"timed out waiting at stage {self.stage}", stage=self.stage)
        return left

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.expires
