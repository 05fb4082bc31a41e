"""``Mailer``: one submission server, shared by any number of threads.

A Mailer owns a ``SessionPool`` for its server settings.  Each ``send``
checks a session out, sends, and puts it back; ``send_many`` pipelines a
list of messages across the connections it checks out.  Every message ends
with exactly one outcome: a ``SendResult``, or an exception.

Two kinds of second attempt exist:

* A connection that was idle in the pool may have been closed by the server
  meanwhile (servers hang up on idle clients after a minute or so).  When a
  *reused* connection fails with a disconnect or a 421 before any recipient
  could have been accepted (at MAIL or earlier), the message is sent once
  more on a fresh connection.  Nothing of it can have been delivered.
* An optional ``RetryPolicy`` retries transient failures with backoff.  It
  is off by default and never retries a message whose outcome is unknown.
"""

from __future__ import annotations

import copy
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from typing import TypeAlias

from smtpclient.body import BodySource
from smtpclient.credentials import CredentialsProvider, login_credentials
from smtpclient.dkim import DKIMSigner, sign_item, sign_message, sign_raw, signers_from
from smtpclient.envelope import DSN, Recipient
from smtpclient.errors import PoolClosedError, SMTPClientError
from smtpclient.options import DEFAULT_MAX_RECIPIENTS, ConnectOptions
from smtpclient.pool import SessionPool
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.ratelimit import RateLimit, SendLimits
from smtpclient.results import SendResult
from smtpclient.retry import RetryPolicy, closed_while_idle, never_sent, resendable
from smtpclient.server import ServerSettings
from smtpclient.session import Session
from smtpclient.session.budget import overall
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode

__all__ = ["Mailer"]

log = logging.getLogger(__name__)

Item: TypeAlias = Message | tuple[str, Sequence[str] | str, BodySource]


class Mailer:
    """Send through one server from any number of threads, over pooled connections.

    The connection options are ``Session.connect``'s (all but *sock*: a
    pool opens connections of its own) and make one ``ConnectOptions``
    (``settings.options``); *username*/*password* or *credentials*
    (``Password``, ``OAuth2`` or a callable returning one, called for every
    new connection) authenticate each connection once, with
    *auth_mechanism* if given.  Pool tuning: *max_connections*,
    *checkout_timeout* (seconds a send waits for a free connection),
    *max_idle_time*, *max_age*, *max_messages* and *health_check_after*
    (see ``SessionPool``); pass *pool* to share one pool among Mailers (its
    own limits then apply, and ``close()`` leaves it open).  *retry* is a
    ``RetryPolicy`` or a number of attempts (default: no retries); *dsn* is
    the default DSN request for every message.  *rate_limit* is a
    ``RateLimit`` or messages a second, shared by all threads (see
    ``smtpclient.ratelimit``; a server that says it has too many
    connections makes the Mailer use fewer for a while in any case).
    ``timeouts.total`` bounds
    each attempt of ``send``/``sendmail`` as a whole: the checkout (a new
    connection and its AUTH included) through the final reply.
    *dkim* (a ``DKIMSigner`` or several, e.g. RSA and Ed25519) signs every
    message this Mailer sends (``smtpclient.dkim``; raw content must then
    be bytes or str); ``send(..., dkim=...)`` chooses per message.

    Raises:
        TypeError, ValueError: inconsistent or malformed arguments.
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        tls: TLSMode | None = None,
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        credentials: CredentialsProvider | None = None,
        timeouts: Timeouts | float | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        server_hostname: str | None = None,
        max_connections: int = 4,
        lmtp: bool = False,
        use_pipelining: bool = True,
        use_chunking: bool = True,
        allow_insecure_auth: bool = False,
        auth_mechanism: str | None = None,
        reply_limits: ReplyLimits | None = None,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
        checkout_timeout: float = 30.0,
        max_idle_time: float = 30.0,
        max_age: float = 300.0,
        max_messages: int | None = 100,
        health_check_after: float | None = 5.0,
        retry: RetryPolicy | int | None = None,
        dsn: DSN | None = None,
        pool: SessionPool | None = None,
        rate_limit: RateLimit | float | None = None,
        dkim: DKIMSigner | Sequence[DKIMSigner] | None = None,
    ) -> None:
        credentials = login_credentials(username, password, credentials)
        self.dkim = signers_from(dkim)
        options = ConnectOptions(
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            timeouts=Timeouts.coerce(timeouts),
            local_hostname=local_hostname,
            source_address=source_address,
            lmtp=lmtp,
            use_pipelining=use_pipelining,
            use_chunking=use_chunking,
            allow_insecure_auth=allow_insecure_auth,
            reply_limits=reply_limits,
            max_recipients=max_recipients,
            auth_mechanism=auth_mechanism,
        )
        self.settings = ServerSettings.from_options(options, credentials)
        self.retry = RetryPolicy.coerce(retry)
        self.dsn = dsn
        self._owns_pool = pool is None
        self.pool = pool or SessionPool(
            max_connections=max_connections,
            checkout_timeout=checkout_timeout,
            max_idle_time=max_idle_time,
            max_age=max_age,
            max_messages=max_messages,
            health_check_after=health_check_after,
        )
        self.limits = SendLimits(RateLimit.coerce(rate_limit), self.pool)
        self._closed = False

    # --- one message -----------------------------------------------------------------

    def send(
        self,
        message: Message,
        *,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Iterable[str] = (),
        rcpt_options: Iterable[str] = (),
        dsn: DSN | None = None,
        requiretls: bool = False,
        tls_optional: bool = False,
        reencode_8bit: bool = False,
        dkim: DKIMSigner | Sequence[DKIMSigner] | None = None,
    ) -> SendResult:
        """Send an ``email.message.Message`` (envelope from its headers unless
        given; Bcc never transmitted) and return its ``SendResult``.
        *requiretls*, *tls_optional* and *reencode_8bit* are as for
        ``Session.send_message``.  *dkim* signs this message instead of the
        Mailer's signers (``()``: not at all); a signed message is sent
        7-bit-safe whatever the server (``smtpclient.dkim``).

        Raises:
            PoolTimeout: no connection became free within ``checkout_timeout``.
            PoolClosedError: the Mailer is closed.
            SMTPClientError, ValueError, TypeError: as ``Session.send_message``
                (after the retries described in the class documentation).
        """
        if not isinstance(message, Message):
            raise TypeError("send() takes an email.message.Message; use sendmail() for raw data")
        signers = self.dkim if dkim is None else signers_from(dkim)
        if signers:
            sender, recipients, data = sign_message(
                message, signers, sender=from_addr, recipients=to_addrs, tls_optional=tls_optional
            )
            return self.sendmail(
                sender,
                recipients,
                data,
                mail_options=mail_options,
                rcpt_options=rcpt_options,
                dsn=dsn,
                requiretls=requiretls,
                dkim=(),  # signed already
            )
        options = (tuple(mail_options), tuple(rcpt_options))
        chosen = dsn or self.dsn

        def work(session: Session) -> SendResult:
            return session.send_message(
                message,
                from_addr,
                to_addrs,
                mail_options=options[0],
                rcpt_options=options[1],
                dsn=chosen,
                requiretls=requiretls,
                tls_optional=tls_optional,
                reencode_8bit=reencode_8bit,
            )

        return self._deliver(work, resendable=True)

    def sendmail(
        self,
        sender: str,
        recipients: str | Recipient | Iterable[str | Recipient],
        data: BodySource,
        *,
        mail_options: Iterable[str] = (),
        rcpt_options: Iterable[str] = (),
        dsn: DSN | None = None,
        size: int | None = None,
        eight_bit: bool | None = None,
        smtputf8: bool = False,
        requiretls: bool = False,
        binary: bool = False,
        dkim: DKIMSigner | Sequence[DKIMSigner] | None = None,
    ) -> SendResult:
        """Send raw content (bytes, str, a binary file or an iterable of bytes).
        A one-shot iterable is never sent twice, so the retry policy does not
        apply to it.  *dkim* as for ``send``: signed content must be bytes or
        str, and is sent with its line ends made CRLF.

        Raises: as ``send``, and as ``Session.sendmail``.
        """
        signers = self.dkim if dkim is None else signers_from(dkim)
        if signers:
            data = sign_raw(data, signers)
        rcpts = list(recipients) if not isinstance(recipients, (str, Recipient)) else recipients
        chosen = dsn or self.dsn
        if (
            chosen is None
            and mail_options == ()
            and rcpt_options == ()
            and size is None
            and eight_bit is None
            and not (smtputf8 or requiretls or binary)
        ):
            # The usual call: no options to pass on (Session.sendmail's defaults).
            def plain(session: Session) -> SendResult:
                return session.sendmail(sender, rcpts, data)

            return self._deliver(plain, resendable=type(data) is bytes or resendable(data))
        options = (tuple(mail_options), tuple(rcpt_options))

        def work(session: Session) -> SendResult:
            return session.sendmail(
                sender,
                rcpts,
                data,
                mail_options=options[0],
                rcpt_options=options[1],
                dsn=chosen,
                size=size,
                eight_bit=eight_bit,
                smtputf8=smtputf8,
                requiretls=requiretls,
                binary=binary,
            )

        return self._deliver(work, resendable=resendable(data))

    def _deliver(self, work: Callable[[Session], SendResult], *, resendable: bool) -> SendResult:
        retries = 0
        stale_retried = False
        fresh = False
        while True:
            if self._closed:
                self._check_open()  # raises
            # One total per attempt: checkout (a new connection included)
            # through the final reply.
            with overall(self.settings.timeouts.total):
                try:
                    lease = self.limits.checkout(self.pool, self.settings, fresh=fresh)
                except SMTPClientError as exc:
                    if not self._may_retry(exc, retries):
                        raise
                    retries += 1
                    self._pause(retries, exc)
                    continue
                fresh = False
                with lease:
                    try:
                        self.limits.take(1)
                        return work(lease.session)
                    except SMTPClientError as exc:
                        error = exc
            self.limits.observe(error)
            if lease.reused and not stale_retried and closed_while_idle(error):
                log.info("pooled connection was closed by the server (%s); sending again", error)
                stale_retried = fresh = True
                continue
            if not (resendable and self._may_retry(error, retries)):
                raise error
            retries += 1
            self._pause(retries, error)

    # --- many messages ------------------------------------------------------------------

    def send_many(self, messages: Iterable[Item]) -> list[SendResult | Exception]:
        """Send several messages, pipelined across messages on each connection.

        Each item is an ``email.message.Message`` or a ``(sender, recipients,
        data)`` tuple.  Returns one outcome per item, in order: a
        ``SendResult`` or the exception that item met.  Messages the
        connection did not get to (it failed before them) continue on
        another connection; retries are as for ``send``.  With the Mailer's
        *dkim*, every item is signed first (one that cannot be gets its
        error as its outcome).

        Raises:
            PoolClosedError: the Mailer is closed.
        """
        self._check_open()
        items = list(messages)
        if not self.dkim:
            return self._send_many(items)
        early: list[Exception | None] = []
        signed: list[Item] = []
        for item in items:
            try:
                signed.append(sign_item(item, self.dkim))
                early.append(None)
            except (ValueError, TypeError) as exc:
                early.append(exc)
        sent = iter(self._send_many(signed) if signed else [])
        return [error if error is not None else next(sent) for error in early]

    def _send_many(self, items: list[Item]) -> list[SendResult | Exception]:
        count = len(items)
        outcomes: list[SendResult | Exception | None] = [None] * count
        retries = [0] * count
        stale_used = [False] * count
        can_resend = [resendable(item) for item in items]
        pending = list(range(count))
        connect_retries = 0
        fresh = False
        while pending:
            try:
                self._check_open()
                lease = self.limits.checkout(self.pool, self.settings, fresh=fresh)
            except PoolClosedError as exc:  # closed by another thread meanwhile
                for index in pending:
                    outcomes[index] = PoolClosedError(str(exc))
                break
            except SMTPClientError as exc:
                if self._may_retry(exc, connect_retries):
                    connect_retries += 1
                    self._pause(connect_retries, exc)
                    continue
                for position, index in enumerate(pending):
                    outcomes[index] = exc if position == 0 else copy.copy(exc)
                break
            fresh = False
            with lease:
                batch = pending[: self.limits.room(self._room(lease.session, len(pending)))]
                self.limits.take(len(batch))
                results = self._send_batch(lease.session, [items[i] for i in batch])
            self.limits.observe_all(results)
            again: list[int] = []
            wait = 0.0
            for position, (index, outcome) in enumerate(zip(batch, results, strict=True)):
                if not isinstance(outcome, SMTPClientError):
                    outcomes[index] = outcome
                elif never_sent(outcome):
                    again.append(index)
                elif (
                    position == 0
                    and lease.reused
                    and not stale_used[index]
                    and closed_while_idle(outcome)
                ):
                    log.info("pooled connection was closed by the server (%s); again", outcome)
                    stale_used[index] = fresh = True
                    again.append(index)
                elif can_resend[index] and self._may_retry(outcome, retries[index]):
                    retries[index] += 1
                    assert self.retry is not None
                    wait = max(wait, self.retry.delay(retries[index]))
                    again.append(index)
                else:
                    outcomes[index] = outcome
            pending = sorted(again + pending[len(batch) :])
            if wait and pending:
                time.sleep(wait)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def _room(self, session: Session, wanted: int) -> int:
        """How many messages this connection may still carry before retiring."""
        limit = self.pool.max_messages
        if limit is None:
            return wanted
        return max(1, min(wanted, limit - session.messages_sent))

    @staticmethod
    def _send_batch(session: Session, batch: list[Item]) -> list[SendResult | Exception]:
        try:
            return session.send_many(batch)
        except Exception as exc:
            # Something escaped the batch (a body iterator failing mid-way):
            # which of its messages went is not known.
            unknown: list[SendResult | Exception] = []
            for _ in batch:
                error = SMTPClientError(
                    f"sending was interrupted ({type(exc).__name__}: {exc}); this message "
                    "may or may not have been delivered",
                    host=session.host,
                    outcome_unknown=True,
                )
                error.__cause__ = exc
                unknown.append(error)
            return unknown

    # --- retries -------------------------------------------------------------------------

    def _may_retry(self, error: SMTPClientError, retries_done: int) -> bool:
        return self.retry is not None and self.retry.allows(error, retries_done)

    def _pause(self, retry: int, error: SMTPClientError) -> None:
        assert self.retry is not None
        delay = self.retry.delay(retry)
        log.info("transient failure (%s); retry %d in %.1f s", error, retry, delay)
        time.sleep(delay)

    # --- lifetime ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError("this Mailer is closed")

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop sending and close the pool's connections (QUIT), waiting up to
        *timeout* seconds for sends in progress.  A shared ``pool=`` is left
        open.  Safe to call twice."""
        self._closed = True
        if self._owns_pool:
            self.pool.close(timeout)

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Mailer {self.settings.key}{' closed' if self._closed else ''}>"
