"""The same script, written from smtplib's documentation, run with smtplib
and with smtpclient.compat against the same aiosmtpd server: return values,
exceptions and their attributes, what the server stored and what
set_debuglevel printed must be identical."""

from __future__ import annotations

import re
import smtplib
import socket
from email.message import EmailMessage
from types import ModuleType
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer
from servers.smtpd import AiosmtpdServer, Recorder

from .twin import LIBS, USERS, TLSFiles, assert_same, attempt, run_both

HOST = "127.0.0.1"


def client(lib: ModuleType, server: Any, **kwargs: Any) -> Any:
    return lib.SMTP(HOST, server.port, local_hostname="client.test", timeout=10, **kwargs)


def test_greeting_ehlo_and_simple_commands(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        s = client(lib, server)
        seen: list[Any] = [s.helo_resp, s.ehlo_resp, s.does_esmtp, s.esmtp_features]
        seen.append(s.ehlo())
        seen += [s.ehlo_resp, s.does_esmtp, s.esmtp_features]
        seen += [s.has_extn("SIZE"), s.has_extn("size"), s.has_extn("STARTTLS")]
        seen += [s.noop(), s.rset(), s.help(), s.help("MAIL")]
        seen += [s.verify("alice@example.com"), s.vrfy("Alice <alice@example.com>")]
        seen += [s.expn("list@example.com"), s.docmd("NOOP"), s.docmd("XYZZY")]
        s.putcmd("NOOP")
        seen.append(s.getreply())
        seen += [s.quit(), s.sock, s.file, s.ehlo_resp, s.esmtp_features, s.does_esmtp]
        return seen

    run = assert_same(script, smtpd)
    assert run.outcomes[4][0] == 250 and run.outcomes[7]["size"] == "67108864"
    assert run.outcomes[-6] == (221, b"Bye")


def test_helo_then_ehlo_or_helo_if_needed_says_nothing_more(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        s = client(lib, server)
        seen = [s.helo(), s.helo_resp, s.ehlo_or_helo_if_needed(), s.does_esmtp]
        seen.append(s.sendmail("a@example.com", "b@example.com", "Subject: x\n\nbody\n"))
        s.close()
        return seen

    run = assert_same(script, smtpd)
    assert run.outcomes[3] is False
    assert run.stored[0][3] == []  # no SIZE=: HELO means no ESMTP options


def test_connect_later_with_host_colon_port(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        s = lib.SMTP(local_hostname="client.test", timeout=10)
        seen = [s.connect(f"{HOST}:{server.port}"), s.ehlo()[0], s.quit()]
        seen.append(attempt(s.noop))
        seen.append(attempt(lambda: s.connect("localhost:smtp")))
        return seen

    run = assert_same(script, smtpd)
    assert run.outcomes[0][0] == 220
    assert run.outcomes[3][1][0] == "SMTPServerDisconnected"
    assert run.outcomes[4] == ("raised", ("OSError", None, None, None, None, None))


def test_sendmail_returns_the_refused_recipients(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse["nobody@example.com"] = "550 5.1.1 no such user"
    smtpd.recorder.refuse["later@example.com"] = "450 4.2.0 try later"

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            to = ["a@example.com", "nobody@example.com", "later@example.com", "b@example.com"]
            return [s.sendmail("me@example.com", to, b"Subject: t\r\n\r\nhello\r\n")]

    run = assert_same(script, smtpd)
    assert run.outcomes == [
        {
            "nobody@example.com": (550, b"5.1.1 no such user"),
            "later@example.com": (450, b"4.2.0 try later"),
        }
    ]
    assert run.stored[0][1] == ["a@example.com", "b@example.com"]
    assert run.stored[0][3] == ["SIZE=21"]


def test_every_recipient_refused_raises_and_resets(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse["x@example.com"] = "550 5.1.1 no"
    smtpd.recorder.refuse["y@example.com"] = "551 5.1.6 moved"

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            failed = attempt(
                lambda: s.sendmail("me@example.com", ["x@example.com", "y@example.com"], "hi")
            )
            # The RSET after the failure leaves the session usable.
            return [failed, s.sendmail("me@example.com", ["ok@example.com"], "Subject: 2\n\nok")]

    run = assert_same(script, smtpd)
    refused = {"x@example.com": (550, b"5.1.1 no"), "y@example.com": (551, b"5.1.6 moved")}
    assert run.outcomes[0] == (
        "raised",
        ("SMTPRecipientsRefused", None, None, None, refused, (refused,)),
    )
    assert [m[1] for m in run.stored] == [["ok@example.com"]]


class _RefusingSender(Recorder):
    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("blocked"):
            return "553 5.7.1 sender blocked"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


def test_refused_sender_raises_with_the_sender_and_resets() -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            failed = attempt(lambda: s.sendmail("blocked@example.com", ["a@example.com"], "hi"))
            return [failed, s.sendmail("fine@example.com", ["a@example.com"], "Subject: 2\n\nok")]

    with AiosmtpdServer(recorder=_RefusingSender()) as server:
        run = assert_same(script, server)
    assert run.outcomes[0] == (
        "raised",
        (
            "SMTPSenderRefused",
            553,
            b"5.7.1 sender blocked",
            "blocked@example.com",
            None,
            (553, b"5.7.1 sender blocked", "blocked@example.com"),
        ),
    )
    assert [m[0] for m in run.stored] == ["fine@example.com"]


def test_refused_message_raises_data_error(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.data_reply = "554 5.6.0 content rejected"

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            failed = attempt(lambda: s.sendmail("me@example.com", ["a@example.com"], "x"))
            return [failed, s.noop()]

    run = assert_same(script, smtpd)
    assert run.outcomes[0][1][:3] == ("SMTPDataError", 554, b"5.6.0 content rejected")


def test_421_closes_the_connection(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse["closing@example.com"] = "421 4.3.2 shutting down"

    def script(lib: ModuleType, server: Any) -> list[Any]:
        s = client(lib, server)
        failed = attempt(
            lambda: s.sendmail("me@example.com", ["closing@example.com", "b@example.com"], "x")
        )
        return [failed, s.sock, attempt(s.noop)]

    run = assert_same(script, smtpd)
    refused = {"closing@example.com": (421, b"4.3.2 shutting down")}
    assert run.outcomes[0] == (
        "raised",
        ("SMTPRecipientsRefused", None, None, None, refused, (refused,)),
    )
    assert run.outcomes[1] is None
    assert run.outcomes[2][1][0] == "SMTPServerDisconnected"


def test_data_sends_str_with_crlf_and_stuffed_dots(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            s.ehlo()
            seen = [s.mail("me@example.com", ["BODY=8BITMIME"]), s.rcpt("a@example.com")]
            seen.append(s.data("Subject: dots\n\n.leading dot\r\nbare\rcr\n.\n"))
            return seen

    run = assert_same(script, smtpd)
    assert run.stored[0][2] == b"Subject: dots\r\n\r\n.leading dot\r\nbare\r\ncr\r\n.\r\n"
    assert run.stored[0][3] == ["BODY=8BITMIME"]


def test_send_message_takes_the_envelope_from_headers_and_drops_bcc(smtpd: AiosmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "Me <me@example.com>"
    msg["To"] = "A <a@example.com>, b@example.com"
    msg["Cc"] = "c@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Subject"] = "headers"
    msg.set_content("body line\n.dot line\n")

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            return [
                s.send_message(msg),
                s.send_message(msg, "other@example.com", ["z@example.com"]),
            ]

    run = assert_same(script, smtpd)
    assert run.stored[0][:2] == (
        "me@example.com",
        ["a@example.com", "b@example.com", "hidden@example.com", "c@example.com"],
    )
    assert b"hidden" not in run.stored[0][2]
    assert run.stored[1][:2] == ("other@example.com", ["z@example.com"])


def test_send_message_uses_smtputf8_for_international_addresses(smtpd: AiosmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "jörg@example.com"
    msg["To"] = "ü@example.com"
    msg.set_content("grüße")

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            return [s.send_message(msg)]

    run = assert_same(script, smtpd)
    assert run.stored[0][0] == "jörg@example.com"
    assert "SMTPUTF8" in run.stored[0][3] and "BODY=8BITMIME" in run.stored[0][3]


def test_smtputf8_option_without_server_support_is_refused() -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            s.ehlo()
            msg = EmailMessage()
            msg["From"], msg["To"] = "jörg@example.com", "a@example.com"
            return [
                attempt(lambda: s.mail("a@example.com", ["SMTPUTF8"])),
                attempt(lambda: s.send_message(msg)),
            ]

    with AiosmtpdServer(smtputf8=False) as server:
        run = assert_same(script, server)
    assert [o[1][0] for o in run.outcomes] == ["SMTPNotSupportedError"] * 2


def test_login_and_auth_helpers(auth_server: AiosmtpdServer) -> None:
    ((user, password),) = USERS.items()

    def script(lib: ModuleType, server: Any) -> list[Any]:
        seen = []
        with client(lib, server) as s:
            seen.append(attempt(lambda: s.login(user, "wrong")))
        with client(lib, server) as s:
            seen.append(s.login(user, password))
            seen.append(s.login(user, password))  # 503: already authenticated
        with client(lib, server) as s:
            s.ehlo()
            s.user, s.password = user, password
            seen.append(s.auth("login", s.auth_login, initial_response_ok=False))
        with client(lib, server) as s:
            s.ehlo()
            s.user, s.password = user, password
            seen.append(s.auth("PLAIN", s.auth_plain, initial_response_ok=False))
            seen.append(s.esmtp_features["auth"])
        return seen

    run = assert_same(script, auth_server)
    assert run.outcomes[0][1][:2] == ("SMTPAuthenticationError", 535)
    assert run.outcomes[1][0] == 235 and run.outcomes[2][0] == 503
    assert run.outcomes[3][0] == 235 and run.outcomes[4][0] == 235


def test_starttls_not_offered(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            return [attempt(s.starttls), s.noop()]

    run = assert_same(script, smtpd)
    assert run.outcomes[0][1][0] == "SMTPNotSupportedError"


def test_starttls_with_a_context_forgets_the_plaintext_state(
    tls_server: AiosmtpdServer, tls: TLSFiles
) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            seen: list[Any] = [s.ehlo()[0], s.has_extn("starttls")]
            seen.append(s.starttls(context=tls.client_context()))
            seen += [s.ehlo_resp, s.helo_resp, s.esmtp_features, s.does_esmtp]
            seen += [s.ehlo()[0], s.has_extn("starttls"), s.sock.version() is not None]
            # Both refuse a second STARTTLS with SMTPNotSupportedError (compat
            # before sending anything, with its own message): compare the class.
            seen.append(attempt(lambda: s.starttls(context=tls.client_context()))[1][0])
            seen.append(s.sendmail("me@example.com", ["a@example.com"], "Subject: tls\n\nok"))
            return seen

    run = assert_same(script, tls_server)
    assert run.outcomes[2] == (220, b"Ready to start TLS")
    assert run.outcomes[3:7] == [None, None, {}, False]
    assert run.outcomes[8] is False and run.outcomes[9] is True
    assert run.outcomes[10] == "SMTPNotSupportedError"


def test_smtp_ssl_with_a_context(implicit_tls_server: AiosmtpdServer, tls: TLSFiles) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with lib.SMTP_SSL(
            HOST, server.port, local_hostname="c.test", timeout=10, context=tls.client_context()
        ) as s:
            return [s.default_port, s.ehlo()[0], s.sendmail("me@example.com", "a@example.com", "x")]

    run = assert_same(script, implicit_tls_server)
    assert run.outcomes == [465, 250, {}]


def test_context_manager_quits_and_closes(smtpd: AiosmtpdServer) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            s.noop()
        return [s.sock, s.file, attempt(s.noop)]

    run = assert_same(script, smtpd)
    assert run.outcomes[2][1][0] == "SMTPServerDisconnected"


@pytest.mark.parametrize("level", [1, 2])
def test_debug_output_is_the_same(smtpd: AiosmtpdServer, level: int) -> None:
    def script(lib: ModuleType, server: Any) -> list[Any]:
        s = lib.SMTP(local_hostname="client.test", timeout=10)
        s.set_debuglevel(level)
        s.connect(HOST, server.port)
        s.sendmail("me@example.com", ["a@example.com"], "Subject: dbg\n\nline\n")
        s.quit()
        return [s.debuglevel]

    theirs, ours = run_both(script, smtpd)
    if level == 2:  # every line starts with a wall-clock time
        stamp = re.compile(r"^\d\d:\d\d:\d\d\.\d+ ", re.M)
        assert len(stamp.findall(ours.stderr)) == ours.stderr.count("\n") > 10
        ours.stderr, theirs.stderr = stamp.sub("", ours.stderr), stamp.sub("", theirs.stderr)
    assert ours.stderr == theirs.stderr
    assert "send: 'mail from:<me@example.com> size=" in ours.stderr.lower()
    assert "reply: retcode (221); Msg: b'Bye'" in ours.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("lib", LIBS, ids=["smtplib", "compat"])
def test_connection_failures_are_the_same_builtins(lib: ModuleType) -> None:
    with pytest.raises(ConnectionRefusedError):
        lib.SMTP(HOST, _closed_port(), local_hostname="c.test", timeout=5)
    with pytest.raises(ValueError, match="Non-blocking"):
        lib.SMTP(HOST, 25, local_hostname="c.test", timeout=0)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        lib.SMTP(local_hostname="c.test").noop()


def test_refused_greeting_raises_connect_error() -> None:
    def greet_no(conn: Conn) -> None:
        conn.reply("554 5.7.1 no service for you")
        conn.wait_closed(5)

    def script(lib: ModuleType, server: Any) -> list[Any]:
        return [attempt(lambda: client(lib, server))]

    with ScriptedServer(greet_no) as server:
        server.messages = []  # type: ignore[attr-defined]
        run = assert_same(script, server)
    assert run.outcomes[0][1][:3] == ("SMTPConnectError", 554, b"5.7.1 no service for you")


def test_helo_fallback_when_ehlo_is_not_understood() -> None:
    def old_server(conn: Conn) -> None:
        conn.reply("220 old.test SMTP")
        conn.expect(b"ehlo")
        conn.reply("502 5.5.2 what?")
        conn.expect(b"helo")
        conn.reply("250 old.test")
        conn.expect(b"mail FROM:<me@example.com>")  # no SIZE: not ESMTP
        conn.reply("250 ok")
        conn.expect(b"rcpt TO:<a@example.com>")
        conn.reply("250 ok")
        conn.expect(b"data")
        conn.reply("354 go")
        conn.read_data()
        conn.reply("250 queued")
        conn.expect(b"quit")
        conn.reply("221 bye")

    def script(lib: ModuleType, server: Any) -> list[Any]:
        with client(lib, server) as s:
            result = s.sendmail("me@example.com", ["a@example.com"], "x")
            return [result, s.helo_resp, s.ehlo_resp, s.does_esmtp]

    with ScriptedServer(old_server) as server:
        server.messages = []  # type: ignore[attr-defined]
        run = assert_same(script, server)
        assert not server.errors
    assert run.outcomes == [{}, b"old.test", b"5.5.2 what?", False]
