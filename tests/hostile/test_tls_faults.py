"""Scripted servers that get TLS wrong, on purpose: injected bytes around
STARTTLS, refused or missing STARTTLS, bad certificates in every mode,
handshakes that stall or break.  Each test checks the wire (``Conn.received``):
no AUTH, MAIL or message byte may leave before TLS is settled."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally
from servers.tlsfaults import Leaf, TestCA, self_signed

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import (
    CertificateVerifyError,
    InsecureAuthError,
    SMTPClientError,
    SMTPTimeoutError,
    StartTLSError,
    TLSError,
    TLSRequiredError,
)
from smtpclient.protocol.state import Stage

FAST = dataclasses.replace(Timeouts.uniform(1.0), data_done=10.0, total=None)
BODY = b"Subject: t\r\n\r\nhello\r\n"
CA = TestCA()
GOOD = CA.leaf()
NAME = "mail.example.test"  # what the client verifies; it connects to 127.0.0.1


def connect(server: ScriptedServer, mode: TLSMode, **kwargs: object) -> Session:
    options: dict[str, object] = {
        "tls": mode,
        "timeouts": FAST,
        "ssl_context": CA.client_context(),
        "server_hostname": NAME,
    }
    options.update(kwargs)
    return Session.connect("127.0.0.1", server.port, **options)  # type: ignore[arg-type]


def wire(conn: Conn) -> bytes:
    return bytes(conn.received)


def assert_nothing_sensitive_sent(conn: Conn) -> None:
    for verb in (b"AUTH", b"MAIL", b"RCPT", b"DATA", b"BDAT", b"Subject"):
        assert verb not in wire(conn), f"{verb!r} was sent: {wire(conn)!r}"


def tls_server(
    leaf: Leaf,
    *,
    after_220: bytes = b"",
    before_ext: Iterable[str] = ("PIPELINING", "STARTTLS", "AUTH PLAIN"),
    after_ext: Iterable[str] = ("PIPELINING", "AUTH LOGIN"),
) -> Callable[[Conn], None]:
    """A server offering STARTTLS with *leaf*, then serving normally."""
    context = leaf.server_context()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, before_ext)
        conn.expect(b"STARTTLS")
        conn.send(b"220 2.0.0 Ready to start TLS\r\n" + after_220)
        try:
            conn.starttls(context)
        except (ssl.SSLError, OSError):
            return  # the client refused the certificate
        conn.expect(b"EHLO")
        conn.reply("250 tls.scripted.test", *(f"250 {ext}" for ext in after_ext))
        serve_normally(conn)

    return handler


# --- injected bytes (RFC 3207 §4.2, CVE-2011-0411 and its many successors) -------------


@pytest.mark.parametrize(
    "injected",
    [
        pytest.param(b"250-injected.example\r\n250 AUTH PLAIN\r\n", id="whole-reply"),
        pytest.param(b"250 inj", id="partial-line"),
        pytest.param(b"250-injected.example\r\n250 AUTH PLAIN\r\n554 5.7", id="reply-and-part"),
    ],
)
def test_bytes_after_the_220_are_never_read_as_a_reply(
    injected: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="smtpclient")
    with ScriptedServer(tls_server(GOOD, after_220=injected)) as server:
        with connect(server, TLSMode.STARTTLS) as session:
            # Only what the server said under TLS counts.
            assert session.ehlo_reply is not None
            assert session.ehlo_reply.lines[0] == "tls.scripted.test"
            assert session.extensions.auth_mechanisms == {"LOGIN"}
            assert "STARTTLS" not in session.extensions
            result = session.sendmail("a@example.com", ["b@example.com"], BODY)
        assert result.tls is not None and result.tls.verified
    assert f"discarded {len(injected)} bytes" in caplog.text


# --- STARTTLS refused, missing or stripped ----------------------------------------------


def refusing_server(code: str) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN"))
        conn.expect(b"STARTTLS")
        conn.reply(code)
        serve_normally(conn)

    return handler


REFUSALS = ["454 4.7.0 TLS not available", "502 5.5.2 not implemented", "500 5.5.1 what?"]


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_starttls_is_an_error_before_anything_else_when_required(refusal: str) -> None:
    with ScriptedServer(refusing_server(refusal)) as server:
        with pytest.raises(StartTLSError) as info:
            connect(server, TLSMode.STARTTLS)
        (conn,) = server.conns
        assert conn.wait_closed(5)
    assert info.value.reply is not None and info.value.reply.code == int(refusal[:3])
    assert info.value.stage is Stage.STARTTLS and isinstance(info.value, ssl.SSLError)
    assert wire(conn).endswith(b"\r\nSTARTTLS\r\n")  # and not one byte more
    assert_nothing_sensitive_sent(conn)


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_starttls_continues_in_plaintext_when_opportunistic(refusal: str) -> None:
    with ScriptedServer(refusing_server(refusal)) as server:
        with connect(server, TLSMode.OPPORTUNISTIC) as session:
            assert session.tls is None
            with pytest.raises(InsecureAuthError) as info:
                session.login("user", "secret")
            message = str(info.value)
            assert f"answered STARTTLS with {refusal[:3]}" in message
            assert "allow_insecure_auth=True" in message and "tls=TLSMode.STARTTLS" in message
            assert b"AUTH" not in wire(server.conns[0])
            result = session.sendmail("a@example.com", ["b@example.com"], BODY)
        assert result.tls is None
    assert server.connections == 1  # a refusal is not a broken handshake: no reconnect


def test_starttls_missing_when_required_is_tls_required_error() -> None:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "AUTH PLAIN"))
        serve_normally(conn)

    with ScriptedServer(handler) as server:
        with pytest.raises(TLSRequiredError) as info:
            connect(server, TLSMode.STARTTLS)
        (conn,) = server.conns
        assert conn.wait_closed(5)
    assert info.value.stage is Stage.STARTTLS and "tls=TLSMode.STARTTLS" in str(info.value)
    assert wire(conn).count(b"\r\n") == 1 and wire(conn).startswith(b"EHLO ")
    assert_nothing_sensitive_sent(conn)


def test_stripped_starttls_in_opportunistic_mode_sends_no_auth() -> None:
    # An attacker removed STARTTLS from the EHLO reply; AUTH is still offered.
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "AUTH PLAIN LOGIN"))
        serve_normally(conn)

    with ScriptedServer(handler) as server:
        with connect(server, TLSMode.OPPORTUNISTIC) as session:
            assert session.tls is None
            with pytest.raises(InsecureAuthError, match="did not offer STARTTLS"):
                session.login("user", "secret")
            with pytest.raises(InsecureAuthError):
                session.authenticate(lambda: pytest.fail("provider called"))  # type: ignore[arg-type,return-value]
        assert b"AUTH" not in wire(server.conns[0])


# --- bad certificates, in each mode -------------------------------------------------------

BAD_CERTIFICATES = {
    "self-signed": (
        self_signed(NAME),
        "self-signed certificate",
        "O=Self Signed Ltd, CN=mail.example.test",
    ),
    "expired": (
        CA.expired(),
        "certificate has expired",
        "O=Example Mail, OU=Mail, CN=mail.example.test",
    ),
    "wrong-name": (
        CA.wrong_name(),
        "Hostname mismatch",
        "O=Example Mail, OU=Mail, CN=other.example.test",
    ),
}


@pytest.mark.parametrize("kind", BAD_CERTIFICATES)
def test_a_bad_certificate_is_encrypted_but_recorded_when_opportunistic(kind: str) -> None:
    leaf, reason, subject = BAD_CERTIFICATES[kind]
    with ScriptedServer(tls_server(leaf)) as server:
        with connect(server, TLSMode.OPPORTUNISTIC) as session:
            tls = session.tls
            assert tls is not None and tls.verified is False
            assert tls.verify_error is not None and reason in tls.verify_error
            assert tls.peer_subject == subject  # described though not verified
            with pytest.raises(InsecureAuthError, match=reason):
                session.login("user", "secret")
            result = session.sendmail("a@example.com", ["b@example.com"], BODY)
        assert result.tls == tls
        first, second = server.conns  # the verifying try, then a fresh connection
        assert wire(first).endswith(b"STARTTLS\r\n")  # nothing after the failed handshake
        assert b"MAIL FROM" in wire(second) and b"AUTH" not in wire(second)


@pytest.mark.parametrize("kind", BAD_CERTIFICATES)
def test_a_bad_certificate_fails_required_starttls(kind: str) -> None:
    leaf, reason, _ = BAD_CERTIFICATES[kind]
    with ScriptedServer(tls_server(leaf)) as server:
        with pytest.raises(CertificateVerifyError, match=reason) as info:
            connect(server, TLSMode.STARTTLS)
        assert server.connections == 1
        assert_nothing_sensitive_sent(server.conns[0])
    assert info.value.stage is Stage.STARTTLS and info.value.is_transient


@pytest.mark.parametrize("kind", BAD_CERTIFICATES)
def test_a_bad_certificate_fails_implicit_tls(kind: str) -> None:
    leaf, reason, _ = BAD_CERTIFICATES[kind]

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        serve_normally(conn)

    with ScriptedServer(handler, implicit_tls=leaf.server_context()) as server:
        with pytest.raises(CertificateVerifyError, match=reason):
            connect(server, TLSMode.IMPLICIT)
        time.sleep(0.1)  # let the acceptor finish its side of the failed handshake
    assert server.connections == 0  # the handshake never completed: not a byte of SMTP


def test_the_good_certificate_passes_every_mode() -> None:
    for mode in (TLSMode.OPPORTUNISTIC, TLSMode.STARTTLS):
        with ScriptedServer(tls_server(GOOD)) as server:
            with connect(server, mode) as session:
                assert session.tls is not None and session.tls.verified
            assert server.connections == 1

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        serve_normally(conn)

    with ScriptedServer(handler, implicit_tls=GOOD.server_context()) as server:
        with connect(server, TLSMode.IMPLICIT) as session:
            assert session.tls is not None and session.tls.verified


# --- handshakes that stall or break ----------------------------------------------------------


def stalling_then_plain(conn: Conn) -> None:
    """First connection: 220 to STARTTLS, then silence.  Later ones: no STARTTLS."""
    if conn is conn.server.conns[0]:
        greet_and_ehlo(conn, ("PIPELINING", "STARTTLS"))
        conn.expect(b"STARTTLS")
        conn.reply("220 go ahead")
        conn.stall(30)
        return
    greet_and_ehlo(conn, ("PIPELINING",))
    serve_normally(conn)


def test_a_stalled_handshake_times_out_at_the_starttls_stage() -> None:
    with ScriptedServer(stalling_then_plain) as server:
        start = time.monotonic()
        with pytest.raises(SMTPTimeoutError) as info:
            connect(server, TLSMode.STARTTLS)
        took = time.monotonic() - start
        assert server.connections == 1
    assert info.value.stage is Stage.STARTTLS and isinstance(info.value, TimeoutError)
    assert took < 10  # starttls is 1 s here, the stall 30 s


def test_a_stalled_handshake_falls_back_to_plaintext_on_a_new_connection() -> None:
    with ScriptedServer(stalling_then_plain) as server:
        with connect(server, TLSMode.OPPORTUNISTIC) as session:
            assert session.tls is None
            with pytest.raises(InsecureAuthError, match="TLS failed on an earlier connection"):
                session.login("user", "secret")
            session.sendmail("a@example.com", ["b@example.com"], BODY)
        first, second = server.conns
        assert b"MAIL" not in wire(first)  # the broken connection is never used again
        assert b"STARTTLS" not in wire(second) and b"MAIL FROM" in wire(second)


def garbage_then_plain(conn: Conn) -> None:
    """First connection: 220 to STARTTLS, then plaintext instead of TLS."""
    if conn is conn.server.conns[0]:
        greet_and_ehlo(conn, ("PIPELINING", "STARTTLS"))
        conn.expect(b"STARTTLS")
        conn.reply("220 go ahead")
        with contextlib.suppress(TimeoutError):
            conn.read_exact(5, timeout=2)  # the ClientHello's record header
        conn.send(b"this is not TLS at all\r\n" * 4)
        conn.wait_closed(5)
        return
    greet_and_ehlo(conn, ("PIPELINING", "STARTTLS"))  # offered again: not used again
    serve_normally(conn)


def test_a_broken_handshake_reconnects_in_plaintext_when_opportunistic() -> None:
    with ScriptedServer(garbage_then_plain) as server:
        with connect(server, TLSMode.OPPORTUNISTIC) as session:
            assert session.tls is None
            result = session.sendmail("a@example.com", ["b@example.com"], BODY)
        assert result.tls is None
        first, second = server.conns
        assert wire(first).split(b"STARTTLS\r\n", 1)[1].startswith(b"\x16\x03")  # a ClientHello
        assert b"MAIL" not in wire(first)
        assert b"STARTTLS" not in wire(second) and b"MAIL FROM" in wire(second)


def test_a_broken_handshake_is_a_tls_error_when_required() -> None:
    with ScriptedServer(garbage_then_plain) as server:
        with pytest.raises(TLSError) as info:
            connect(server, TLSMode.STARTTLS)
        assert server.connections == 1
    assert not isinstance(info.value, CertificateVerifyError)
    assert info.value.stage is Stage.STARTTLS


def test_a_given_socket_is_never_silently_replaced() -> None:
    # With sock= there is no "new connection" to fall back to: the error stands.
    with ScriptedServer(tls_server(self_signed(NAME))) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(CertificateVerifyError):
            connect(server, TLSMode.OPPORTUNISTIC, sock=sock)
        sock.close()
        assert server.connections == 1


def test_a_name_checking_context_without_a_name_is_a_usage_error() -> None:
    # A Unix-socket-style host has no name to verify: refused before the handshake.
    with ScriptedServer(tls_server(GOOD)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(ValueError, match="server_hostname"):
            Session.connect(
                "/run/lmtp.sock", tls=TLSMode.STARTTLS, ssl_context=CA.client_context(), sock=sock
            )
        sock.close()


def test_tls_errors_are_also_the_builtin_kinds() -> None:
    with ScriptedServer(tls_server(self_signed(NAME))) as server:
        with pytest.raises(ssl.SSLError):
            connect(server, TLSMode.STARTTLS)
    with ScriptedServer(refusing_server("454 no")) as server:
        with pytest.raises(SMTPClientError):
            connect(server, TLSMode.STARTTLS)
