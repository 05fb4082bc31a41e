"""AUTH against scripted servers: every mechanism to success with the secret
kept out of the transcript, and servers that fail or misbehave (535, endless
challenges, XOAUTH2/OAUTHBEARER JSON errors, long tokens)."""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from collections.abc import Callable

import pytest
from servers.sasl_server import serve_with_auth
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo

from smtpclient import OAuth2, Password, Session, Timeouts, TLSMode
from smtpclient.auth import MAX_CHALLENGES
from smtpclient.credentials import Credentials
from smtpclient.errors import (
    AuthenticationFailed,
    PermanentAuthError,
    ProtocolError,
    TransientAuthError,
)
from smtpclient.protocol.state import Stage

FAST = dataclasses.replace(Timeouts.uniform(2.0), data_done=10.0, total=None)
USER, PASSWORD, TOKEN = "jörg@example.test", "pässwörd-Geheim!", "ya29.S3cr3tT0k3n-abcdef"
USERS = {USER: PASSWORD}
TOKENS = {USER: TOKEN}
EVERY = "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN XOAUTH2 OAUTHBEARER"


def auth_server(
    mechanisms: str = EVERY, *, users: dict[str, str] = USERS, tokens: dict[str, str] = TOKENS
) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", f"AUTH {mechanisms}"))
        serve_with_auth(conn, users=users, tokens=tokens)

    return handler


def connect(server: ScriptedServer) -> Session:
    # Plaintext with the explicit opt-in keeps these tests about SASL itself;
    # the TLS rule is tested in test_tls_faults and the integration tests.
    return Session.connect(
        "127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=FAST, allow_insecure_auth=True
    )


def client_lines(conn: Conn) -> list[bytes]:
    return bytes(conn.received).split(b"\r\n")[:-1]


def secrets_in(text: str, *secrets: str) -> list[str]:
    """Each secret, and its base64 in every alignment, that occurs in *text*."""
    found = []
    for secret in secrets:
        raw = secret.encode()
        forms = {secret}
        # Its base64 inside a longer message, at each of the three alignments:
        # the characters that depend on the secret's bytes alone.
        for shift, first_char in ((0, 0), (1, 2), (2, 3)):
            encoded = base64.b64encode(b"\0" * shift + raw).decode()
            forms.add(encoded[first_char:-4])
        found += [form for form in forms if len(form) >= 8 and form in text]
    return found


PASSWORD_MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
TOKEN_MECHANISMS = ["OAUTHBEARER", "XOAUTH2"]


@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS + TOKEN_MECHANISMS)
def test_every_mechanism_succeeds_and_the_transcript_shows_no_secret(
    mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpclient")
    credentials: Credentials = (
        OAuth2(USER, TOKEN) if mechanism in TOKEN_MECHANISMS else Password(USER, PASSWORD)
    )
    with ScriptedServer(auth_server()) as server:
        with connect(server) as session:
            reply = session.authenticate(credentials, mechanism=mechanism)
            assert reply.code == 235 and session.authenticated
            session.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
        (auth_line,) = server.conns[0].auth_lines  # type: ignore[attr-defined]
    assert auth_line.startswith(f"AUTH {mechanism}".encode())
    text = caplog.text
    assert f"C: AUTH {mechanism}" in text  # the transcript was captured
    assert secrets_in(text, PASSWORD, TOKEN) == []
    # Nothing the client sent during the exchange appears in the log.
    lines = client_lines(server.conns[0])
    start = next(i for i, x in enumerate(lines) if x.startswith(b"AUTH "))
    end = next(i for i, x in enumerate(lines) if x.startswith(b"MAIL FROM"))
    exchange = [lines[start].split(b" ", 2)[2:], *([x] for x in lines[start + 1 : end])]
    for sent in exchange:
        if sent and sent[0]:
            assert sent[0].decode() not in text
    if mechanism in ("PLAIN", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-1"):
        assert f"AUTH {mechanism} <redacted>" in text
    else:
        assert "C: <redacted>" in text


def test_the_strongest_common_mechanism_is_used_by_default() -> None:
    with ScriptedServer(auth_server("LOGIN PLAIN CRAM-MD5 SCRAM-SHA-1")) as server:
        with connect(server) as session:
            session.login(USER, PASSWORD)
        (line,) = server.conns[0].auth_lines  # type: ignore[attr-defined]
    assert line.startswith(b"AUTH SCRAM-SHA-1 ")


@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS)
def test_535_is_authentication_failed_and_no_other_mechanism_is_tried(
    mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpclient")
    with ScriptedServer(auth_server(f"{mechanism} {EVERY}")) as server:
        with connect(server) as session:
            with pytest.raises(AuthenticationFailed) as info:
                session.login(USER, "Wrong-" + PASSWORD, mechanism=mechanism)
            assert session.usable and not session.authenticated
        lines = server.conns[0].auth_lines  # type: ignore[attr-defined]
    assert len(lines) == 1  # one attempt: retrying with another mechanism locks accounts
    error = info.value
    assert error.reply is not None and error.reply.code == 535 and error.stage is Stage.AUTH
    assert secrets_in(str(error) + repr(error) + caplog.text, PASSWORD, "Wrong-" + PASSWORD) == []


def test_a_transient_refusal_is_transient() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("AUTH PLAIN",))
        conn.expect(b"AUTH PLAIN")
        conn.reply("454 4.7.0 Temporary authentication failure")
        conn.expect(b"QUIT")
        conn.reply("221 bye")

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            with pytest.raises(TransientAuthError) as info:
                session.login(USER, PASSWORD)
    assert info.value.is_transient


# --- servers that never stop challenging ----------------------------------------------------


def endless_334(conn: Conn) -> None:
    greet_and_ehlo(conn, (f"AUTH {EVERY}",))
    conn.expect(b"AUTH")
    while True:
        conn.send(b"334 " + base64.b64encode(b"r=x,s=eA==,i=1,more?") + b"\r\n")
        if conn.line() == b"*":
            conn.reply("501 5.7.0 cancelled")
            break
    while True:  # then behave
        line = conn.line()
        conn.reply("221 bye" if line.startswith(b"QUIT") else "250 ok")
        if line.startswith(b"QUIT"):
            return


@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS + TOKEN_MECHANISMS)
def test_endless_challenges_are_cut_off_and_cancelled(mechanism: str) -> None:
    credentials: Credentials = (
        OAuth2(USER, TOKEN) if mechanism in TOKEN_MECHANISMS else Password(USER, PASSWORD)
    )
    with ScriptedServer(endless_334) as server:
        start = time.monotonic()
        with connect(server) as session:
            with pytest.raises(PermanentAuthError) as info:
                session.authenticate(credentials, mechanism=mechanism)
            assert session.usable  # cancelled cleanly with "*", the session goes on
            session.noop()
        took = time.monotonic() - start
        lines = client_lines(server.conns[0])
    assert not isinstance(info.value, AuthenticationFailed)
    after_auth = lines[next(i for i, x in enumerate(lines) if x.startswith(b"AUTH")) + 1 :]
    assert after_auth[after_auth.index(b"*") - 1] != b"*"
    assert after_auth.index(b"*") <= MAX_CHALLENGES
    assert took < 10  # bounded by MAX_CHALLENGES, not by a deadline


def test_a_challenge_that_is_not_base64_cancels() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("AUTH LOGIN",))
        conn.expect(b"AUTH LOGIN")
        conn.reply("334 Username:")  # not base64
        assert conn.line() == b"*"
        conn.reply("501 cancelled")
        conn.expect(b"QUIT")
        conn.reply("221 bye")

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            with pytest.raises(PermanentAuthError, match="not base64"):
                session.login(USER, PASSWORD)


def test_a_scram_server_that_cannot_prove_itself_is_a_protocol_error() -> None:
    # A fake server accepts any proof but cannot compute the server signature.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("AUTH SCRAM-SHA-256",))
        first = base64.b64decode(conn.expect(b"AUTH SCRAM-SHA-256").split()[2]).decode()
        nonce = first.split("r=", 1)[1] + "server"
        conn.send(b"334 " + base64.b64encode(f"r={nonce},s=c2FsdA==,i=4096".encode()) + b"\r\n")
        conn.line()
        conn.reply("235 2.7.0 fine, whoever you are")
        conn.wait_closed(5)

    with ScriptedServer(handler) as server:
        with connect(server) as session:
            with pytest.raises(ProtocolError, match="without proving"):
                session.login(USER, PASSWORD)
            assert not session.usable


# --- OAuth failures --------------------------------------------------------------------------

JSON_ERROR = b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'


def oauth_failing(mechanism: str, *, accept: set[str] = frozenset()) -> Callable[[Conn], None]:  # type: ignore[assignment]
    """Refuse tokens (except *accept*) the way Google and RFC 7628 do."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, (f"AUTH {mechanism}",))
        conn.auth_lines = []  # type: ignore[attr-defined]
        while True:
            line = conn.line()
            if line.startswith(b"QUIT"):
                conn.reply("221 bye")
                return
            conn.auth_lines.append(line)  # type: ignore[attr-defined]
            decoded = base64.b64decode(line.split()[2]).decode()
            if any(f"Bearer {token}\x01" in decoded for token in accept):
                conn.reply("235 2.7.0 Accepted")
                continue
            conn.send(b"334 " + base64.b64encode(JSON_ERROR) + b"\r\n")
            conn.auth_lines.append(conn.line())  # type: ignore[attr-defined]
            conn.reply("535 5.7.8 Username and Password not accepted")

    return handler


@pytest.mark.parametrize(("mechanism", "answer"), [("XOAUTH2", b""), ("OAUTHBEARER", b"AQ==")])
def test_an_oauth_failure_is_answered_then_reported(mechanism: str, answer: bytes) -> None:
    with ScriptedServer(oauth_failing(mechanism)) as server:
        with connect(server) as session:
            with pytest.raises(AuthenticationFailed) as info:
                session.authenticate(OAuth2(USER, TOKEN))
            assert session.usable
        lines = server.conns[0].auth_lines  # type: ignore[attr-defined]
    # AUTH with the token, then the required answer to the JSON challenge; no retry
    # (a fixed token cannot be refreshed).
    assert len(lines) == 2 and lines[0].startswith(f"AUTH {mechanism} ".encode())
    assert lines[1] == answer
    assert '"status":"400"' in str(info.value)  # the server's reason is kept
    assert TOKEN not in str(info.value)


def test_a_refused_token_is_refreshed_once() -> None:
    issued = iter(["stale-token-1", "fresh-token-2", "never-asked-3"])
    with ScriptedServer(oauth_failing("XOAUTH2", accept={"fresh-token-2"})) as server:
        with connect(server) as session:
            session.authenticate(OAuth2(USER, lambda: next(issued)))
            assert session.authenticated
        lines = server.conns[0].auth_lines  # type: ignore[attr-defined]
    auth = [base64.b64decode(x.split()[2]) for x in lines if x.startswith(b"AUTH")]
    assert [b"stale-token-1" in a for a in auth] == [True, False]
    assert b"fresh-token-2" in auth[1]
    assert next(issued) == "never-asked-3"


def test_a_refresh_that_returns_the_same_token_is_not_resent() -> None:
    calls = []

    def provider() -> str:
        calls.append(1)
        return "same-token"

    with ScriptedServer(oauth_failing("XOAUTH2")) as server:
        with connect(server) as session:
            with pytest.raises(AuthenticationFailed):
                session.authenticate(OAuth2(USER, provider))
        lines = server.conns[0].auth_lines  # type: ignore[attr-defined]
    assert len(calls) == 2 and sum(x.startswith(b"AUTH") for x in lines) == 1


def test_a_long_token_waits_for_the_first_challenge() -> None:
    # RFC 4954 §4: an AUTH line may not exceed 512 octets; a long initial
    # response is sent after an empty 334 instead.
    long_token = "t" * 600
    with ScriptedServer(auth_server("XOAUTH2", tokens={USER: long_token})) as server:
        with connect(server) as session:
            session.authenticate(OAuth2(USER, long_token))
            assert session.authenticated
        (line,) = server.conns[0].auth_lines  # type: ignore[attr-defined]
    assert line == b"AUTH XOAUTH2"
    assert max(len(x) for x in client_lines(server.conns[0]) if x.startswith(b"AUTH")) <= 510
