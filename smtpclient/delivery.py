"""Direct delivery: a message to each recipient domain's own mail hosts.

``deliver(message)`` groups the recipients by domain (domains compared
without regard to case and as IDNA A-labels; local parts never change
case), delivers to the domains in parallel on a bounded thread pool, and
returns a ``DeliveryReport`` with exactly one outcome per recipient.  How
each domain's hosts are chosen and walked is in ``resolver`` and
``domain_delivery``; what the report says is in ``report``.

``redeliver(report, message)`` is the retry helper: it sends again only to
the recipients that were deferred -- never to those whose outcome is
unknown unless asked, since they may already have the message.
"""

from __future__ import annotations

import io
import logging
import ssl
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import Message

from smtpclient.body import BodySource
from smtpclient.delivery_settings import DeliveryClock, DeliverySettings
from smtpclient.dkim import DKIMSigner, signed_for_delivery
from smtpclient.domain_delivery import DomainDelivery
from smtpclient.envelope import DSN, parse_options
from smtpclient.errors import InvalidAddressError, RequireTLSUnavailable
from smtpclient.eyeballs import DEFAULT_DELAY
from smtpclient.message import envelope_addresses
from smtpclient.mtasts import PolicyCache
from smtpclient.netpolicy import TargetPolicy, check_target_policy
from smtpclient.protocol.commands import encode_address, normalise_domain
from smtpclient.protocol.reply import Reply
from smtpclient.report import DeliveryReport, DomainTrace, Outcome, Status
from smtpclient.resolver import Resolver, default_resolver
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode

__all__ = ["DeliveryReport", "RequireTLSUnavailable", "deliver", "redeliver"]

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 8


def _reusable(content: Message | BodySource) -> bool:
    """True for content that can go to several hosts (bytes, str, a Message,
    a seekable binary file)."""
    if isinstance(content, (Message, bytes, bytearray, memoryview, str)):
        return True
    return isinstance(content, io.IOBase) and content.seekable()


def _domain_key(address: str) -> str:
    """The domain of *address* as DNS knows it: A-labels, lower case.

    Raises:
        InvalidAddressError: the address or its domain is malformed.
    """
    encode_address(address, utf8=True)
    bare = address[1:-1] if address.startswith("<") and address.endswith(">") else address
    local, at, domain = bare.rpartition("@")
    if not at or not local:
        raise InvalidAddressError(f"{address!r} has no domain to deliver to")
    if domain.startswith("["):
        return normalise_domain(domain).lower()
    return normalise_domain(domain.rstrip(".")).lower()


def _invalid(recipient: str, exc: Exception) -> Outcome:
    reply = Reply.build(553, str(exc), "5.1.3")
    return Outcome(recipient, Status.FAILED, "", reply=reply, reason=str(exc))


def deliver(
    message: Message | BodySource,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    resolver: Resolver | None = None,
    port: int = 25,
    tls: TLSMode = TLSMode.OPPORTUNISTIC,
    ssl_context: ssl.SSLContext | None = None,
    timeouts: Timeouts | float | None = None,
    local_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    max_sessions: int = 2,
    max_workers: int = DEFAULT_WORKERS,
    connect_delay: float = DEFAULT_DELAY,
    dsn: DSN | None = None,
    mail_options: Iterable[str] = (),
    rcpt_options: Iterable[str] = (),
    requiretls: bool = False,
    target_policy: TargetPolicy = "public",
    mta_sts: bool = True,
    mta_sts_ssl_context: ssl.SSLContext | None = None,
    mta_sts_port: int = 443,
    mta_sts_cache: PolicyCache | None = None,
    dkim: DKIMSigner | Sequence[DKIMSigner] | None = None,
    deadline: float | None = None,
) -> DeliveryReport:
    """Deliver *message* straight to the mail hosts of each recipient's domain.

    *message* is an ``email.message.Message`` (sender and recipients from
    its headers unless given; Bcc is not transmitted) or content that can
    be sent more than once -- bytes, str or a seekable binary file -- with
    *sender* and *recipients*.  TLS is opportunistic by default (Postfix's
    ``may``); ``tls=TLSMode.STARTTLS`` requires a verified certificate.
    ``timeouts`` defaults to ``Timeouts.mta()``; *resolver* to the shared
    process-wide one.  At most *max_sessions* sessions per domain (Postfix's
    ``smtp_mx_session_limit``); *max_workers* domains at a time.

    *target_policy* says which addresses may be connected to: "public"
    (the default: globally routable unicast only -- no loopback, private,
    link-local, shared, documentation or reserved address, whatever DNS
    or an address literal says), "private" (also RFC 1918 / unique-local
    networks) or "any".  A recipient whose every address is refused
    fails permanently (550 5.4.4) with a reason naming the target policy;
    refused addresses are never connected to.

    MTA-STS (RFC 8461) is on unless *mta_sts* is False (then nothing is
    fetched): each domain's ``_mta-sts`` TXT record is read and its policy
    fetched over HTTPS (verified with certifi, or *mta_sts_ssl_context*;
    port *mta_sts_port*, 443 but for tests) and kept in *mta_sts_cache*
    (default: one in-memory ``PolicyCache`` per process).  Under ``mode:
    enforce`` only MX hosts matching the policy are used, over STARTTLS
    with a certificate verified for the MX name (PKIX: *ssl_context* if it
    verifies, else certifi); recipients no such host took are deferred with
    a reason naming the policy.  Under ``mode: testing`` delivery goes on
    as usual and ``Outcome.tls_policy_failure`` says what enforce would
    have refused.  ``Outcome.tls_policy`` records the policy that applied.
    *dkim* (a ``DKIMSigner`` or several) signs the message once, before
    any connection (``smtpclient.dkim``).

    Time: *deadline* (seconds, default None: no limit) bounds the whole
    call -- DNS, MTA-STS, every host and transaction; when it runs out,
    every recipient still open is DEFERRED with a reason saying so.
    ``Timeouts.total`` (None in ``Timeouts.mta()``) bounds each attempt:
    one session with one host, DANE lookup and connecting included.  Once
    "." or BDAT LAST is written, the wait for its reply keeps its floor of
    ``DATA_DONE_FLOOR`` seconds even past either limit; see
    docs/guide/timeouts.md.

    Returns a ``DeliveryReport``: one outcome per distinct recipient (the
    same address given twice is delivered and reported once).  Network,
    DNS and server failures never raise; they are outcomes.

    Raises:
        RequireTLSUnavailable: *requiretls* (or a REQUIRETLS mail option)
            was asked for (RFC 8689 §4.2.1); nothing was sent.
        TypeError, ValueError: bad arguments (a one-shot iterable, no
            sender, no recipients, an unknown target policy, a deadline
            that is not a positive number); nothing was sent.
    """
    clock = DeliveryClock(deadline)  # from the start: signing counts too
    if dkim is not None:
        # Signed once, 7-bit-safe: every MX host and every retry gets these bytes.
        message, sender, recipients = signed_for_delivery(message, dkim, sender, recipients)
    return _deliver(
        message,
        sender=sender,
        recipients=recipients,
        resolver=resolver,
        port=port,
        tls=tls,
        ssl_context=ssl_context,
        timeouts=timeouts,
        local_hostname=local_hostname,
        source_address=source_address,
        max_sessions=max_sessions,
        max_workers=max_workers,
        connect_delay=connect_delay,
        dsn=dsn,
        mail_options=mail_options,
        rcpt_options=rcpt_options,
        requiretls=requiretls,
        target_policy=target_policy,
        mta_sts=mta_sts,
        mta_sts_ssl_context=mta_sts_ssl_context,
        mta_sts_port=mta_sts_port,
        mta_sts_cache=mta_sts_cache,
        attempt=1,
        first_attempt=None,
        clock=clock,
    )


def redeliver(
    report: DeliveryReport,
    message: Message | BodySource,
    *,
    include_unknown: bool = False,
    target_policy: TargetPolicy = "public",
    **options: object,
) -> DeliveryReport:
    """Retry a delivery: send *message* again to the recipients *report*
    deferred (and those with an unknown outcome only if *include_unknown*;
    they may receive it twice).  *options* are ``deliver()``'s keywords;
    *target_policy* is as for ``deliver()`` (default "public": give it
    again if the first delivery used another).

    Returns *report* merged with the new outcomes: recipients already
    delivered or failed keep their outcome, ``attempt`` goes up by one, and
    deferred ones get a later ``retry_after`` (None once five days have
    passed since the first attempt: time to give up and bounce).  With
    nothing to retry, *report* is returned as it is.

    Raises: as ``deliver()``.
    """
    if "sender" in options or "recipients" in options:
        raise TypeError("redeliver() takes the sender and recipients from the report")
    clock = DeliveryClock(options.pop("deadline", None))  # type: ignore[arg-type]
    wanted = report.retry_recipients(include_unknown=include_unknown)
    if not wanted:
        return report
    newer = _deliver(
        message,
        sender=report.sender,
        recipients=list(wanted),
        attempt=report.attempt + 1,
        first_attempt=report.first_attempt,
        target_policy=target_policy,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    return report.merged(newer)


def _deliver(
    message: Message | BodySource,
    *,
    sender: str | None,
    recipients: str | Sequence[str] | None,
    attempt: int,
    first_attempt: datetime | None,
    clock: DeliveryClock,
    resolver: Resolver | None = None,
    port: int = 25,
    tls: TLSMode = TLSMode.OPPORTUNISTIC,
    ssl_context: ssl.SSLContext | None = None,
    timeouts: Timeouts | float | None = None,
    local_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    max_sessions: int = 2,
    max_workers: int = DEFAULT_WORKERS,
    connect_delay: float = DEFAULT_DELAY,
    dsn: DSN | None = None,
    mail_options: Iterable[str] = (),
    rcpt_options: Iterable[str] = (),
    requiretls: bool = False,
    target_policy: TargetPolicy = "public",
    mta_sts: bool = True,
    mta_sts_ssl_context: ssl.SSLContext | None = None,
    mta_sts_port: int = 443,
    mta_sts_cache: PolicyCache | None = None,
) -> DeliveryReport:
    mail_options = tuple(mail_options)
    target_policy = check_target_policy(target_policy)
    if not isinstance(mta_sts_port, int) or not 0 < mta_sts_port < 65536:
        raise ValueError(f"mta_sts_port must be an int between 1 and 65535, not {mta_sts_port!r}")
    if requiretls or "REQUIRETLS" in {key.upper() for key in parse_options(mail_options)}:
        raise RequireTLSUnavailable(
            "REQUIRETLS cannot be honoured for direct MX delivery: RFC 8689 §4.2.1 needs "
            "the MX hosts validated by DNSSEC or MTA-STS, and direct delivery does not yet "
            "tie REQUIRETLS to those checks"
        )
    if not isinstance(tls, TLSMode):
        raise TypeError(f"tls must be a TLSMode, not {type(tls).__name__}")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int between 1 and 65535, not {port!r}")
    if max_sessions < 1 or max_workers < 1:
        raise ValueError("max_sessions and max_workers must be at least 1")
    if not _reusable(message):
        raise TypeError(
            "deliver() sends the content to several hosts: give a Message, bytes, str or a "
            "seekable binary file, not a one-shot iterable"
        )
    if isinstance(message, Message):
        sender, wanted = envelope_addresses(message, sender, recipients)
    else:
        if sender is None or recipients is None:
            raise ValueError("raw message content needs sender= and recipients=")
        wanted = [recipients] if isinstance(recipients, str) else list(recipients)
    if not wanted:
        raise ValueError("no recipients given")
    started = datetime.now(UTC)
    settings = DeliverySettings(
        sender=sender,
        port=port,
        tls=tls,
        ssl_context=ssl_context,
        timeouts=Timeouts.coerce(timeouts, Timeouts.mta()),
        local_hostname=local_hostname,
        source_address=source_address,
        max_sessions=max_sessions,
        connect_delay=connect_delay,
        dsn=dsn,
        mail_options=mail_options,
        rcpt_options=tuple(rcpt_options),
        attempt=attempt,
        first_attempt=first_attempt or started,
        target_policy=target_policy,
        mta_sts=mta_sts,
        mta_sts_ssl_context=mta_sts_ssl_context,
        mta_sts_port=mta_sts_port,
        mta_sts_cache=mta_sts_cache,
        clock=clock,
    )
    # Group by domain; the same recipient (domain case aside) only once.
    order: list[str] = []
    outcomes: dict[str, Outcome] = {}
    groups: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for recipient in wanted:
        if not isinstance(recipient, str):
            raise TypeError(f"recipients must be str, not {type(recipient).__name__}")
        try:
            domain = _domain_key(recipient)
        except InvalidAddressError as exc:
            if recipient not in outcomes:
                order.append(recipient)
                outcomes[recipient] = _invalid(recipient, exc)
            continue
        identity = (recipient.rpartition("@")[0].lstrip("<"), domain)
        if identity in seen:
            continue
        seen.add(identity)
        order.append(recipient)
        groups.setdefault(domain, []).append(recipient)
    chosen = resolver or default_resolver()
    jobs = [
        DomainDelivery(domain, members, message, chosen, settings)
        for domain, members in groups.items()
    ]
    # A file is one read position: its domains go one at a time.
    workers = 1 if not isinstance(message, (Message, bytes, bytearray, memoryview, str)) else 0
    workers = workers or min(max_workers, len(jobs)) or 1
    traces: dict[str, DomainTrace] = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="smtpclient-deliver") as pool:
        for found, trace in pool.map(DomainDelivery.run, jobs):
            outcomes.update(found)
            traces[trace.domain] = trace
    missing = [r for r in order if r not in outcomes]
    if missing:  # cannot happen; never let a recipient vanish silently
        log.error("delivery lost track of %s", missing)
        for recipient in missing:
            outcomes[recipient] = Outcome(recipient, Status.UNKNOWN, "", reason="no outcome")
    return DeliveryReport(
        sender,
        tuple(outcomes[r] for r in order),
        traces,
        attempt=attempt,
        first_attempt=settings.first_attempt,
        finished=datetime.now(UTC),
    )
