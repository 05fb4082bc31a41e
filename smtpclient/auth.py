"""SMTP AUTH (RFC 4954): drive a SASL mechanism over a session.

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
from smtpclient.errors import PermanentAuthError, ProtocolError, SMTPClientError
from smtpclient.mechanisms import MECHANISMS, Mechanism, TokenMechanism, choose, create
from smtpclient.protocol import commands
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.saslprep import SASLError, saslprep

if TYPE_CHECKING:
    from smtpclient.session import Session

__all__ = [
    "MECHANISMS",
    "Credentials",
    "CredentialsProvider",
    "Mechanism",
    "OAuth2",
    "Password",
    "SASLError",
    "choose",
    "run",
    "saslprep",
]

MAX_CHALLENGES = 6  # no mechanism here needs more than three rounds
# RFC 4954 §4: the AUTH command line obeys RFC 5321's 512-octet limit; a
# longer initial response (a big OAuth token) waits for the first 334.
MAX_AUTH_LINE = 512


def _cancel(session: Session, reason: str) -> SMTPClientError:
    """Abort the exchange with "*" (RFC 4954 §4) and build the error."""
    try:
        session._auth_write(b"*\r\n", shown="*")
        session._auth_read()
    except SMTPClientError:
        pass
    return PermanentAuthError(reason, stage=Stage.AUTH, host=session.host)


def _exchange(session: Session, mechanism: Mechanism) -> Reply:
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
    session._auth_write(line, shown)
    reply = session._auth_read()
    rounds = 0
    while reply.code == 334:
        rounds += 1
        if rounds > MAX_CHALLENGES:
            raise _cancel(session, f"AUTH {mechanism.name}: the server kept challenging")
        try:
            challenge = base64.b64decode("".join(reply.lines).strip(), validate=True)
        except ValueError:
            raise _cancel(session, "AUTH: the server's challenge is not base64") from None
        if withheld is not None:
            response, withheld = withheld, None
        else:
            try:
                response = mechanism.respond(challenge)
            except SASLError as exc:
                raise _cancel(session, str(exc)) from exc
        session._auth_write(base64.b64encode(response) + b"\r\n", "<redacted>")
        reply = session._auth_read()
    if reply.code == 235:
        try:
            mechanism.finish()
        except SASLError as exc:
            session._abort()
            raise ProtocolError(str(exc), stage=Stage.AUTH, host=session.host) from exc
    return reply


def run(session: Session, credentials: Credentials, requested: str | None) -> Reply:
    """Authenticate *session* with *credentials*; return the 235 reply.

    Raises:
        ValueError, TypeError: unusable credentials or mechanism name; nothing was sent.
        AuthenticationFailed: 535 (after one token refresh for OAuth2 with a callable).
        AuthenticationError: any other refusal, or a mechanism failure.
        ExtensionNotSupported: no usable mechanism.
        ProtocolError: the server accepted without proving itself (SCRAM).
    """
    if not isinstance(credentials, Credentials):
        raise TypeError(f"credentials must be Password or OAuth2, not {type(credentials).__name__}")
    verified = session.tls is not None and session.tls.verified
    name = choose(credentials, session.extensions.auth_mechanisms, requested, verified_tls=verified)
    factory = MECHANISMS[name]
    mechanism = create(name, credentials, server=f"{session.host}:{session.port}")
    reply = _exchange(session, mechanism)
    if reply.code == 535 and isinstance(credentials, OAuth2) and callable(credentials.token):
        # The token may have expired: ask for a current one and try once
        # more -- unless it is the very token just refused.
        assert isinstance(mechanism, TokenMechanism)
        fresh = credentials.current_token()
        if fresh != mechanism.token:
            mechanism = factory(credentials, fresh)  # type: ignore[call-arg]
            reply = _exchange(session, mechanism)
    if reply.code != 235:
        detail = mechanism.failure_detail()
        message = f"{reply.text} (server said: {detail})" if detail else None
        raise session._auth_error(reply, message)
    return reply
