"""Delivery of one message to the recipients of one domain, host after host.

The walk, as Postfix's smtp client does it:

1. Ask the resolver for the targets (MX hosts' addresses, ordered and capped).
   A DNS failure decides every recipient at once (failed or deferred).
2. Race connections over the remaining targets (Happy Eyeballs); each
   address is tried at most once per delivery.
3. On the winner, open a session (greeting, EHLO, the TLS policy).  A
   refused connection, a 4xx/5xx greeting, a failed EHLO or TLS problem
   means "next host"; with OPPORTUNISTIC TLS, an unverifiable certificate
   is retried encrypted-but-unverified and a failed handshake in plaintext,
   on a new connection to the same address.
4. Send to the recipients still open, in transactions of at most 100.
   Delivered and permanently refused recipients are settled; transiently
   refused ones stay open for the next host; a connection lost after the
   final "." makes its recipients UNKNOWN -- they are never sent again.
5. Stop after ``max_sessions`` sessions that got past EHLO (Postfix's
   ``smtp_mx_session_limit``), when nothing is open, or when the call's
   time budget has run out; what is still open is DEFERRED.

Time: the whole walk runs under the call's budget and each attempt (one
host's session) under ``Timeouts.total``, as ``DeliveryClock`` (in
``delivery_settings``) says.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Any

from smtpclient import dane
from smtpclient.body import BodySource
from smtpclient.delivery_settings import DeliverySettings, time_left
from smtpclient.dnslookup import HostsFilteredError
from smtpclient.errors import (
    CertificateVerifyError,
    ConnectError,
    InvalidAddressError,
    MessageContentError,
    PermanentError,
    RecipientsRefused,
    ServiceClosing,
    SMTPClientError,
    TLSError,
    TLSRequiredError,
)
from smtpclient.eyeballs import Attempt, race
from smtpclient.hostpolicy import DomainTLS, HostTLS
from smtpclient.mtasts_fetch import default_policy_cache
from smtpclient.netpolicy import allowed
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.protocol.status import is_transient_refusal
from smtpclient.report import (
    DomainTrace,
    HostVisit,
    Outcome,
    Status,
    local_reply,
    queue_id_of,
    suggest_retry,
)
from smtpclient.resolver import DNSError, Resolver
from smtpclient.results import SendResult
from smtpclient.session import Session
from smtpclient.targets import Target
from smtpclient.timeouts import Deadline
from smtpclient.tls import TLSMode, unverified_context
from smtpclient.tlspolicy import TLSPolicy
from smtpclient.transaction import MAX_RECIPIENTS

__all__ = ["DeliverySettings", "DomainDelivery"]

log = logging.getLogger(__name__)

_INSTANT = 0.001  # race() wants a positive time; out of time, it fails at once


@dataclass
class _Open:
    """Why a recipient is still open: the latest transient failure."""

    reason: str
    reply: Reply | None = None
    error: SMTPClientError | None = None
    host: str | None = None
    address: str | None = None
    tls_policy: TLSPolicy | None = None


class DomainDelivery:
    """Delivers *content* to *recipients* (all of one *domain*); ``run()``
    returns one outcome per recipient and the domain's trace.  Never raises
    for network, DNS or server trouble."""

    def __init__(
        self,
        domain: str,
        recipients: Iterable[str],
        content: Message | BodySource,
        resolver: Resolver,
        settings: DeliverySettings,
    ) -> None:
        self.domain = domain
        self.settings = settings
        self.resolver = resolver
        # Each domain sends its own copy: threads never share a Message.
        self.content = copy.deepcopy(content) if isinstance(content, Message) else content
        self.open: dict[str, _Open] = {r: _Open("not attempted") for r in recipients}
        self.final: dict[str, Outcome] = {}
        self.targets: list[Target] = []
        self.attempts: list[Attempt] = []
        self.visits: list[HostVisit] = []
        self.dns_error: str | None = None
        self._in_flight: list[str] = []  # the batch whose data may be on the wire
        self.security = DomainTLS(domain, None, tls=settings.tls, ssl_context=settings.ssl_context)
        self.decision: HostTLS | None = None  # the TLS decision for the current host
        self.policy_failures: dict[str, str] = {}  # host -> what a testing policy noted
        self.attempt_deadline: Deadline | None = None  # the attempt in progress

    # --- outcomes --------------------------------------------------------------------

    def _policy_now(self) -> TLSPolicy:
        decision = self.decision
        return decision.policy if decision is not None else self.security.policy

    def _settle(self, recipient: str, status: Status, **details: Any) -> None:
        if details.get("tls_policy") is None:
            details["tls_policy"] = self._policy_now()
        if recipient in self.open:
            del self.open[recipient]
            self.final[recipient] = Outcome(recipient, status, self.domain, **details)

    def _keep_open(self, recipient: str, reason: str, **details: Any) -> None:
        details.setdefault("tls_policy", self._policy_now())
        if recipient in self.open:
            self.open[recipient] = _Open(reason, **details)

    def _all_open(self, reason: str, **details: Any) -> None:
        for recipient in list(self.open):
            self._keep_open(recipient, reason, **details)

    def _refused(self, recipient: str, reply: Reply, where: Target) -> None:
        reason = f"{where.host}: {reply.code} {reply.text}"
        details: dict[str, Any] = {"reply": reply, "host": where.host, "address": where.address}
        if is_transient_refusal(Stage.RCPT, reply):
            self._keep_open(recipient, reason, **details)
        else:
            self._settle(recipient, Status.FAILED, reason=reason, **details)

    def _defer_the_rest(self) -> None:
        settings = self.settings
        retry = suggest_retry(
            settings.attempt, settings.first_attempt, datetime.now(settings.first_attempt.tzinfo)
        )
        clock = settings.clock
        for recipient, why in list(self.open.items()):
            details = vars(why)
            if clock.expired:  # the walk was cut short: say so first
                details = {**details, "reason": f"{clock.ran_out()}; before that: {why.reason}"}
            self._settle(recipient, Status.DEFERRED, retry_after=retry, **details)

    # --- the walk --------------------------------------------------------------------

    def run(self) -> tuple[dict[str, Outcome], DomainTrace]:
        """Deliver; one outcome for every recipient, whatever happens."""
        try:
            with self.settings.clock.domain():
                if not self.settings.clock.expired:  # a domain queued past the deadline
                    self._run()
        except Exception as exc:  # a bug must not lose recipients
            log.exception("delivery to %s failed unexpectedly", self.domain)
            for recipient in self._in_flight:
                self._settle(recipient, Status.UNKNOWN, reason=f"internal error: {exc!r}")
            self._all_open(f"internal error: {exc!r}")
        self._defer_the_rest()
        found = (tuple(self.targets), tuple(self.attempts), tuple(self.visits))
        trace = DomainTrace(self.domain, *found, self.dns_error, self.security.describe())
        return dict(self.final), trace

    def _run(self) -> None:
        settings = self.settings
        self.security = DomainTLS.discover(
            self.domain,
            enabled=settings.mta_sts,
            resolver=self.resolver,
            cache=settings.mta_sts_cache or default_policy_cache(),
            target_policy=settings.target_policy,
            fetch_context=settings.mta_sts_ssl_context,
            port=settings.mta_sts_port,
            tls=settings.tls,
            ssl_context=settings.ssl_context,
        )
        try:
            self.targets = self.resolver.targets(
                self.domain,
                target_policy=settings.target_policy,
                accept_host=self.security.accept_host,
            )
        except DNSError as exc:
            self.dns_error = str(exc)
            if isinstance(exc, HostsFilteredError):
                reason = self.security.no_match()
                self._all_open(reason, reply=Reply.build(451, reason, "4.7.5"), error=exc)
            elif isinstance(exc, PermanentError):
                for recipient in list(self.open):
                    self._settle(
                        recipient, Status.FAILED, reply=exc.reply, reason=exc.message, error=exc
                    )
            else:
                self._all_open(exc.message, reply=exc.reply, error=exc)
            return
        except InvalidAddressError as exc:
            self.dns_error = str(exc)
            reply = Reply.build(550, str(exc), "5.1.2")
            for recipient in list(self.open):
                self._settle(recipient, Status.FAILED, reply=reply, reason=str(exc))
            return
        # The resolver applied the target policy; a resolver of the caller's
        # own making might not have, so check again before any connection.
        policy = self.settings.target_policy
        remaining = [t for t in self.targets if allowed(t.address, policy)]
        sessions = 0
        clock = settings.clock
        while self.open and remaining and sessions < settings.max_sessions and not clock.expired:
            with clock.attempt(settings.timeouts.total) as self.attempt_deadline:
                remaining, opened = self._attempt(remaining)
            sessions += opened
        if self.open and not self.targets:
            self._all_open("no targets")

    def _attempt(self, remaining: list[Target]) -> tuple[list[Target], bool]:
        """One attempt: race the *remaining* targets, open a session on the
        winner and send on it.  Returns the targets not yet tried and
        whether a session was opened."""
        settings = self.settings
        deadline = self.attempt_deadline
        result = race(
            [t.address for t in remaining],
            settings.port,
            delay=settings.connect_delay,
            per_address=time_left(deadline, settings.timeouts.connect) or _INSTANT,
            total=time_left(deadline, settings.timeouts.connect_total) or _INSTANT,
            source_address=settings.source_address,
        )
        self.attempts.extend(result.attempts)
        used = {a.address for a in result.attempts}
        winner = remaining[result.winner] if result.winner is not None else None
        remaining = [t for t in remaining if t.address not in used]
        if winner is None or result.sock is None:
            self._all_open(f"could not connect: {result.summary()}")
            return remaining, False
        try:
            session = self._open_session(winner, result.sock)
            if session is not None:
                self._send(session, winner)
        finally:
            if deadline is not None and deadline.expired and not settings.clock.expired:
                total = settings.timeouts.total
                self._visit(winner, f"the attempt ran out of time (Timeouts.total={total:g} s)")
        return remaining, session is not None

    # --- sessions --------------------------------------------------------------------

    def _connect(self, target: Target, sock: Any, tls: TLSMode, context: Any) -> Session:
        literal = target.host.startswith("[")
        settings = self.settings
        return Session.connect(
            target.address if literal else target.host,
            settings.port,
            tls=tls,
            ssl_context=context,
            server_hostname=None if literal else target.host,
            timeouts=settings.timeouts,
            local_hostname=settings.local_hostname,
            sock=sock,
        )

    def _reconnect(self, target: Target) -> Any:
        left = time_left(self.attempt_deadline, self.settings.timeouts.connect)
        if not left:
            return None  # the attempt's time is up: no new connection
        result = race(
            [target.address],
            self.settings.port,
            per_address=left,
            source_address=self.settings.source_address,
        )
        self.attempts.extend(result.attempts)
        return result.sock

    def _open_session(self, target: Target, sock: Any) -> Session | None:
        """Greeting, EHLO and TLS on *sock*; None (and a note) when the host fails."""
        if self.settings.tls is not TLSMode.NONE:
            found = dane.host_policy(self.resolver, self.domain, target.host, self.settings.port)
            if found.applies:  # DANE takes precedence over any other policy (RFC 8461 §2)
                return self._open_dane(target, sock, found)
        self.decision = self.security.for_host(target.host)
        tls = self.decision.mode
        context = self.decision.context
        verify_error: str | None = None
        while True:
            try:
                session = self._connect(target, sock, tls, context)
            except CertificateVerifyError as exc:
                if tls is TLSMode.OPPORTUNISTIC and context is self.decision.context:
                    # Postfix "may": encryption without verification beats plaintext.
                    verify_error = exc.message
                    self._visit(target, f"certificate not verified ({exc.message}); retrying")
                    context = unverified_context(self.settings.ssl_context)
                    sock = self._reconnect(target)
                    if sock is not None:
                        continue
                self._host_failed(target, "TLS", exc)
                return None
            except SMTPClientError as exc:
                # Postfix "may": a handshake that fails in any way (an alert,
                # a reset, a stall) is retried in plaintext on a new connection.
                in_tls = isinstance(exc, TLSError) or exc.stage is Stage.STARTTLS
                if (
                    in_tls
                    and tls is TLSMode.OPPORTUNISTIC
                    and not isinstance(exc, (TLSRequiredError, ServiceClosing))
                ):
                    self._visit(target, f"TLS failed ({exc.message}); retrying in plaintext")
                    tls = TLSMode.NONE
                    sock = self._reconnect(target)
                    if sock is not None:
                        continue
                stage = "TLS" if in_tls else str(exc.stage or "connect")
                self._host_failed(target, stage, exc)
                return None
            if session.tls is not None and verify_error is not None:
                session.tls = dataclasses.replace(session.tls, verify_error=verify_error)
            failure = self.security.testing_failure(target.host, session.tls)
            if failure is not None:  # mode testing: deliver anyway, keep the note
                self.policy_failures[target.host] = failure
                self._visit(target, failure)
            return session

    def _open_dane(self, target: Target, sock: Any, decision: dane.HostPolicy) -> Session | None:
        """Open a session to a host whose TLSA records decide its TLS
        (``dane.open_session``); None (and a note) when the host fails."""
        self.decision = HostTLS(TLSPolicy.DANE, TLSMode.STARTTLS, None, True, "dane")
        unused = [sock]

        def connect(context: ssl.SSLContext) -> Session:
            fresh = unused.pop() if unused else self._reconnect(target)
            if fresh is None:
                raise ConnectError(f"could not connect again to {target.address}")
            return self._connect(target, fresh, TLSMode.STARTTLS, context)

        try:
            return dane.open_session(decision, connect)
        except SMTPClientError as exc:
            stage = "DANE" if isinstance(exc, dane.DANEError) else str(exc.stage or "connect")
            self._host_failed(target, stage, exc)
            return None
        finally:
            for left in unused:
                left.close()

    def _visit(self, target: Target, result: str, tls: Any = None) -> None:
        self.visits.append(HostVisit(target.host, target.address, result, tls))

    def _host_failed(self, target: Target, stage: str, exc: SMTPClientError) -> None:
        reason = f"{target.host} [{target.address}] {stage}: {exc}"
        decision = self.decision
        if decision is not None and decision.required and stage == "TLS":
            reason = f"{self.security.named(decision)} requires verified TLS: {reason}"
        self._visit(target, f"{stage}: {exc}")
        self._all_open(reason, reply=exc.reply, error=exc, host=target.host, address=target.address)

    def _send(self, session: Session, target: Target) -> None:
        delivered = 0
        asked: set[str] = set()  # each recipient is offered to a host once
        try:
            while session.usable and time_left(self.attempt_deadline, 1.0):
                batch = [r for r in self.open if r not in asked][:MAX_RECIPIENTS]
                if not batch:
                    break
                asked.update(batch)
                self._in_flight = batch
                try:
                    result = self._transmit(session, batch)
                except SMTPClientError as exc:
                    self._judge_error(batch, exc, target)
                except (MessageContentError, InvalidAddressError, ValueError, TypeError) as exc:
                    reply = local_reply(exc)
                    for recipient in batch:
                        self._settle(recipient, Status.FAILED, reply=reply, reason=str(exc))
                else:
                    delivered += self._judge_result(batch, result, target, session)
                finally:
                    self._in_flight = []
        finally:
            self._visit(target, f"delivered {delivered}", session.tls)
            if session.usable and time_left(self.attempt_deadline, 1.0):
                # A courtesy: its wait is capped by the time left too.
                session.channel.start(None, Stage.QUIT)
                session.quit()
            else:
                session.close()

    def _transmit(self, session: Session, batch: list[str]) -> SendResult:
        settings = self.settings
        options: Mapping[str, Any] = {
            "mail_options": settings.mail_options,
            "rcpt_options": settings.rcpt_options,
            "dsn": settings.dsn,
        }
        if isinstance(self.content, Message):
            return session.send_message(self.content, settings.sender, batch, **options)
        return session.sendmail(settings.sender, batch, self.content, **options)

    def _judge_result(
        self, batch: list[str], result: SendResult, target: Target, session: Session
    ) -> int:
        count = 0
        for recipient in batch:
            if recipient in result.accepted:
                reply = result.recipient_data_replies.get(recipient) or result.data_reply
                self._settle(
                    recipient,
                    Status.DELIVERED,
                    reply=reply,
                    reason=f"{target.host}: {reply.code} {reply.text}" if reply else target.host,
                    host=target.host,
                    address=target.address,
                    queue_id=queue_id_of(reply),
                    tls=session.tls,
                    tls_policy_failure=self.policy_failures.get(target.host),
                )
                count += 1
            elif recipient in result.refused:
                self._refused(recipient, result.refused[recipient], target)
        return count

    def _judge_error(self, batch: list[str], exc: SMTPClientError, target: Target) -> None:
        """Sort out a transaction that raised: each recipient's own reply
        first, then the exception decides for the rest."""
        where = {"host": target.host, "address": target.address}
        result = exc.result
        known: dict[str, Reply] = {}
        if result is not None:
            known.update(result.refused)
        if isinstance(exc, RecipientsRefused):
            known.update(exc.recipients)  # type: ignore[arg-type]
        for recipient in batch:
            if result is not None and recipient in result.recipient_data_replies:
                reply = result.recipient_data_replies[recipient]
                self._settle(
                    recipient, Status.DELIVERED, reply=reply, queue_id=queue_id_of(reply), **where
                )
            elif recipient in known:
                self._refused(recipient, known[recipient], target)
            elif exc.outcome_unknown:
                self._settle(
                    recipient,
                    Status.UNKNOWN,
                    reason=f"{target.host}: {exc} (the message may have been delivered)",
                    error=exc,
                    **where,
                )
            elif isinstance(exc, PermanentError):
                reply = exc.reply or local_reply(exc)
                self._settle(
                    recipient,
                    Status.FAILED,
                    reply=reply,
                    reason=f"{target.host}: {exc}",
                    error=exc,
                    **where,
                )
            else:
                self._keep_open(
                    recipient, f"{target.host}: {exc}", reply=exc.reply, error=exc, **where
                )
