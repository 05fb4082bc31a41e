"""Opening a session: connect, greeting, EHLO, and the TLS mode's procedure.

``open_channel`` returns the open ``Channel`` and an ``Opened`` value (the
greeting, the EHLO reply and what it offers, the ``TLSOutcome``); it sets
nothing on a ``Session``.

OPPORTUNISTIC (Postfix's ``may``, RFC 7435) tries a verified handshake, then
on a new connection an unverified one (encrypt anyway, record why), then
plaintext after a handshake that broke -- never plaintext on the connection
whose handshake failed.  One total deadline covers every attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from smtpclient.errors import (
    CertificateVerifyError,
    ServerDisconnected,
    SMTPClientError,
    SMTPTimeoutError,
    StartTLSError,
    TLSError,
    TLSRequiredError,
)
from smtpclient.hostname import default_local_hostname
from smtpclient.options import ConnectOptions
from smtpclient.protocol import commands
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Event, SessionState, Stage, check_allowed
from smtpclient.session.budget import CALL_DEADLINE
from smtpclient.session.channel import Channel
from smtpclient.session.config import TLSOutcome
from smtpclient.timeouts import Deadline
from smtpclient.tls import TLSInfo, TLSMode, shared_verifying_context, unverified_context
from smtpclient.transport import Transport

__all__ = ["Opened", "hello", "open_channel", "start_tls_now", "starttls"]

log = logging.getLogger("smtpclient.session")


@dataclass(frozen=True)
class Opened:
    """What opening a session learnt."""

    greeting: Reply
    ehlo_reply: Reply
    extensions: Extensions
    tls: TLSOutcome
    local_hostname: str  # the name EHLO gave


class _Attempt:
    """One connection attempt's progress (the retry decision needs it)."""

    __slots__ = ("handshake_started", "plaintext_reason", "verify_error")  # started: TLS attempted

    def __init__(self, verify_error: str | None, plaintext_reason: str | None) -> None:
        self.verify_error = verify_error
        self.plaintext_reason = plaintext_reason
        self.handshake_started = False


def open_channel(options: ConnectOptions) -> tuple[Channel, Opened]:
    """Connect as *options* say, read the greeting, say EHLO (LHLO) as
    ``options.local_hostname`` (None: the default name for the local
    address) and apply the TLS mode.

    Raises: as ``Session.connect``.
    """
    mode = options.tls_mode
    settings = options.timeouts
    ssl_context = options.ssl_context
    context = ssl_context
    stage = "verify"  # then "unverified", then "plain" (OPPORTUNISTIC only)
    verify_error: str | None = None
    plaintext_reason: str | None = None
    cap = CALL_DEADLINE.get()  # the whole call's budget, if a face opened one
    total = Deadline(settings.total, Stage.CONNECT, cap) if settings.total else cap
    may_retry = mode is TLSMode.OPPORTUNISTIC and options.sock is None
    while True:
        channel = Channel(
            _open_transport(options, total),
            host=options.host,
            timeouts=settings,
            reply_limits=options.reply_limits,
        )
        channel.total = total
        attempt = _Attempt(verify_error, plaintext_reason)
        name = options.local_hostname or _default_name(channel)
        tls: TLSInfo | None = channel.transport.tls
        try:
            if mode is TLSMode.IMPLICIT:
                tls = _handshake_now(
                    channel, options, context or shared_verifying_context(), attempt
                )
            greeting = _greeting(channel)
            ehlo_reply, extensions = hello(channel, name, lmtp=options.lmtp)
            if mode in (TLSMode.STARTTLS, TLSMode.OPPORTUNISTIC) and stage != "plain":
                if stage == "unverified":
                    context = unverified_context(ssl_context)
                if extensions.starttls:
                    tls = _starttls(
                        channel, options, context or shared_verifying_context(), attempt
                    )
                    ehlo_reply, extensions = hello(channel, name, lmtp=options.lmtp)
                elif mode is TLSMode.STARTTLS:
                    raise TLSRequiredError(
                        "TLS is required (tls=TLSMode.STARTTLS) but the server did not "
                        "offer STARTTLS",
                        stage=Stage.STARTTLS,
                        host=options.host,
                    )
                else:
                    attempt.plaintext_reason = "the server did not offer STARTTLS"
                    log.info("%s does not offer STARTTLS; continuing without TLS", options.host)
        except StartTLSError as exc:
            if mode is TLSMode.OPPORTUNISTIC and channel.state is SessionState.READY:
                # RFC 3207 §4: after a refusal the plaintext session goes on.
                code = exc.reply.code if exc.reply is not None else "?"
                log.info("%s refused STARTTLS (%s); continuing without TLS", options.host, code)
                channel.total = None
                outcome = TLSOutcome(None, f"the server answered STARTTLS with {code}", None)
                return channel, Opened(greeting, ehlo_reply, extensions, outcome, name)
            channel.abort()
            raise
        except CertificateVerifyError as exc:
            channel.abort()
            if may_retry and stage == "verify":
                log.info("%s: %s; reconnecting to encrypt without verifying", options.host, exc)
                verify_error = exc.message
                stage = "unverified"
                continue
            raise
        except (TLSError, SMTPTimeoutError, ServerDisconnected) as exc:
            channel.abort()
            tls_broke = attempt.handshake_started and not isinstance(exc, TLSRequiredError)
            if may_retry and stage != "plain" and tls_broke:
                log.info("%s: TLS failed (%s); reconnecting without TLS", options.host, exc)
                plaintext_reason = f"TLS failed on an earlier connection: {exc.message}"
                stage = "plain"
                continue
            raise
        except BaseException:
            channel.abort()
            raise
        channel.total = None
        outcome = TLSOutcome(tls, attempt.plaintext_reason, attempt.verify_error)
        return channel, Opened(greeting, ehlo_reply, extensions, outcome, name)


def _default_name(channel: Channel) -> str:
    return default_local_hostname(channel.transport.local_address)


def _open_transport(options: ConnectOptions, total: Deadline | None) -> Transport:
    if options.sock is not None:
        return Transport(options.sock, options.host)
    timeouts = options.timeouts
    deadline = Deadline(timeouts.connect_total, Stage.CONNECT, total)
    return Transport.connect(
        options.host,
        options.port,
        per_address=timeouts.connect,
        deadline=deadline,
        source_address=options.source_address,
    )


def _greeting(channel: Channel) -> Reply:
    """Read the greeting.

    Raises:
        GreetingRefused: it was not 220 (after a QUIT).
    """
    check_allowed("greeting", channel.state)
    reply = channel.read(Stage.GREETING)
    if reply.code != 220:
        channel.close_politely()
        raise channel.error(Stage.GREETING, reply)
    channel.transition(Event.GREETING)
    return reply


def hello(channel: Channel, name: str, *, lmtp: bool) -> tuple[Reply, Extensions]:
    """Say EHLO (LHLO for LMTP; HELO when EHLO is not recognised); return
    the reply and what it offers.

    Raises:
        HeloRefused: neither was accepted.
        ProtocolError: a reply out of step (the session is closed).
    """
    check_allowed("ehlo", channel.state)
    if channel.has_buffered():
        # A reply before EHLO was sent (a second greeting, a server talking
        # out of turn): paired with EHLO it would shift every later reply.
        channel.check_unsolicited(Stage.EHLO)
    if lmtp:
        reply = channel.command(commands.lhlo(name), Stage.EHLO)
    else:
        reply = channel.command(commands.ehlo(name), Stage.EHLO)
        if reply.code in (500, 502):  # EHLO not recognised: an RFC 821 server
            reply = channel.command(commands.helo(name), Stage.EHLO)
            if reply.code == 250:
                channel.transition(Event.HELLO)
                return reply, Extensions(reply.lines[0].split(" ", 1)[0], esmtp=False)
    if reply.code != 250:
        # RFC 5321 §4.3.2: success is 250 only; another 2xx (a repeated
        # 220 greeting) means the replies are out of step: ProtocolError.
        raise channel.error(Stage.EHLO, reply)
    channel.transition(Event.HELLO)
    return reply, Extensions.parse(reply)


def start_tls_now(
    channel: Channel,
    context: ssl.SSLContext,
    server_hostname: str | None,
    verify_error: str | None = None,
    *,
    stage: Stage = Stage.STARTTLS,
) -> TLSInfo:
    """Handshake now (implicit TLS, or after a 220 to STARTTLS); return what
    it produced (*verify_error*: why an earlier attempt did not verify).
    *stage* names the step in errors and picks the deadline.

    Raises:
        ValueError: the context checks host names but there is no name.
        CertificateVerifyError, TLSError, SMTPTimeoutError: the handshake failed.
    """
    if context.check_hostname and not server_hostname:
        raise ValueError("this ssl_context checks host names: pass server_hostname=")
    info = channel.transport.start_tls(context, server_hostname, channel.deadline(stage))
    if not info.verified and verify_error is not None:
        info = dataclasses.replace(info, verify_error=verify_error)
    return info


def _handshake_now(
    channel: Channel, options: ConnectOptions, context: ssl.SSLContext, attempt: _Attempt
) -> TLSInfo:
    attempt.handshake_started = True
    # TLS from the first byte is part of connecting (RFC 8314): its
    # failures say stage=connect, not starttls.
    return start_tls_now(
        channel, context, options.server_hostname, attempt.verify_error, stage=Stage.CONNECT
    )


def _starttls(
    channel: Channel, options: ConnectOptions, context: ssl.SSLContext, attempt: _Attempt
) -> TLSInfo:
    return starttls(
        channel,
        context,
        options.server_hostname,
        verify_error=attempt.verify_error,
        started=lambda: setattr(attempt, "handshake_started", True),
    )


def starttls(
    channel: Channel,
    context: ssl.SSLContext,
    server_hostname: str | None,
    *,
    verify_error: str | None = None,
    started: Callable[[], None] | None = None,
) -> TLSInfo:
    """STARTTLS and the handshake; the caller says EHLO again next (every
    capability learnt before TLS is forgotten).  *started*, a callable, is
    called once the server agreed (220): TLS is being attempted.

    Raises:
        StartTLSError: the reply was not 220 (the plaintext session goes on).
        CertificateVerifyError, TLSError: the handshake failed (closed).
        ProtocolError: data nobody asked for before STARTTLS (closed).
    """
    check_allowed("starttls", channel.state)
    channel.check_unsolicited(Stage.STARTTLS)
    reply = channel.command(commands.starttls(), Stage.STARTTLS)
    if reply.code != 220:
        raise StartTLSError(reply=reply, stage=Stage.STARTTLS, host=channel.host)
    if started is not None:
        # From the 220 on, a failure is TLS failing on this connection (a
        # close in the same segment as the 220 included): OPPORTUNISTIC
        # retries in plaintext on a new one.
        started()
    # RFC 3207 §4.2: anything received before the handshake was not
    # protected and may have been injected; it must not be read later
    # as a reply to a command sent under TLS.
    transport = channel.transport
    dropped = channel.discard_received()
    while transport.readable() and dropped < 65536:
        try:
            dropped += len(transport.recv(channel.deadline(Stage.STARTTLS)))
        except SMTPClientError as exc:
            raise channel.broken(exc, Stage.STARTTLS) from exc.__cause__
    if dropped:
        log.warning("%s: discarded %d bytes received after 220 to STARTTLS", channel.host, dropped)
    try:
        info = start_tls_now(channel, context, server_hostname, verify_error)
    except SMTPClientError as exc:
        raise channel.broken(exc, Stage.STARTTLS) from exc.__cause__
    channel.transition(Event.TLS_STARTED)
    return info
