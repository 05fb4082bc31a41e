"""What AUTH proves: a user name with a password, or with an OAuth 2.0 token.

Secrets stay out of ``repr`` and messages.  Long-lived objects (a Mailer, a
pool) can hold a ``CredentialsProvider`` -- a callable returning credentials
when a connection needs them -- instead of the secret itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Credentials", "CredentialsProvider", "OAuth2", "Password", "login_credentials"]

_FORBIDDEN_IN_OAUTH = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Credentials:
    """Base class of what AUTH proves."""

    username: str


@dataclass(frozen=True)
class Password(Credentials):
    """A user name and password (the password is never shown in repr or logs).

    Raises:
        TypeError: either is not a str.
        ValueError: either holds NUL, which SASL (PLAIN's separator) cannot carry.
    """

    password: str = field(repr=False, default="")

    def __post_init__(self) -> None:
        for name in ("username", "password"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be str")
            if "\0" in value:
                raise ValueError(f"the {name} holds a NUL character, which SASL cannot carry")


@dataclass(frozen=True)
class OAuth2(Credentials):
    """An OAuth 2.0 bearer token, or a callable returning a current one.

    The callable is called each time a token is needed: once per AUTH, and
    once more after a 535 (an expired token is the usual cause), so it
    should return a token that is valid now, refreshing when needed.

    Raises:
        TypeError: the user name is not a str.
        ValueError: the user name holds a control character.
    """

    token: str | Callable[[], str] = field(repr=False, default="")
    host: str | None = None  # OAUTHBEARER's optional host/port fields
    port: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.username, str):
            raise TypeError("username must be str")
        if re.search(r"[\x00-\x1f\x7f]", self.username):
            raise ValueError("the OAuth2 user name holds a control character")

    def current_token(self) -> str:
        """The token to send now.

        Raises:
            TypeError: the token (or what the callable returned) is not a non-empty str.
            ValueError: it holds whitespace or control characters (not a bearer token).
        """
        token = self.token() if callable(self.token) else self.token
        if not isinstance(token, str) or not token:
            raise TypeError("the OAuth2 token must be a non-empty str")
        if _FORBIDDEN_IN_OAUTH.search(token):
            raise ValueError("the OAuth2 token holds whitespace or a control character")
        return token


# What Session.authenticate() and Mailer accept: credentials, or a callable
# that returns them when needed (so long-lived objects hold no secret).
CredentialsProvider = Credentials | Callable[[], Credentials]


def login_credentials(
    username: str | None, password: str | None, credentials: CredentialsProvider | None
) -> CredentialsProvider | None:
    """The credentials a caller meant: ``username``/``password`` as a
    ``Password``, or ``credentials`` as given (None: no AUTH).

    Raises:
        ValueError: only one of username and password, or both forms given.
        TypeError: as ``Password``.
    """
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    if username is not None and credentials is not None:
        raise ValueError("give username/password or credentials, not both")
    if username is not None and password is not None:
        return Password(username, password)
    return credentials
