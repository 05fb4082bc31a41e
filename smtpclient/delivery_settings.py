"""What every domain of one ``deliver()`` call shares: its settings and its clock.

``DeliverySettings`` is everything the call was told; ``DeliveryClock`` is
how long the call, and each attempt inside it, may take.  Two limits, both optional:

* ``deliver(..., deadline=seconds)`` bounds the whole call: every domain,
  its DNS lookups and MTA-STS policy fetch, every host tried and every
  transaction.  When it runs out, nothing new is started (no lookup, no
  connection, no further command) and every recipient still open is
  DEFERRED with a reason saying the time budget ran out.
* ``Timeouts.total`` bounds each attempt: one session with one host, from
  its TLSA lookup (DANE) and the connection race through greeting, EHLO,
  STARTTLS (with the reconnects OPPORTUNISTIC makes), the transactions and
  their final replies, and QUIT.  A host that uses it up is given up like
  any host that timed out: the recipients stay open for the next host.

Either way, once "." or BDAT LAST is written the wait for its reply keeps
the ``DATA_DONE_FLOOR`` (a short wait there is how duplicates are made), so
a call can end up to that long after its deadline; a recipient whose reply
did not come even then is UNKNOWN, never deferred.

The engine and the DNS and MTA-STS layers read the limit in force from
``session.budget.CALL_DEADLINE``; a ``DeliveryClock`` sets it in each
delivery thread (``domain()``) and narrows it per attempt (``attempt()``).
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from smtpclient.envelope import DSN
from smtpclient.mtasts import PolicyCache
from smtpclient.netpolicy import TargetPolicy
from smtpclient.protocol.state import Stage
from smtpclient.session.budget import CALL_DEADLINE
from smtpclient.timeouts import Deadline, Timeouts
from smtpclient.tls import TLSMode

__all__ = ["DeliveryClock", "DeliverySettings", "time_left"]


class DeliveryClock:
    """The overall time budget of one ``deliver()`` call, started when made.

    Raises:
        TypeError: *seconds* is not a number (or None).
        ValueError: *seconds* is not positive.
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None:
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise TypeError(f"deadline must be a number of seconds, not {seconds!r}")
            if not seconds > 0 or math.isinf(seconds):
                raise ValueError(f"deadline must be a positive number of seconds, not {seconds!r}")
        self.seconds = seconds
        self.overall = Deadline(seconds, Stage.CONNECT) if seconds is not None else None

    @property
    def expired(self) -> bool:
        """True once the whole call's budget is used up."""
        return self.overall is not None and self.overall.expired

    def ran_out(self) -> str:
        """The reason given to recipients deferred because the budget ran out."""
        return f"the time budget of this delivery (deadline={self.seconds:g} s) ran out"

    @contextmanager
    def domain(self) -> Iterator[None]:
        """Run one domain's delivery (in its own thread) under the call's budget."""
        token = CALL_DEADLINE.set(self.overall)
        try:
            yield
        finally:
            CALL_DEADLINE.reset(token)

    @contextmanager
    def attempt(self, total: float | None) -> Iterator[Deadline | None]:
        """Run one attempt under *total* seconds (``Timeouts.total``; None: no
        limit of its own), capped by the call's budget.  Yields the deadline
        in force (None: unbounded)."""
        deadline = Deadline(total, Stage.CONNECT, self.overall) if total else self.overall
        token = CALL_DEADLINE.set(deadline)
        try:
            yield deadline
        finally:
            CALL_DEADLINE.reset(token)


def time_left(deadline: Deadline | None, limit: float) -> float:
    """*limit* seconds, or less if *deadline* comes first (0.0 once it has passed)."""
    if deadline is None:
        return limit
    return max(0.0, min(limit, deadline.expires - time.monotonic()))


@dataclass(frozen=True)
class DeliverySettings:
    """Everything ``deliver()`` was told that every domain shares."""

    sender: str
    port: int
    tls: TLSMode
    ssl_context: ssl.SSLContext | None
    timeouts: Timeouts
    local_hostname: str | None
    source_address: tuple[str, int] | None
    max_sessions: int
    connect_delay: float
    dsn: DSN | None
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    attempt: int
    first_attempt: datetime
    target_policy: TargetPolicy = "public"
    mta_sts: bool = True
    mta_sts_ssl_context: ssl.SSLContext | None = None
    mta_sts_port: int = 443
    mta_sts_cache: PolicyCache | None = None
    clock: DeliveryClock = field(default_factory=DeliveryClock)  # the call's time budget
