"""SMTP AUTH (RFC 4954): drive a SASL mechanism over a session's channel.

Mechanisms follow the credential type: a ``Password`` uses SCRAM-SHA-256,
SCRAM-SHA-1, CRAM-MD5, PLAIN or LOGIN (strongest first); an ``OAuth2``
token uses OAUTHBEARER (RFC 7628) or XOAUTH2.  A password never selects an
OAuth mechanism and a token never a password one.  After a 535 no other
mechanism is tried (that is how accounts get locked).  Secrets never reach
the transcript: every client line of the exchange is logged as
``<redacted>``, and no exception message quotes one.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from smtpclient.credentials import Credentials, CredentialsProvider, OAuth2, Password
from smtpclient.errors import (
    ExtensionNotSupported,
    InsecureAuthError,
    PermanentAuthError,
    ProtocolError,
    SMTPClientError,
)
from smtpclient.mechanisms import MECHANISMS, Mechanism, TokenMechanism, choose, create
from smtpclient.protocol import commands
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.saslprep import SASLError, saslprep

if TYPE_CHECKING:
    from collections.abc import Callable

    from smtpclient.protocol.extensions import Extensions
    from smtpclient.session.channel import Channel
    from smtpclient.session.config import TLSOutcome
    from smtpclient.tls import TLSInfo

__all__ = [
    "MECHANISMS",
    "Credentials",
    "CredentialsProvider",
    "Mechanism",
    "OAuth2",
    "Password",
    "SASLError",
    "authenticate",
    "choose",
    "run",
    "saslprep",
]

MAX_CHALLENGES = 6  # no mechanism here needs more than three rounds
# RFC 4954 §4: the AUTH command line obeys RFC 5321's 512-octet limit; a
# longer initial response (a big OAuth token) waits for the first 334.
MAX_AUTH_LINE = 512


def _cancel(channel: Channel, reason: str) -> SMTPClientError:
    """Abort the exchange with "*" (RFC 4954 §4) and build the error.

    Raises:
        ProtocolError, ServiceClosing: a reply came before "*" was sent.
    """
    channel.check_unsolicited(Stage.AUTH)
    try:
        channel.write(b"*\r\n", Stage.AUTH, shown="*")
        channel.read(Stage.AUTH)
    except SMTPClientError:
        pass
    return PermanentAuthError(reason, stage=Stage.AUTH, host=channel.host)


def _exchange(channel: Channel, mechanism: Mechanism) -> Reply:
    """Drive one AUTH exchange to its final (non-334) reply."""
    initial = mechanism.initial()
    withheld: bytes | None = None
    line = commands.auth(mechanism.name)
    shown = f"AUTH {mechanism.name}"
    if initial is not None:
        encoded = base64.b64encode(initial).decode("ascii") or "="
        if len(mechanism.name) + len(encoded) + 8 <= MAX_AUTH_LINE:  # "AUTH " " " CRLF
            line, shown = commands.auth(mechanism.name, encoded), f"{shown} <redacted>"
        else:
            withheld = initial  # sent as the answer to the first (empty) challenge
    channel.write(line, Stage.AUTH, shown=shown)
    reply = channel.read(Stage.AUTH)
    rounds = 0
    while reply.code == 334:
        rounds += 1
        if rounds > MAX_CHALLENGES:
            raise _cancel(channel, f"AUTH {mechanism.name}: the server kept challenging")
        try:
            challenge = base64.b64decode("".join(reply.lines).strip(), validate=True)
        except ValueError:
            raise _cancel(channel, "AUTH: the server's challenge is not base64") from None
        if withheld is not None:
            response, withheld = withheld, None
        else:
            try:
                response = mechanism.respond(challenge)
            except SASLError as exc:
                raise _cancel(channel, str(exc)) from exc
        # A reply before our answer to this challenge cannot be its answer:
        # the exchange is out of step; nothing more is written.
        channel.check_unsolicited(Stage.AUTH)
        channel.write(base64.b64encode(response) + b"\r\n", Stage.AUTH, shown="<redacted>")
        reply = channel.read(Stage.AUTH)
    if reply.code == 235:
        try:
            mechanism.finish()
        except SASLError as exc:
            channel.abort()
            raise ProtocolError(str(exc), stage=Stage.AUTH, host=channel.host) from exc
    return reply


def run(
    channel: Channel,
    extensions: Extensions,
    credentials: Credentials,
    requested: str | None,
    *,
    verified_tls: bool = False,
) -> Reply:
    """Authenticate on *channel* (whose EHLO offered *extensions*) with
    *credentials*; return the 235 reply.  *verified_tls* (the session is
    verified TLS) puts PLAIN first (``mechanisms.choose``).

    Raises:
        ValueError, TypeError: unusable credentials or mechanism name; nothing was sent.
        AuthenticationFailed: 535 (after one token refresh for OAuth2 with a callable).
        AuthenticationError: any other refusal, or a mechanism failure.
        ExtensionNotSupported: no usable mechanism.
        ProtocolError: the server accepted without proving itself (SCRAM).
    """
    if not isinstance(credentials, Credentials):
        raise TypeError(f"credentials must be Password or OAuth2, not {type(credentials).__name__}")
    name = choose(credentials, extensions.auth_mechanisms, requested, verified_tls=verified_tls)
    factory = MECHANISMS[name]
    # SCRAM caches its derived keys per server (scramcache).
    mechanism = create(name, credentials, server=f"{channel.host} {channel.transport.peer}")
    reply = _exchange(channel, mechanism)
    if reply.code == 535 and isinstance(credentials, OAuth2) and callable(credentials.token):
        # The token may have expired: ask for a current one and try once
        # more -- unless it is the very token just refused.
        assert isinstance(mechanism, TokenMechanism)
        fresh = credentials.current_token()
        if fresh != mechanism.token:
            mechanism = factory(credentials, fresh)  # type: ignore[call-arg]
            reply = _exchange(channel, mechanism)
    if reply.code != 235:
        detail = mechanism.failure_detail()
        message = f"{reply.text} (server said: {detail})" if detail else None
        raise channel.error(Stage.AUTH, reply, message)
    return reply


def authenticate(
    channel: Channel,
    extensions: Extensions,
    outcome: TLSOutcome | None,
    tls: TLSInfo | None,
    credentials: Credentials | Callable[[], Credentials],
    requested: str | None,
    *,
    allow_insecure: bool,
) -> Reply:
    """``Session.login``/``authenticate``: refuse to send secrets over a
    connection that is not verified TLS (unless *allow_insecure*), then
    ``run``.  *outcome* says why TLS is missing, when opening knew.

    Raises:
        InsecureAuthError: not verified TLS.
        ExtensionNotSupported: the server offers no AUTH.
        ...and as ``run``.
    """
    if not allow_insecure and not (tls is not None and tls.verified):
        reason = _insecure_reason(extensions, outcome, tls)
        raise InsecureAuthError(reason, stage=Stage.AUTH, host=channel.host)
    if "AUTH" not in extensions:
        raise ExtensionNotSupported(
            "the server does not offer AUTH", extension="AUTH", host=channel.host
        )
    if callable(credentials) and not isinstance(credentials, Credentials):
        # A provider: asked only now, when the secret is about to be used.
        credentials = credentials()
    channel.start(channel.timeouts.total, Stage.AUTH)  # AUTH is under the total too
    try:
        channel.check_unsolicited(Stage.AUTH)
        verified = tls is not None and tls.verified
        return run(channel, extensions, credentials, requested, verified_tls=verified)
    finally:
        channel.finish()


def _insecure_reason(
    extensions: Extensions, outcome: TLSOutcome | None, tls: TLSInfo | None
) -> str:
    if tls is None:
        why = "the session is not encrypted"
        if outcome is not None and outcome.plaintext_reason:
            why += f" ({outcome.plaintext_reason})"
        elif not extensions.starttls:
            why += " (the server did not offer STARTTLS)"
        fix = "connect with tls=TLSMode.STARTTLS (port 587) or tls=TLSMode.IMPLICIT (port 465)"
    else:
        why = "the server's TLS certificate was not verified"
        if tls.verify_error:
            why += f" ({tls.verify_error})"
        fix = "pass ssl_context= with the CA that signed it"
    return (
        f"refusing to send credentials: {why}; {fix}, or pass allow_insecure_auth=True "
        "to Session.connect() if you accept the risk"
    )
