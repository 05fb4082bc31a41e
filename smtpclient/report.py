"""What a direct delivery produced: one outcome per recipient, and the evidence.

Every recipient of a ``deliver()`` call gets exactly one ``Outcome``:

* ``DELIVERED`` -- a mail host of its domain took responsibility (final 2xx
  after the data): ``host``, ``address``, ``reply``, ``queue_id``, ``tls``.
* ``DEFERRED`` -- a transient failure (4xx, DNS failure, no host reachable):
  try again at ``retry_after`` (RFC 5321 §4.5.4.1); None there means the
  give-up time (``GIVE_UP_AFTER`` since the first attempt) has passed.
* ``FAILED`` -- a permanent failure (5xx, NXDOMAIN, null MX ...): ``reply``
  and its enhanced status code say why; do not retry.
* ``UNKNOWN`` -- the connection failed after the final "." (RFC 5321
  §4.5.3.2.6): the host may have the message.  Retrying may deliver twice.

``DomainTrace`` keeps, per domain, the targets DNS gave, every connection
attempt in the order it was started, and what happened on each host.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smtpclient.errors import (
    ExtensionNotSupported,
    InvalidAddressError,
    MessageTooLarge,
    SMTPClientError,
)
from smtpclient.eyeballs import Attempt
from smtpclient.protocol.reply import Reply
from smtpclient.results import _QUEUE_ID
from smtpclient.targets import Target
from smtpclient.tls import TLSInfo
from smtpclient.tlspolicy import TLSPolicy

__all__ = [
    "FIRST_RETRY",
    "GIVE_UP_AFTER",
    "DeliveryReport",
    "DomainTrace",
    "HostVisit",
    "Outcome",
    "Status",
    "local_reply",
    "queue_id_of",
    "suggest_retry",
]

FIRST_RETRY = timedelta(minutes=30)  # RFC 5321 §4.5.4.1: at least 30 minutes
LATER_RETRY = timedelta(hours=2)  # "...then every two or three hours"
LATE_RETRY = timedelta(hours=3)
GIVE_UP_AFTER = timedelta(days=5)  # "...give up after 4-5 days"


def suggest_retry(attempt: int, first_attempt: datetime, now: datetime) -> datetime | None:
    """When to try again after *attempt* attempts (1 = the first), following
    RFC 5321 §4.5.4.1: two attempts in the first hour (30 minutes apart),
    then every two hours for the first day and every three after that; None
    once the next attempt would fall after ``GIVE_UP_AFTER``."""
    if attempt <= 2:
        interval = FIRST_RETRY
    elif now - first_attempt < timedelta(days=1):
        interval = LATER_RETRY
    else:
        interval = LATE_RETRY
    at = now + interval
    return at if at <= first_attempt + GIVE_UP_AFTER else None


def queue_id_of(reply: Reply | None) -> str | None:
    """The queue id a final reply names ("250 2.0.0 Ok: queued as 4Xyz"), if any."""
    match = _QUEUE_ID.search(reply.text) if reply is not None else None
    return match.group(1) if match else None


def local_reply(exc: BaseException) -> Reply:
    """A reply standing for a local refusal that has none of its own."""
    text = str(exc)
    if isinstance(exc, MessageTooLarge):
        return Reply.build(552, text, "5.3.4")
    if isinstance(exc, ExtensionNotSupported):
        if exc.extension == "SMTPUTF8":
            return Reply.build(553, text, "5.6.7")
        if exc.extension in ("8BITMIME", "BINARYMIME"):
            return Reply.build(554, text, "5.6.3")
        return Reply.build(554, text, "5.3.3")
    if isinstance(exc, InvalidAddressError):
        return Reply.build(553, text, "5.1.3")
    return Reply.build(554, text, "5.6.0")


class Status(enum.Enum):
    """The four outcomes of one recipient."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient.

    Attributes:
        recipient: the address as the caller gave it.
        status: ``Status``.
        domain: the recipient's domain as looked up (A-labels, lower case).
        reply: the reply that decided it: the final data reply when
            delivered, the refusal otherwise (made locally for DNS and
            policy failures, e.g. 556 5.1.10 for a null MX).
        reason: one line for people.
        host, address: the mail host and the IP address involved.
        queue_id: the host's queue id for a delivered message, if it said one.
        tls: TLS details of the session, None for plaintext.
        retry_after: for DEFERRED, when to try again (None: give up).
        error: the exception behind a failure, if any.
        tls_policy: the ``TLSPolicy`` that applied ("none", "opportunistic",
            "mta-sts enforce", "mta-sts testing", "dane"); None only for a
            recipient rejected before its domain was looked at.
        tls_policy_failure: under an MTA-STS ``testing`` policy, what an
            ``enforce`` policy would have refused about the host that got
            the message (for TLS reporting, RFC 8460); None otherwise.
    """

    recipient: str
    status: Status
    domain: str
    reply: Reply | None = None
    reason: str = ""
    host: str | None = None
    address: str | None = None
    queue_id: str | None = None
    tls: TLSInfo | None = None
    retry_after: datetime | None = None
    error: SMTPClientError | None = field(default=None, compare=False, repr=False)
    tls_policy: TLSPolicy | None = None
    tls_policy_failure: str | None = None

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of ``reply`` ("5.1.1"), if any."""
        return self.reply.enhanced if self.reply is not None else None

    @property
    def code(self) -> int | None:
        """The reply code, if there is a reply."""
        return self.reply.code if self.reply is not None else None

    @property
    def final(self) -> bool:
        """True for DELIVERED and FAILED: nothing more to do."""
        return self.status in (Status.DELIVERED, Status.FAILED)


@dataclass(frozen=True)
class HostVisit:
    """One connection that got as far as a socket: the host, the address and
    what came of it ("delivered 2", "greeting: 421 ...", "TLS: ...")."""

    host: str
    address: str
    result: str
    tls: TLSInfo | None = None


@dataclass(frozen=True)
class DomainTrace:
    """The evidence for one domain: targets from DNS, every connection
    attempt in start order, each host visited, and the MTA-STS policy
    found (e.g. ``"enforce (fetched): mode enforce, mx *.example.com, ..."``
    or ``"no policy; MTA-STS policy fetch failed: ..."``)."""

    domain: str
    targets: tuple[Target, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    visits: tuple[HostVisit, ...] = ()
    dns_error: str | None = None
    mta_sts: str = ""  # what MTA-STS discovery found ("" when it was off)

    @property
    def tried(self) -> tuple[str, ...]:
        """The addresses connected to (or tried), in the order the attempts started."""
        return tuple(a.address for a in self.attempts if a.outcome != "skipped")


@dataclass(frozen=True)
class DeliveryReport:
    """One outcome per recipient, in the order the recipients were given
    (duplicates once), plus a ``DomainTrace`` per domain.

    Iterating gives the outcomes; ``report[recipient]`` finds one.
    ``attempt`` counts deliveries of this message (``redeliver`` adds one);
    ``first_attempt`` is when the first began (UTC).
    """

    sender: str
    outcomes: tuple[Outcome, ...]
    domains: Mapping[str, DomainTrace] = field(default_factory=dict)
    attempt: int = 1
    first_attempt: datetime | None = None
    finished: datetime | None = None

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, recipient: str) -> Outcome:
        for outcome in self.outcomes:
            if outcome.recipient == recipient:
                return outcome
        raise KeyError(recipient)

    def _with(self, status: Status) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is status)

    @property
    def delivered(self) -> tuple[Outcome, ...]:
        """Outcomes with status DELIVERED."""
        return self._with(Status.DELIVERED)

    @property
    def deferred(self) -> tuple[Outcome, ...]:
        """Outcomes with status DEFERRED."""
        return self._with(Status.DEFERRED)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """Outcomes with status FAILED."""
        return self._with(Status.FAILED)

    @property
    def unknown(self) -> tuple[Outcome, ...]:
        """Outcomes with status UNKNOWN (the message may have arrived)."""
        return self._with(Status.UNKNOWN)

    @property
    def complete(self) -> bool:
        """True when every recipient is delivered or failed (nothing to retry)."""
        return all(o.final for o in self.outcomes)

    @property
    def next_retry(self) -> datetime | None:
        """The earliest suggested retry time of the deferred recipients."""
        times = [o.retry_after for o in self.deferred if o.retry_after is not None]
        return min(times) if times else None

    @property
    def expires(self) -> datetime | None:
        """When retrying should stop (``first_attempt`` + ``GIVE_UP_AFTER``)."""
        return self.first_attempt + GIVE_UP_AFTER if self.first_attempt else None

    def retry_recipients(self, *, include_unknown: bool = False) -> tuple[str, ...]:
        """The recipients a retry should go to: the deferred ones, plus the
        unknown ones only if *include_unknown* (they may get it twice)."""
        wanted = {Status.DEFERRED, Status.UNKNOWN} if include_unknown else {Status.DEFERRED}
        return tuple(o.recipient for o in self.outcomes if o.status in wanted)

    def merged(self, newer: DeliveryReport) -> DeliveryReport:
        """This report with *newer*'s outcomes replacing those of the
        recipients it covers (a retry); order and other outcomes are kept."""
        replaced = {o.recipient: o for o in newer.outcomes}
        outcomes = tuple(replaced.pop(o.recipient, o) for o in self.outcomes)
        outcomes += tuple(replaced.values())
        domains = {**self.domains, **newer.domains}
        return DeliveryReport(
            self.sender,
            outcomes,
            domains,
            attempt=newer.attempt,
            first_attempt=self.first_attempt or newer.first_attempt,
            finished=newer.finished,
        )

    def summary(self) -> str:
        """One line such as ``3 recipients: 2 delivered, 1 deferred``."""
        counts = [
            f"{len(self._with(status))} {status.value}" for status in Status if self._with(status)
        ]
        noun = "recipient" if len(self.outcomes) == 1 else "recipients"
        return f"{len(self.outcomes)} {noun}: {', '.join(counts) or 'none'}"
