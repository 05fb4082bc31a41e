"""SASL for SMTP AUTH (RFC 4954): credentials, mechanisms as small step objects,
and the exchange that drives them.

Mechanisms follow the credential type: a ``Password`` uses SCRAM-SHA-256,
SCRAM-SHA-1, CRAM-MD5, PLAIN or LOGIN (strongest first); an ``OAuth2``
token uses OAUTHBEARER (RFC 7628) or XOAUTH2.  A password never selects an
OAuth mechanism and a token never a password one.  After a 535 no other
mechanism is tried (that is how accounts get locked).  Secrets never reach
the transcript: every client line of the exchange is logged as
``<redacted>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from smtpclient.errors import (
    ExtensionNotSupported,
    PermanentAuthError,
    ProtocolError,
    SMTPClientError,
)
from smtpclient.protocol import commands
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage

if TYPE_CHECKING:
    from smtpclient.session import Session

__all__ = [
    "MECHANISMS",
    "Credentials",
    "Mechanism",
    "OAuth2",
    "Password",
    "SASLError",
    "run",
    "saslprep",
]

MAX_CHALLENGES = 6  # no mechanism here needs more than three rounds
SCRAM_MAX_ITERATIONS = 1_000_000  # a hostile server must not make us burn minutes


class SASLError(ValueError):
    """A mechanism cannot continue (bad challenge, failed server proof)."""


@dataclass(frozen=True)
class Credentials:
    """Base class of what AUTH proves."""

    username: str


@dataclass(frozen=True)
class Password(Credentials):
    """A user name and password (never shown in repr or logs)."""

    password: str = field(repr=False, default="")

    def __post_init__(self) -> None:
        for name in ("username", "password"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be str")


@dataclass(frozen=True)
class OAuth2(Credentials):
    """An OAuth 2.0 bearer token, or a callable returning a fresh one.

    With a callable, a refused token is refreshed (the callable is called
    again) and tried once more.
    """

    token: str | Callable[[], str] = field(repr=False, default="")
    host: str | None = None  # OAUTHBEARER's optional host/port fields
    port: int | None = None

    def current_token(self) -> str:
        """The token to send now."""
        token = self.token() if callable(self.token) else self.token
        if not isinstance(token, str) or not token:
            raise TypeError("the OAuth2 token must be a non-empty str")
        return token


def saslprep(text: str) -> str:
    """Prepare a user name or password as RFC 4013 (SASLprep) asks.

    Raises:
        SASLError: the string holds prohibited or bidi-invalid characters.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal:
        return normal
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for ch in normal:
        if any(check(ch) for check in prohibited):
            raise SASLError(f"prohibited character U+{ord(ch):04X} in SASL string")
    if any(stringprep.in_table_d1(ch) for ch in normal):
        if any(stringprep.in_table_d2(ch) for ch in normal):
            raise SASLError("SASL string mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1])):
            raise SASLError("right-to-left SASL string must start and end with RTL characters")
    return normal


class Mechanism:
    """One SASL exchange: ``initial()`` then ``respond()`` per 334 challenge."""

    name: ClassVar[str]

    def initial(self) -> bytes | None:
        """The initial response sent with AUTH, or None to wait for a challenge."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """The response to a server challenge."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called after 235; raise SASLError if the server did not prove itself."""


class _PasswordMechanism(Mechanism):
    def __init__(self, credentials: Password) -> None:
        self.username = credentials.username
        self.password = credentials.password


class Plain(_PasswordMechanism):
    """PLAIN (RFC 4616): one round trip."""

    name = "PLAIN"

    def initial(self) -> bytes:
        return b"\0" + self.username.encode("utf-8") + b"\0" + self.password.encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        # A server that ignored the initial response asks with an empty challenge.
        return self.initial()


class Login(_PasswordMechanism):
    """LOGIN (legacy): user name, then password, whatever the prompts say."""

    name = "LOGIN"

    def __init__(self, credentials: Password) -> None:
        super().__init__(credentials)
        self._step = 0

    def respond(self, challenge: bytes) -> bytes:
        self._step += 1
        if self._step == 1:
            return self.username.encode("utf-8")
        if self._step == 2:
            return self.password.encode("utf-8")
        raise SASLError("LOGIN: the server asked for more than a user name and password")


class CramMD5(_PasswordMechanism):
    """CRAM-MD5 (RFC 2195, legacy)."""

    name = "CRAM-MD5"

    def respond(self, challenge: bytes) -> bytes:
        digest = hmac.new(self.password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
        return self.username.encode("utf-8") + b" " + digest.encode("ascii")


class _Scram(_PasswordMechanism):
    """SCRAM (RFC 5802, RFC 7677) without channel binding."""

    hash_name: ClassVar[str]

    def __init__(self, credentials: Password, nonce: str | None = None) -> None:
        super().__init__(credentials)
        user = saslprep(self.username).replace("=", "=3D").replace(",", "=2C")
        self._nonce = nonce or secrets.token_urlsafe(24)
        self._first_bare = f"n={user},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._verified = False
        self._step = 0

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()

    def initial(self) -> bytes:
        return ("n,," + self._first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        self._step += 1
        text = challenge.decode("utf-8", "replace")
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "e" in fields:
            raise SASLError(f"SCRAM: server reported error {fields['e']!r}")
        if self._step == 1:
            return self._client_final(text, fields)
        if self._step == 2 and "v" in fields:
            expected = self._server_signature
            if expected is None or not hmac.compare_digest(base64.b64decode(fields["v"]), expected):
                raise SASLError("SCRAM: the server's signature is wrong (not the real server?)")
            self._verified = True
            return b""
        raise SASLError("SCRAM: unexpected challenge")

    def _client_final(self, server_first: str, fields: dict[str, str]) -> bytes:
        try:
            nonce, salt, iterations = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
        except (KeyError, ValueError) as exc:
            raise SASLError("SCRAM: malformed server-first message") from exc
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SASLError("SCRAM: the server's nonce does not extend ours")
        if not 1 <= iterations <= SCRAM_MAX_ITERATIONS:
            raise SASLError(f"SCRAM: unreasonable iteration count {iterations}")
        salted = hashlib.pbkdf2_hmac(
            self.hash_name, saslprep(self.password).encode("utf-8"), salt, iterations
        )
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def finish(self) -> None:
        if not self._verified:
            raise SASLError("SCRAM: the server accepted us without proving it knows the password")


class ScramSHA1(_Scram):
    """SCRAM-SHA-1 (RFC 5802)."""

    name = "SCRAM-SHA-1"
    hash_name = "sha1"


class ScramSHA256(_Scram):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"
    hash_name = "sha256"


class _TokenMechanism(Mechanism):
    def __init__(self, credentials: OAuth2) -> None:
        self.credentials = credentials
        self.token = credentials.current_token()


class XOAuth2(_TokenMechanism):
    """XOAUTH2 (Google, Microsoft).  On failure the server sends 334 with a
    JSON error and expects an empty line before its 535."""

    name = "XOAUTH2"

    def initial(self) -> bytes:
        return f"user={self.credentials.username}\x01auth=Bearer {self.token}\x01\x01".encode()

    def respond(self, challenge: bytes) -> bytes:
        return b""


class OAuthBearer(_TokenMechanism):
    """OAUTHBEARER (RFC 7628).  On failure the client answers the JSON
    error challenge with a single 0x01 byte (§3.2.3)."""

    name = "OAUTHBEARER"

    def initial(self) -> bytes:
        user = self.credentials.username.replace("=", "=3D").replace(",", "=2C")
        extra = ""
        if self.credentials.host:
            extra += f"host={self.credentials.host}\x01"
        if self.credentials.port:
            extra += f"port={self.credentials.port}\x01"
        return f"n,a={user},\x01{extra}auth=Bearer {self.token}\x01\x01".encode()

    def respond(self, challenge: bytes) -> bytes:
        return b"\x01"


MECHANISMS: dict[str, type[Mechanism]] = {
    m.name: m for m in (ScramSHA256, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2)
}
_PASSWORD_ORDER = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")
_TOKEN_ORDER = ("OAUTHBEARER", "XOAUTH2")


def choose(credentials: Credentials, offered: frozenset[str], requested: str | None) -> str:
    """Pick the mechanism: the one requested, else the strongest both sides support.

    Raises:
        ValueError: the requested mechanism does not fit the credential type.
        ExtensionNotSupported: no suitable mechanism is offered.
    """
    order = _TOKEN_ORDER if isinstance(credentials, OAuth2) else _PASSWORD_ORDER
    if requested is not None:
        name = requested.upper()
        if name not in order:
            kind = "an OAuth2 token" if isinstance(credentials, OAuth2) else "a password"
            raise ValueError(f"mechanism {name} cannot be used with {kind}; use one of {order}")
        if name not in offered:
            raise ExtensionNotSupported(
                f"the server does not offer AUTH {name} (it offers {sorted(offered)})",
                extension="AUTH",
            )
        return name
    for name in order:
        if name in offered:
            return name
    raise ExtensionNotSupported(
        f"no usable AUTH mechanism: the server offers {sorted(offered) or 'none'}, "
        f"these credentials need one of {list(order)}",
        extension="AUTH",
    )


def _encode(data: bytes) -> bytes:
    return base64.b64encode(data) + b"\r\n"


def _cancel(session: Session, reason: str) -> SMTPClientError:
    """Abort the exchange with "*" (RFC 4954 §4) and build the error."""
    try:
        session._auth_write(b"*\r\n", shown="*")
        session._auth_read()
    except SMTPClientError:
        pass
    return PermanentAuthError(reason, stage=Stage.AUTH, host=session.host)


def _exchange(session: Session, mechanism: Mechanism) -> Reply:
    initial = mechanism.initial()
    if initial is None:
        line, shown = commands.auth(mechanism.name), f"AUTH {mechanism.name}"
    else:
        encoded = base64.b64encode(initial).decode("ascii") or "="
        line, shown = commands.auth(mechanism.name, encoded), f"AUTH {mechanism.name} <redacted>"
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
        try:
            response = mechanism.respond(challenge)
        except SASLError as exc:
            raise _cancel(session, str(exc)) from exc
        session._auth_write(_encode(response), "<redacted>")
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
        AuthenticationFailed: 535 (after one token refresh for OAuth2 with a callable).
        AuthenticationError: any other refusal, or a mechanism failure.
        ExtensionNotSupported: no usable mechanism.
    """
    name = choose(credentials, session.extensions.auth_mechanisms, requested)
    factory = MECHANISMS[name]
    reply = _exchange(session, factory(credentials))  # type: ignore[call-arg]
    if reply.code == 535 and isinstance(credentials, OAuth2) and callable(credentials.token):
        # The token may have expired: fetch a fresh one and try once more.
        reply = _exchange(session, factory(credentials))  # type: ignore[call-arg]
    if reply.code != 235:
        raise session._auth_error(reply)
    return reply
