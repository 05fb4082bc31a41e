"""SMTP AUTH: moved to ``smtpclient.session.auth``; these names stay importable here."""

from smtpclient.session.auth import (
    MAX_AUTH_LINE,
    MAX_CHALLENGES,
    MECHANISMS,
    Credentials,
    CredentialsProvider,
    Mechanism,
    OAuth2,
    Password,
    SASLError,
    choose,
    run,
    saslprep,
)

__all__ = [
    "MAX_AUTH_LINE",
    "MAX_CHALLENGES",
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
