"""Opening a session: connect, greeting, EHLO, and the TLS mode's procedure.

OPPORTUNISTIC (Postfix's ``may``, RFC 7435) tries a verified handshake, then
on a new connection an unverified one (encrypt anyway, record why), then
plaintext after a handshake that broke -- never plaintext on the connection
whose handshake failed.  One total deadline covers every attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from smtpclient.errors import (
    CertificateVerifyError,
    ServerDisconnected,
    SMTPClientError,
    SMTPTimeoutError,
    StartTLSError,
    TLSError,
    TLSRequiredError,
)
from smtpclient.protocol import commands
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.protocol.state import SessionState, Stage, check_allowed
from smtpclient.sockets import is_ip_literal
from smtpclient.timeouts import Deadline, Timeouts
from smtpclient.tls import TLSMode, default_mode, unverified_context, verifying_context
from smtpclient.transport import Transport

if TYPE_CHECKING:
    from smtpclient.session import Session

__all__ = ["connect", "handshake", "start_tls_now", "starttls", "upgrade"]

log = logging.getLogger("smtpclient.session")


def connect(
    cls: type[Session],
    host: str,
    port: int = 25,
    *,
    tls: TLSMode | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeouts: Timeouts | float | None = None,
    local_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    sock: socket.socket | None = None,
    lmtp: bool = False,
    use_pipelining: bool = True,
    use_chunking: bool = True,
    allow_insecure_auth: bool = False,
    reply_limits: ReplyLimits | None = None,
    max_recipients: int = 100,
) -> Session:
    """The body of ``Session.connect`` (see there)."""
    if not isinstance(host, str) or not host:
        raise TypeError("host must be a non-empty str")
    commands.check_text(host, "host")  # before any lookup: "\r\n" is no name
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port must be an int between 1 and 65535, not {port!r}")
    if local_hostname is not None:
        commands.ehlo(local_hostname)  # refused here, before connecting
    if not isinstance(max_recipients, int) or max_recipients < 1:
        raise ValueError(f"max_recipients must be a positive int, not {max_recipients!r}")
    is_unix = host.startswith("/")
    mode = tls if tls is not None else (TLSMode.NONE if is_unix else default_mode(port))
    if not isinstance(mode, TLSMode):
        raise TypeError(f"tls must be a TLSMode, not {type(mode).__name__}")
    settings = Timeouts.coerce(timeouts)
    if server_hostname is None and not is_unix:
        # The certificate is checked against this name (and it is sent as
        # SNI); an IP literal is checked against the certificate's IP
        # entries (ssl sends no SNI for an address).
        server_hostname = host.strip("[]") if is_ip_literal(host) is not None else host
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "timeouts": settings,
        "local_hostname": local_hostname,
        "server_hostname": server_hostname,
        "lmtp": lmtp,
        "use_pipelining": use_pipelining,
        "use_chunking": use_chunking,
        "allow_insecure_auth": allow_insecure_auth,
        "reply_limits": reply_limits,
        "max_recipients": max_recipients,
    }
    context = ssl_context
    # OPPORTUNISTIC (Postfix "may", RFC 7435) tries "verify", then on a
    # new connection "unverified" (encrypt anyway, record why), then
    # "plain" after a failed handshake -- never plaintext on a
    # connection whose handshake broke.  One total deadline covers all.
    attempt = "verify"
    verify_error: str | None = None
    plaintext_reason: str | None = None
    total = Deadline(settings.total, Stage.CONNECT) if settings.total else None
    may_retry = mode is TLSMode.OPPORTUNISTIC and sock is None
    while True:
        transport = _open_transport(host, port, settings, total, source_address, sock)
        session = cls(transport, **options)
        session._total = total
        session._verify_error = verify_error
        session._plaintext_reason = plaintext_reason
        try:
            if mode is TLSMode.IMPLICIT:
                # TLS from the first byte is part of connecting (RFC 8314):
                # its failures say stage=connect, not starttls.
                start_tls_now(session, context or verifying_context(), stage=Stage.CONNECT)
            handshake(session)
            if mode in (TLSMode.STARTTLS, TLSMode.OPPORTUNISTIC) and attempt != "plain":
                if attempt == "unverified":
                    context = unverified_context(ssl_context)
                upgrade(session, mode, context)
        except StartTLSError as exc:
            if mode is TLSMode.OPPORTUNISTIC and session._state is SessionState.READY:
                # RFC 3207 §4: after a refusal the plaintext session goes on.
                code = exc.reply.code if exc.reply is not None else "?"
                session._plaintext_reason = f"the server answered STARTTLS with {code}"
                log.info("%s refused STARTTLS (%s); continuing without TLS", host, code)
                session._total = None
                return session
            session._abort()
            raise
        except CertificateVerifyError as exc:
            session._abort()
            if may_retry and attempt == "verify":
                log.info("%s: %s; reconnecting to encrypt without verifying", host, exc.message)
                verify_error = exc.message
                attempt = "unverified"
                continue
            raise
        except (TLSError, SMTPTimeoutError, ServerDisconnected) as exc:
            session._abort()
            tls_broke = session._tls_handshake_started and not isinstance(exc, TLSRequiredError)
            if may_retry and attempt != "plain" and tls_broke:
                log.info("%s: TLS failed (%s); reconnecting without TLS", host, exc.message)
                plaintext_reason = f"TLS failed on an earlier connection: {exc.message}"
                attempt = "plain"
                continue
            raise
        except BaseException:
            session._abort()
            raise
        session._total = None
        return session


def _open_transport(
    host: str,
    port: int,
    timeouts: Timeouts,
    total: Deadline | None,
    source_address: tuple[str, int] | None,
    sock: socket.socket | None,
) -> Transport:
    if sock is not None:
        return Transport(sock, host)
    deadline = Deadline(timeouts.connect_total, Stage.CONNECT, total)
    return Transport.connect(
        host,
        port,
        per_address=timeouts.connect,
        deadline=deadline,
        source_address=source_address,
    )


def handshake(session: Session) -> None:
    """Read the greeting and say EHLO."""
    check_allowed("greeting", session._state)
    reply = session._read(Stage.GREETING)
    if reply.code != 220:
        session._close_politely()
        raise session._error(Stage.GREETING, reply)
    session.greeting = reply
    session._state = SessionState.GREETED
    session._hello()


def upgrade(session: Session, mode: TLSMode, context: ssl.SSLContext | None) -> None:
    if session.extensions.starttls:
        starttls(session, context or verifying_context())
        return
    if mode is TLSMode.STARTTLS:
        raise TLSRequiredError(
            "TLS is required (tls=TLSMode.STARTTLS) but the server did not offer STARTTLS",
            stage=Stage.STARTTLS,
            host=session.host,
        )
    session._plaintext_reason = "the server did not offer STARTTLS"
    log.info("%s does not offer STARTTLS; continuing without TLS", session.host)


def start_tls_now(
    session: Session, context: ssl.SSLContext, *, stage: Stage = Stage.STARTTLS
) -> None:
    """Handshake now (implicit TLS, or after a 220 to STARTTLS); *stage*
    names the step in errors and picks the deadline.

    Raises:
        ValueError: the context checks host names but there is no name.
        CertificateVerifyError, TLSError, SMTPTimeoutError: the handshake failed.
    """
    if context.check_hostname and not session.server_hostname:
        raise ValueError("this ssl_context checks host names: pass server_hostname=")
    session._tls_handshake_started = True
    info = session._transport.start_tls(context, session.server_hostname, session._deadline(stage))
    if not info.verified and session._verify_error is not None:
        info = dataclasses.replace(info, verify_error=session._verify_error)
    session.tls = info


def starttls(session: Session, context: ssl.SSLContext) -> None:
    check_allowed("starttls", session._state)
    if session.tls is not None:
        raise RuntimeError("TLS is already active on this session")
    session._check_unsolicited(Stage.STARTTLS)
    reply = session._command(commands.starttls(), Stage.STARTTLS)
    if reply.code != 220:
        raise StartTLSError(reply=reply, stage=Stage.STARTTLS, host=session.host)
    # RFC 3207 §4.2: anything received before the handshake was not
    # protected and may have been injected; it must not be read later
    # as a reply to a command sent under TLS.
    dropped = session._parser.discard()
    while session._transport.readable() and dropped < 65536:
        try:
            dropped += len(session._transport.recv(session._deadline(Stage.STARTTLS)))
        except SMTPClientError as exc:
            raise session._broken(exc, Stage.STARTTLS) from exc.__cause__
    if dropped:
        log.warning("%s: discarded %d bytes received after 220 to STARTTLS", session.host, dropped)
    try:
        start_tls_now(session, context)
    except SMTPClientError as exc:
        raise session._broken(exc, Stage.STARTTLS) from exc.__cause__
    # Forget everything learnt before TLS and ask again.
    session.extensions = Extensions()
    session._state = SessionState.GREETED
    session._hello()
