"""aiosmtpd that keeps, for each message, when it arrived and its Message-ID,
and that can misbehave on cue: 451 to the first MAIL commands, 4xx/5xx to
chosen recipients a number of times, or a hang-up right after the final dot
(the message is stored, the client never hears so: its outcome is unknown).

Also the judge for rate limits, which works on the server's arrival times
only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope

from servers.metering import message_id
from servers.smtpd import AiosmtpdServer, Received, Recorder


@dataclass
class Arrival:
    at: float  # time.monotonic() when the final dot arrived
    message_id: str | None
    recipients: list[str]


@dataclass
class ArrivalRecorder(Recorder):
    """A ``Recorder`` with arrival times and scripted failures.

    Attributes:
        fail_first_mails: answer this many MAIL commands (the first ones) with
            ``mail_failure``.
        refuse_times: address -> (reply, how many times); then accepted.
        hang_up_after_dot: recipients whose message is stored and then the
            connection dropped without a reply.
        on_data: called (in the server's thread) with each stored message
            and the client's (host, port).
    """

    arrivals: list[Arrival] = field(default_factory=list)
    fail_first_mails: int = 0
    mail_failure: str = "451 4.3.2 Try again later (test fixture)"
    refuse_times: dict[str, tuple[str, int]] = field(default_factory=dict)
    hang_up_after_dot: set[str] = field(default_factory=set)
    on_data: Callable[[Received, Any], None] | None = None
    mails_failed: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    quits: int = 0

    def reset(self) -> None:
        """Forget what arrived and every scripted failure (a shared server)."""
        with self.lock:
            self.messages.clear()
            self.arrivals.clear()
            self.refuse.clear()
            self.refuse_times.clear()
            self.hang_up_after_dot.clear()
            self.refusals.clear()
            self.fail_first_mails = self.mails_failed = self.quits = 0
            self.on_data = None

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        with self.lock:
            self.quits += 1
        return "221 2.0.0 Bye"

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self.lock:
            if self.mails_failed < self.fail_first_mails:
                self.mails_failed += 1
                return self.mail_failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            reply, times = self.refuse_times.get(address, ("", 0))
            if self.refusals[address] < times:
                self.refusals[address] += 1
                return reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        received = self.messages[-1]
        with self.lock:
            self.arrivals.append(
                Arrival(time.monotonic(), message_id(received.content), list(envelope.rcpt_tos))
            )
        if self.on_data is not None:
            self.on_data(received, session.peer)
        if self.hang_up_after_dot & set(envelope.rcpt_tos):
            server.transport.abort()  # stored, but the client never hears so
        return reply

    def message_ids(self) -> Counter[str | None]:
        with self.lock:
            return Counter(a.message_id for a in self.arrivals)

    def times(self) -> list[float]:
        with self.lock:
            return sorted(a.at for a in self.arrivals)


class ArrivalServer(AiosmtpdServer):
    """``AiosmtpdServer`` with an ``ArrivalRecorder`` that can also hang up on
    every client (``drop_clients``): a server shared by several tests closes
    the connections worker processes keep in their pools, so that no test
    leaves a server-side socket open in this process."""

    def __init__(self, recorder: ArrivalRecorder) -> None:
        super().__init__(recorder=recorder)
        self.arrivals = recorder
        self._transports: list[asyncio.BaseTransport] = []

    def _factory(self) -> SMTP:
        protocol = super()._factory()
        original = protocol.connection_made
        transports = self._transports

        def connection_made(transport: asyncio.BaseTransport) -> None:
            transports.append(transport)
            original(transport)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    def drop_clients(self, timeout: float = 10.0) -> None:
        """Close every client connection (bounded wait)."""

        async def drop() -> None:
            for transport in self._transports:
                if not transport.is_closing():
                    transport.abort()
            self._transports.clear()
            for _ in range(3):  # let the loop run connection_lost and close sockets
                await asyncio.sleep(0.01)

        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(timeout)


def wait_for_arrivals(recorder: ArrivalRecorder, count: int, timeout: float) -> int:
    """Poll (bounded) until *count* messages arrived; return how many did."""
    deadline = time.monotonic() + timeout
    while True:
        with recorder.lock:
            seen = len(recorder.arrivals)
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def worst_rate_excess(times: Sequence[float], per_second: float, allowance: float) -> float:
    """How far the busiest stretch of arrivals went over the limit.

    For every stretch from one arrival to a later one, the count of
    arrivals in it may be at most ``1.1 * per_second * length + allowance``
    (10 % for clocks and scheduling, plus one burst).  Returns the largest
    excess found: <= 0 means the limit held everywhere.
    """
    ordered = sorted(times)
    worst = -float("inf")
    for first in range(len(ordered)):
        for last in range(first, len(ordered)):
            count = last - first + 1
            allowed = 1.1 * per_second * (ordered[last] - ordered[first]) + allowance
            worst = max(worst, count - allowed)
    return worst


@dataclass
class ConcurrencyMeter:
    """Connections open at the server at once (for a scripted server)."""

    limit: int
    open: int = 0
    peak: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
