"""How to reach one submission server, as a value: the recipe a pool connects by.

A ``ServerSettings`` holds everything ``Session.connect`` and AUTH need: a
``ConnectOptions`` (``options``) and the credentials.  Its ``key`` says which
pooled connections are interchangeable: the same ``ConnectOptions`` (host
compared case-insensitively) and the same *identity* of credentials.  The key
never holds a secret: a password or static token is represented by a keyed
digest (HMAC with a random per-process key), so two settings with the same
user but a different password never share an authenticated connection, and
nothing in the key can be turned back into the password.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any

from smtpclient.credentials import Credentials, CredentialsProvider, OAuth2, Password
from smtpclient.errors import InsecureAuthError
from smtpclient.options import DEFAULT_MAX_RECIPIENTS, ConnectOptions
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.session import Session
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode

__all__ = ["PoolKey", "ServerSettings", "secret_digest"]

# Random per process, so a digest in a key (or a log line) cannot be
# checked against a list of likely passwords elsewhere.
_DIGEST_KEY = secrets.token_bytes(32)


def secret_digest(secret: str) -> str:
    """A keyed digest standing for *secret* in keys and caches (never reversible)."""
    return hmac.new(_DIGEST_KEY, secret.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class _Same:
    """Compares and hashes by identity: a provider callable in a key."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"<provider {type(self.obj).__name__} at {id(self.obj):#x}>"


def _identity(credentials: CredentialsProvider | None) -> tuple[Any, ...] | None:
    if credentials is None:
        return None
    if isinstance(credentials, Password):
        return ("password", credentials.username, secret_digest(credentials.password))
    if isinstance(credentials, OAuth2):
        token = credentials.token
        proof: object = _Same(token) if callable(token) else secret_digest(token)
        return ("oauth2", credentials.username, proof, credentials.host, credentials.port)
    if isinstance(credentials, Credentials):
        return (type(credentials).__name__, credentials.username, _Same(credentials))
    # A provider callable: each provider is its own identity (it may return
    # different accounts; we cannot know without calling it).
    return ("provider", _Same(credentials))


@dataclass(frozen=True)
class PoolKey:
    """Which pooled connections are interchangeable (no secrets inside)."""

    host: str
    port: int
    tls: TLSMode
    username: str | None
    identity: tuple[Any, ...] | None = field(repr=False)
    options: tuple[Any, ...] = field(repr=False)

    def __hash__(self) -> int:
        # Looked up twice per pooled send; the fields (Timeouts among them)
        # hash in Python code, so remember it (the key is immutable).
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(
                (self.host, self.port, self.tls, self.username, self.identity, self.options)
            )
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # String hashes differ between processes: never carry one over.
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __str__(self) -> str:
        who = f"{self.username}@" if self.username else ""
        return f"{who}{self.host}:{self.port} ({self.tls.value})"


@dataclass(frozen=True)
class ServerSettings:
    """Where and how to connect, and as whom; ``connect()`` opens a ready session.

    The fields are ``Session.connect``'s keyword arguments (but *sock*: a
    pool opens connections of its own), plus *credentials* (``Password``,
    ``OAuth2`` or a callable returning one, called at every connect so that
    rotated secrets are picked up) and *auth_mechanism* (None: the
    strongest both sides support); ``options`` is the ``ConnectOptions``
    they make (``from_options`` goes the other way).

    Raises:
        TypeError, ValueError: a field has the wrong type or value.
    """

    host: str
    port: int = 587
    tls: TLSMode | None = None
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts.submission)
    local_hostname: str | None = None
    source_address: tuple[str, int] | None = None
    lmtp: bool = False
    use_pipelining: bool = True
    use_chunking: bool = True
    allow_insecure_auth: bool = False
    credentials: CredentialsProvider | None = field(default=None, repr=False, compare=False)
    auth_mechanism: str | None = None
    reply_limits: ReplyLimits | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS

    def __post_init__(self) -> None:
        # The options are checked (and the timeouts coerced) in one place, now.
        object.__setattr__(self, "timeouts", self.options.timeouts)
        creds = self.credentials
        if creds is not None and not (isinstance(creds, Credentials) or callable(creds)):
            raise TypeError("credentials must be Password, OAuth2 or a callable returning one")

    @functools.cached_property
    def options(self) -> ConnectOptions:
        """The ``ConnectOptions`` these settings make."""
        return ConnectOptions(
            self.host,
            self.port,
            tls=self.tls,
            ssl_context=self.ssl_context,
            server_hostname=self.server_hostname,
            timeouts=self.timeouts,
            local_hostname=self.local_hostname,
            source_address=self.source_address,
            lmtp=self.lmtp,
            use_pipelining=self.use_pipelining,
            use_chunking=self.use_chunking,
            allow_insecure_auth=self.allow_insecure_auth,
            reply_limits=self.reply_limits,
            max_recipients=self.max_recipients,
            auth_mechanism=self.auth_mechanism,
        )

    @classmethod
    def from_options(
        cls, options: ConnectOptions, credentials: CredentialsProvider | None = None
    ) -> ServerSettings:
        """Settings for *options* and *credentials*.

        Raises:
            ValueError: *options* has a *sock* (a pool opens its own connections).
            TypeError: *credentials* is of the wrong type.
        """
        if options.sock is not None:
            raise ValueError("a pool opens connections of its own: sock= cannot be pooled")
        fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        del fields["sock"]
        return cls(credentials=credentials, **fields)

    @property
    def tls_mode(self) -> TLSMode:
        """The TLS mode in force (the port's default when ``tls`` is None)."""
        return self.options.tls_mode

    def __getstate__(self) -> dict[str, Any]:
        # The cached key holds a digest made with this process's random key.
        return {k: v for k, v in self.__dict__.items() if k != "key"}

    @functools.cached_property
    def key(self) -> PoolKey:
        """The pool key: equal keys mean interchangeable connections (computed
        once: every field is immutable, and the credentials' identity with it)."""
        creds = self.credentials
        username = creds.username if isinstance(creds, Credentials) else None
        # Every option but where to: a new option is in the key as soon as
        # ConnectOptions has it (an SSLContext compares by identity).
        where = ("host", "port", "tls")
        connect = self.options
        options = tuple(
            getattr(connect, f.name) for f in dataclasses.fields(connect) if f.name not in where
        )
        return PoolKey(
            self.host.lower(), self.port, self.tls_mode, username, _identity(creds), options
        )

    def connect(self) -> Session:
        """Open a session: connect, greet, TLS as configured, then AUTH when
        credentials are set.  A session that fails AUTH is closed.

        Raises:
            SMTPClientError: as ``Session.connect`` and ``Session.authenticate``.
        """
        session = Session.open(self.options)
        if self.credentials is None:
            return session
        try:
            session.authenticate(self.credentials, mechanism=self.auth_mechanism)
        except BaseException as exc:
            if session.usable:
                session.quit()
            else:
                session.close()
            if isinstance(exc, InsecureAuthError):
                raise naming_the_call(exc, "Mailer(...) (or ServerSettings)") from None
            raise
        return session


def naming_the_call(exc: InsecureAuthError, call: str) -> InsecureAuthError:
    """*exc* with its advice naming *call* -- the call the user made, where
    ``allow_insecure_auth=True`` goes -- instead of ``Session.connect()``."""
    text = str(exc).replace("to Session.connect()", f"to {call}")
    return InsecureAuthError(text, stage=exc.stage, host=exc.host)
