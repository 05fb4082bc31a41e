"""SASL mechanisms as small sans-IO step objects: ``initial()`` and
``respond(challenge)`` turn bytes into bytes (no socket, no base64 framing),
so each is tested against the RFCs' own examples.

PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195, legacy), SCRAM-SHA-1 and
SCRAM-SHA-256 (RFC 5802, RFC 7677; SASLprep RFC 4013), XOAUTH2 (Google,
Microsoft) and OAUTHBEARER (RFC 7628).  ``choose`` picks one for the
credential type, unless one is named: over a verified TLS session PLAIN
first, otherwise the strongest both sides support (see ``choose``).
SCRAM's derived keys are cached in memory (``scramcache``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import ClassVar

from smtpclient.credentials import Credentials, OAuth2, Password
from smtpclient.errors import ExtensionNotSupported
from smtpclient.saslprep import SASLError, saslprep
from smtpclient.scramcache import ScramKeys, scram_keys

__all__ = [
    "MECHANISMS",
    "PASSWORD_ORDER",
    "TOKEN_ORDER",
    "VERIFIED_TLS_PASSWORD_ORDER",
    "CramMD5",
    "Login",
    "Mechanism",
    "OAuthBearer",
    "Plain",
    "ScramSHA1",
    "ScramSHA256",
    "TokenMechanism",
    "XOAuth2",
    "choose",
    "create",
]

SCRAM_MAX_ITERATIONS = 1_000_000  # a hostile server must not make us burn minutes


class Mechanism:
    """One SASL exchange: ``initial()`` then ``respond()`` per 334 challenge."""

    name: ClassVar[str]

    def initial(self) -> bytes | None:
        """The initial response sent with AUTH, or None to wait for a challenge."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """The response to a server challenge.

        Raises:
            SASLError: the challenge makes no sense for this mechanism.
        """
        raise SASLError(f"{self.name}: the server sent an unexpected challenge")

    def finish(self) -> None:
        """Called after 235; raise SASLError if the server did not prove itself."""

    def failure_detail(self) -> str | None:
        """What the server said about a failure, when the mechanism carries it."""
        return None


class _PasswordMechanism(Mechanism):
    def __init__(self, credentials: Password) -> None:
        self.username = credentials.username
        self.password = credentials.password


class Plain(_PasswordMechanism):
    """PLAIN (RFC 4616): one message, "authzid NUL authcid NUL password"."""

    name = "PLAIN"

    def initial(self) -> bytes:
        return b"\0" + self.username.encode("utf-8") + b"\0" + self.password.encode("utf-8")


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
    """CRAM-MD5 (RFC 2195, legacy): "user hex(HMAC-MD5(password, challenge))"."""

    name = "CRAM-MD5"

    def __init__(self, credentials: Password) -> None:
        super().__init__(credentials)
        self._answered = False

    def respond(self, challenge: bytes) -> bytes:
        if self._answered:
            raise SASLError("CRAM-MD5: the server sent a second challenge")
        self._answered = True
        digest = hmac.new(self.password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
        return self.username.encode("utf-8") + b" " + digest.encode("ascii")


class _Scram(_PasswordMechanism):
    """SCRAM (RFC 5802, RFC 7677) without channel binding ("n,,": Python's
    ssl has no tls-exporter, so the -PLUS variants are out of reach)."""

    hash_name: ClassVar[str]

    def __init__(
        self, credentials: Password, nonce: str | None = None, *, server: str | None = None
    ) -> None:
        """*nonce* fixes the client nonce (for tests against known vectors).
        *server* names the server for the key cache (None: no caching).

        Raises:
            SASLError: the user name or password fails SASLprep.
        """
        super().__init__(credentials)
        self._server = server
        self._keys: ScramKeys | None = None  # derived this time, cached on success
        user = saslprep(self.username).replace("=", "=3D").replace(",", "=2C")
        self._prepared_password = saslprep(self.password, secret=True).encode("utf-8")
        self._nonce = nonce or base64.urlsafe_b64encode(os.urandom(24)).decode()  # 192 bits
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
        try:
            text = challenge.decode("utf-8")
        except UnicodeDecodeError:
            raise SASLError(f"{self.name}: the server's message is not UTF-8") from None
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "e" in fields:
            raise SASLError(f"{self.name}: the server reported error {fields['e']!r}")
        if self._step == 1:
            return self._client_final(text, fields)
        if self._step == 2 and "v" in fields:
            expected = self._server_signature
            try:
                given = base64.b64decode(fields["v"], validate=True)
            except ValueError:
                given = b""
            if expected is None or not hmac.compare_digest(given, expected):
                raise SASLError(
                    f"{self.name}: the server's signature is wrong (not the real server?)"
                )
            self._verified = True
            return b""
        raise SASLError(f"{self.name}: unexpected challenge")

    def _client_final(self, server_first: str, fields: dict[str, str]) -> bytes:
        if server_first.startswith("m="):
            # RFC 5802 §5.1: a mandatory extension we do not know ends the exchange.
            raise SASLError(f"{self.name}: the server requires an unsupported extension")
        try:
            nonce = fields["r"]
            salt = base64.b64decode(fields["s"], validate=True)
            iterations = int(fields["i"])
        except (KeyError, ValueError) as exc:
            raise SASLError(f"{self.name}: malformed server-first message") from exc
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SASLError(f"{self.name}: the server's nonce does not extend ours")
        if not 1 <= iterations <= SCRAM_MAX_ITERATIONS:
            raise SASLError(f"{self.name}: unreasonable iteration count {iterations}")
        keys = None
        if self._server is not None:
            password = self._prepared_password
            keys = scram_keys.take(
                self._server, self.hash_name, self.username, password, salt, iterations
            )
        if keys is None:
            salted = hashlib.pbkdf2_hmac(self.hash_name, self._prepared_password, salt, iterations)
            client_key = self._hmac(salted, b"Client Key")
            server_key = self._hmac(salted, b"Server Key")
            keys = ScramKeys(client_key, server_key, salt, iterations)
        self._keys = keys
        without_proof = f"c=biws,r={nonce}"  # biws = base64("n,,")
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        stored_key = hashlib.new(self.hash_name, keys.client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(keys.client_key, signature, strict=True))
        self._server_signature = self._hmac(keys.server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def finish(self) -> None:
        if not self._verified:
            raise SASLError(
                f"{self.name}: the server accepted us without proving it knows the password"
            )
        if self._server is not None and self._keys is not None:
            # Cached only now: the server accepted them and proved it knows
            # the same password.  A failure never puts them (back) in.
            scram_keys.keep(
                self._server, self.hash_name, self.username, self._prepared_password, self._keys
            )


class ScramSHA1(_Scram):
    """SCRAM-SHA-1 (RFC 5802)."""

    name = "SCRAM-SHA-1"
    hash_name = "sha1"


class ScramSHA256(_Scram):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"
    hash_name = "sha256"


class TokenMechanism(Mechanism):
    def __init__(self, credentials: OAuth2, token: str | None = None) -> None:
        self.credentials = credentials
        self.token = token if token is not None else credentials.current_token()
        self._error: bytes | None = None

    def failure_detail(self) -> str | None:
        if not self._error:
            return None
        return self._error.decode("utf-8", "replace")


class XOAuth2(TokenMechanism):
    """XOAUTH2 (Google, Microsoft).  On failure the server sends 334 with a
    JSON error and expects an empty line before its 535."""

    name = "XOAUTH2"

    def initial(self) -> bytes:
        user = self.credentials.username
        return f"user={user}\x01auth=Bearer {self.token}\x01\x01".encode()

    def respond(self, challenge: bytes) -> bytes:
        if self._error is not None:
            raise SASLError("XOAUTH2: the server sent a second error challenge")
        self._error = challenge
        return b""


class OAuthBearer(TokenMechanism):
    """OAUTHBEARER (RFC 7628).  On failure the server sends a JSON error
    challenge, which the client answers with a single 0x01 (§3.2.3)."""

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
        if self._error is not None:
            raise SASLError("OAUTHBEARER: the server sent a second error challenge")
        self._error = challenge
        return b"\x01"


MECHANISMS: dict[str, type[Mechanism]] = {
    m.name: m for m in (ScramSHA256, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2)
}
PASSWORD_ORDER = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")
# Over a verified TLS session the channel already authenticates the server
# and hides the exchange, so PLAIN is as safe there as SCRAM against
# everyone but the server itself, and it costs the server no key
# derivation (a server storing plaintext passwords runs PBKDF2 with a fresh
# salt for every SCRAM login).  See docs/guide/tls.md.
VERIFIED_TLS_PASSWORD_ORDER = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "LOGIN")
TOKEN_ORDER = ("OAUTHBEARER", "XOAUTH2")


def create(name: str, credentials: Credentials, *, server: str | None = None) -> Mechanism:
    """A new exchange of mechanism *name* for *credentials*; SCRAM caches its
    derived keys under *server* (e.g. "host:port"; None: no caching).

    Raises:
        KeyError: *name* is not in ``MECHANISMS``.
        SASLError: SCRAM: the user name or password fails SASLprep.
    """
    factory = MECHANISMS[name]
    if issubclass(factory, _Scram):
        assert isinstance(credentials, Password)
        return factory(credentials, server=server)
    return factory(credentials)  # type: ignore[call-arg]


def choose(
    credentials: Credentials,
    offered: frozenset[str],
    requested: str | None,
    *,
    verified_tls: bool = False,
) -> str:
    """Pick the mechanism: the one requested, else the first both sides
    support in ``TOKEN_ORDER`` for a token, and for a password in
    ``VERIFIED_TLS_PASSWORD_ORDER`` over a *verified_tls* session,
    ``PASSWORD_ORDER`` (strongest first) otherwise.

    Raises:
        ValueError: the requested mechanism is unknown or does not fit the
            credential type (a password never goes to an OAuth mechanism).
        ExtensionNotSupported: no suitable mechanism is offered.
    """
    token = isinstance(credentials, OAuth2)
    order: tuple[str, ...]
    if token:
        order = TOKEN_ORDER
    else:
        order = VERIFIED_TLS_PASSWORD_ORDER if verified_tls else PASSWORD_ORDER
    if requested is not None:
        name = requested.upper()
        if name not in order:
            kind = "an OAuth2 token" if token else "a password"
            known = "a mechanism this library does not implement"
            if name in MECHANISMS:
                known = f"not a mechanism for {kind}"
            raise ValueError(f"AUTH {name} is {known}; use one of {', '.join(order)}")
        if name not in offered:
            raise ExtensionNotSupported(
                f"the server does not offer AUTH {name} (it offers {', '.join(sorted(offered))})",
                extension="AUTH",
            )
        return name
    for name in order:
        if name in offered:
            return name
    raise ExtensionNotSupported(
        f"no usable AUTH mechanism: the server offers {', '.join(sorted(offered)) or 'none'}; "
        f"{'an OAuth2 token' if token else 'a password'} needs one of {', '.join(order)}",
        extension="AUTH",
    )
