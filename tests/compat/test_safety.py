"""Where smtplib is unsafe, smtpclient.compat is not: each test shows
smtplib's behaviour and ours against the same server."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from types import ModuleType
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally
from servers.smtpd import AiosmtpdServer

import smtpclient.compat as compat
from smtpclient.errors import SMTPTimeoutError, TransientError

from .twin import USERS, TLSFiles, captured_stderr

HOST = "127.0.0.1"


def client(lib: ModuleType, server: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout", 10)
    return lib.SMTP(HOST, server.port, local_hostname="client.test", **kwargs)


# --- timeout bounds the whole reply -------------------------------------------------


DRIPPED = b"250 2.0.0 ok after a slow drip\r\n"


def _drip_noop_reply(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"noop")
    conn.drip(DRIPPED, 0.2)  # 6.4 s in all, never 1 s of silence
    serve_normally(conn)


def test_timeout_bounds_the_whole_reply_not_each_read() -> None:
    with ScriptedServer(_drip_noop_reply) as server:
        theirs = client(smtplib, server, timeout=1)
        theirs.ehlo()
        start = time.monotonic()
        # smtplib's timeout restarts with every byte: it waits the whole drip.
        assert theirs.noop() == (250, b"2.0.0 ok after a slow drip")
        assert time.monotonic() - start > 2.5
        theirs.close()

        ours = client(compat, server, timeout=1)
        ours.ehlo()
        start = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected) as caught:
            ours.noop()
        assert time.monotonic() - start < 5.0  # the 1 s timeout, not the 6.4 s drip
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, SMTPTimeoutError) and isinstance(
            caught.value, TransientError
        )
        assert ours.sock is None  # a half-read reply leaves nothing trustworthy


# --- reply size is capped ------------------------------------------------------------


def _endless_noop_reply(conn: Conn) -> None:
    greet_and_ehlo(conn)
    conn.expect(b"noop")
    line = b"250-" + b"x" * 100 + b"\r\n"
    for _ in range(20000):  # 2 MB of continuation lines, then the last line
        conn.send(line * 10) if not conn.server.stopping.is_set() else None
    conn.send(b"250 end\r\n")
    serve_normally(conn)


def test_reply_size_is_capped() -> None:
    with ScriptedServer(_endless_noop_reply) as server:
        with client(smtplib, server) as theirs:
            theirs.ehlo()
            code, text = theirs.noop()  # smtplib keeps all of it in memory
            assert code == 250 and len(text) > 2_000_000

        ours = client(compat, server)
        ours.ehlo()
        with pytest.raises(smtplib.SMTPResponseException) as caught:
            ours.noop()
        assert isinstance(caught.value, compat.ReplyTooLargeError)
        assert caught.value.smtp_code == 500
        assert b"more than" in caught.value.smtp_error
        assert ours.sock is None


def test_a_line_that_is_not_a_reply_gives_minus_one_and_closes() -> None:
    def ssh_server(conn: Conn) -> None:
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.wait_closed(5)

    with ScriptedServer(ssh_server) as server:
        for lib in (smtplib, compat):
            with pytest.raises(smtplib.SMTPConnectError) as caught:
                client(lib, server)
            assert caught.value.smtp_code == -1


# --- TLS certificates are verified by default ---------------------------------------


def test_starttls_verifies_the_certificate_by_default(tls_server: AiosmtpdServer) -> None:
    # The server's certificate comes from a test CA nobody trusts.
    with client(smtplib, tls_server) as theirs:
        assert theirs.starttls()[0] == 220  # smtplib encrypts to anyone
        assert theirs.sock.getpeercert() == {}  # ... without having verified anything

    ours = client(compat, tls_server)
    with pytest.raises(ssl.SSLCertVerificationError):
        ours.starttls()
    assert ours.sock is None


def test_smtp_ssl_verifies_the_certificate_by_default(implicit_tls_server: AiosmtpdServer) -> None:
    with smtplib.SMTP_SSL(
        HOST, implicit_tls_server.port, local_hostname="c.test", timeout=10
    ) as theirs:
        assert theirs.noop()[0] == 250
    with pytest.raises(ssl.SSLCertVerificationError):
        compat.SMTP_SSL(HOST, implicit_tls_server.port, local_hostname="c.test", timeout=10)


def test_verified_tls_after_connect_uses_the_connected_host(
    tls_server: AiosmtpdServer, tls: TLSFiles
) -> None:
    # SMTP() + connect(host): smtplib checks the certificate against "" and fails.
    theirs = smtplib.SMTP(local_hostname="c.test", timeout=10)
    theirs.connect("localhost", tls_server.port)
    with pytest.raises(ValueError, match="server_hostname"):
        theirs.starttls(context=tls.client_context())
    theirs.close()

    with compat.SMTP(local_hostname="c.test", timeout=10) as ours:
        ours.connect("localhost", tls_server.port)
        assert ours.starttls(context=tls.client_context())[0] == 220
        assert ours.sock.getpeercert()["subjectAltName"]


# --- the read buffer is discarded at STARTTLS -----------------------------------------


def _injecting_tls_server(tls: TLSFiles) -> Any:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, ("STARTTLS",))
        conn.expect(b"STARTTLS")
        # A man in the middle appends a reply to the plaintext 220: read
        # after the handshake, it would answer the next command.
        conn.send(b"220 go ahead\r\n250-INJECTED\r\n250 AUTH PLAIN\r\n")
        conn.starttls(tls.server_context)
        conn.expect(b"ehlo")
        conn.reply("250 real.test", "250 SIZE 1000")
        serve_normally(conn)

    return handler


@pytest.mark.parametrize("lib", [smtplib, compat], ids=["smtplib", "compat"])
def test_bytes_before_the_handshake_are_never_read_as_a_reply(
    lib: ModuleType, tls: TLSFiles
) -> None:
    # smtplib drops its makefile() buffer here too: both must pass.
    with ScriptedServer(_injecting_tls_server(tls)) as server:
        with client(lib, server) as s:
            assert s.starttls(context=tls.client_context())[0] == 220
            assert s.ehlo() == (250, b"real.test\nSIZE 1000")
            assert not s.has_extn("auth")
        assert not server.errors


# --- bytes bodies get CRLF line ends ------------------------------------------------------


def test_bytes_bodies_get_crlf_line_ends(smtpd: AiosmtpdServer) -> None:
    body = b"Subject: bare\n\nline one\nline two\r.\r\nend"
    for lib in (smtplib, compat):
        with client(lib, smtpd) as s:
            s.sendmail("me@example.com", ["a@example.com"], body)
    theirs, ours = (m.content for m in smtpd.messages)
    assert b"one\nline" in theirs and b"two\r." in theirs  # bare LF and CR on the wire
    # (aiosmtpd has removed the stuffed dot: "\r." became a line of its own)
    assert ours == b"Subject: bare\r\n\r\nline one\r\nline two\r\n.\r\nend\r\n"
    # SIZE= counts the normalised message (as smtplib, without the line end
    # added to an unterminated last line), not the caller's bytes.
    assert smtpd.messages[0].mail_options == [f"SIZE={len(body)}"]
    assert smtpd.messages[1].mail_options == [f"SIZE={len(body) + 4}"]  # 4 bare line ends


# --- AUTH secrets are redacted in debug output ----------------------------------------------


def test_debug_output_redacts_auth_secrets(auth_server: AiosmtpdServer) -> None:
    ((user, password),) = USERS.items()
    outputs = []
    for lib in (smtplib, compat):
        with captured_stderr() as err:
            with client(lib, auth_server) as s:
                s.set_debuglevel(1)
                s.login(user, password)
            with client(lib, auth_server) as s:
                s.set_debuglevel(1)
                s.ehlo()
                s.user, s.password = user, password
                s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        outputs.append(err.getvalue())
    theirs, ours = outputs
    plain_secret = compat.encode_base64(f"\0{user}\0{password}".encode(), eol="")
    login_secret = compat.encode_base64(password.encode(), eol="")
    assert plain_secret in theirs and login_secret in theirs
    assert plain_secret not in ours and login_secret not in ours and password not in ours
    assert "send: 'AUTH PLAIN <redacted>\\r\\n'" in ours
    assert "send: '<redacted>\\r\\n'" in ours
    assert ours.count("reply: retcode (235)") == 2


# --- control characters in command arguments are refused --------------------------------


def _recording_server(conn: Conn) -> None:
    greet_and_ehlo(conn)
    serve_normally(conn)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.ehlo("client\x00.test"),
        lambda s: s.mail("me@example.com\x1b[2J"),
        lambda s: s.rcpt("a@example.com", ["NOTIFY=NEVER\x7f"]),
        lambda s: s.verify("user\x0b"),
        lambda s: s.docmd("NOOP", "\x07"),
    ],
    ids=["NUL in EHLO", "ESC in MAIL", "DEL in option", "VT in VRFY", "BEL"],
)
def test_control_characters_are_refused_before_sending(call: Any) -> None:
    with ScriptedServer(_recording_server) as server:
        with client(smtplib, server) as theirs:
            theirs.ehlo()
            call(theirs)  # smtplib refuses CR and LF only: the byte goes out
        with client(compat, server) as ours:
            ours.ehlo()
            with pytest.raises(ValueError, match="control character"):
                call(ours)
            assert ours.noop()[0] == 250  # nothing was sent: the session is intact
        deadline = time.monotonic() + 5
        while len(server.conns) < 2 or any(c.sock.fileno() != -1 for c in server.conns):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    theirs_wire, ours_wire = (bytes(c.received) for c in server.conns)
    assert [b for b in theirs_wire if (b < 32 and b not in (10, 13)) or b == 127]
    assert all(b >= 32 or b in (10, 13) for b in ours_wire) and 127 not in ours_wire


def test_crlf_injection_is_refused_as_in_smtplib(smtpd: AiosmtpdServer) -> None:
    with client(compat, smtpd) as ours:
        ours.ehlo()
        with pytest.raises(ValueError, match="prohibited newline"):
            ours.rcpt("a@example.com", ["NOTIFY=NEVER\r\nRCPT TO:<victim@example.com>"])


# --- transactions are not left half-open --------------------------------------------------


def _refuse_data_once(conn: Conn) -> None:
    greet_and_ehlo(conn)
    open_transaction = False
    refused = False
    while True:
        line = conn.line()
        verb = line[:4].upper()
        if verb == b"MAIL":
            conn.reply("503 5.5.1 nested MAIL" if open_transaction else "250 ok")
            open_transaction = True
        elif verb == b"RCPT":
            conn.reply("250 ok")
        elif verb == b"DATA" and not refused:
            refused = True
            conn.reply("451 4.3.0 try again")
        elif verb == b"DATA":
            conn.reply("354 go")
            conn.read_data()
            conn.reply("250 queued")
            open_transaction = False
        elif verb == b"RSET":
            open_transaction = False
            conn.reply("250 reset")
        elif verb == b"QUIT":
            conn.reply("221 bye")
            return
        else:
            conn.reply("250 ok")


@pytest.mark.parametrize("lib", [smtplib, compat], ids=["smtplib", "compat"])
def test_a_refused_data_command_resets_the_transaction(lib: ModuleType) -> None:
    with ScriptedServer(_refuse_data_once) as server:
        with client(lib, server) as s:
            with pytest.raises(smtplib.SMTPDataError):
                s.sendmail("me@example.com", ["a@example.com"], "x")
            if lib is smtplib:  # the MAIL of the next message hits the open one
                with pytest.raises(smtplib.SMTPSenderRefused, match="nested"):
                    s.sendmail("me@example.com", ["a@example.com"], "x")
            else:
                assert s.sendmail("me@example.com", ["a@example.com"], "x") == {}


def _waiting_for_data(conn: Conn) -> None:
    greet_and_ehlo(conn)
    serve_normally(conn)


@pytest.mark.parametrize("lib", [smtplib, compat], ids=["smtplib", "compat"])
def test_a_non_ascii_str_body_fails_before_data(lib: ModuleType) -> None:
    with ScriptedServer(_waiting_for_data) as server:
        s = client(lib, server)
        s.ehlo()
        s.mail("me@example.com")
        s.rcpt("a@example.com")
        with pytest.raises(UnicodeEncodeError):
            s.data("Subject: é\n\nnon-ASCII text\n")
        sent_data = b"data\r\n" in bytes(server.conns[0].received)
        # smtplib sent DATA and left the server waiting for content.
        assert sent_data is (lib is smtplib)
        if lib is compat:
            assert s.rset()[0] == 250
        s.close()


# --- LMTP reads one reply per recipient -----------------------------------------------


def _lmtp_server(conn: Conn) -> None:
    conn.reply("220 lmtp.test LMTP")
    conn.expect(b"lhlo")
    conn.reply("250-lmtp.test", "250 PIPELINING")
    while True:
        line = conn.line()
        verb = line[:4].upper()
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            conn.reply("250 ok")
        elif verb == b"DATA":
            conn.reply("354 go")
            conn.read_data()
            conn.reply("250 2.0.0 <a@example.com> delivered")
            conn.reply("452 4.2.2 <b@example.com> mailbox full")
            conn.reply("250 2.0.0 <c@example.com> delivered")
        elif verb == b"QUIT":
            conn.reply("221 bye")
            return


def test_lmtp_reads_every_recipients_reply() -> None:
    to = ["a@example.com", "b@example.com", "c@example.com"]
    with ScriptedServer(_lmtp_server) as server:
        theirs = smtplib.LMTP(HOST, server.port, local_hostname="c.test", timeout=10)
        assert theirs.sendmail("me@example.com", to, "x") == {}  # b's failure unseen
        # ... and the leftover replies answer the next commands.
        assert theirs.noop() == (452, b"4.2.2 <b@example.com> mailbox full")
        theirs.close()

        with compat.LMTP(HOST, server.port, local_hostname="c.test", timeout=10) as ours:
            refused = ours.sendmail("me@example.com", to, "x")
            assert refused == {"b@example.com": (452, b"4.2.2 <b@example.com> mailbox full")}
            assert ours.noop() == (250, b"ok")


def test_lmtp_over_a_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "lmtp.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        with compat.LMTP(local_hostname="c.test", timeout=5) as ours:
            with pytest.raises(OSError):
                ours.connect(str(tmp_path / "missing.sock"))

            def serve() -> None:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"220 unix.test LMTP\r\n")
                    assert conn.recv(100).startswith(b"lhlo c.test")
                    conn.sendall(b"250 unix.test\r\n")
                    assert conn.recv(100) == b"QUIT\r\n"
                    conn.sendall(b"221 bye\r\n")

            worker = threading.Thread(target=serve)
            worker.start()
            assert ours.connect(path) == (220, b"unix.test LMTP")
            assert ours.ehlo() == (250, b"unix.test")
        worker.join(5)
    finally:
        listener.close()


# --- AUTH credentials are UTF-8 ------------------------------------------------------------


def test_non_ascii_credentials_are_sent_as_utf8() -> None:
    users = {"jörg": "pässwörd"}
    with AiosmtpdServer(users=users, require_tls_for_auth=False) as server:
        with client(smtplib, server) as theirs, pytest.raises(UnicodeEncodeError):
            theirs.login("jörg", "pässwörd")
        with client(compat, server) as ours:
            assert ours.login("jörg", "pässwörd")[0] == 235
        with client(compat, server) as ours, pytest.raises(smtplib.SMTPAuthenticationError):
            ours.login("jörg", "pässword")  # the server really compared the password
