"""`smtpclient sendmail` with CRLF input: the headers it adds (Date,
Message-ID, From) use the input's line end, so the header check, which
refuses a header block that mixes CRLF and LF, lets the message through;
a header injected with a lone LF is still refused."""

from __future__ import annotations

from servers.smtpd import AiosmtpdServer

from cli.helpers import cli_env, run_cli


def _env(server: AiosmtpdServer) -> dict[str, str]:
    return cli_env(
        SMTPCLIENT_HOST="127.0.0.1", SMTPCLIENT_PORT=str(server.port), SMTPCLIENT_TLS="none"
    )


def test_crlf_input_without_date_or_message_id_is_sent(smtpd: AiosmtpdServer) -> None:
    message = b"To: to@example.test\r\nSubject: from PHP\r\n\r\nbody line\r\n"
    done = run_cli("sendmail", "-t", "-i", "-f", "web@example.test", input=message, env=_env(smtpd))
    assert done.returncode == 0, done.stderr
    (received,) = smtpd.messages
    head = received.content.split(b"\r\n\r\n", 1)[0]
    assert b"\nDate: " in head and b"\nMessage-ID: " in head and b"Subject: from PHP" in head


def test_a_lone_lf_in_a_crlf_header_is_refused(smtpd: AiosmtpdServer) -> None:
    message = b"To: to@example.test\r\nSubject: hi\nBcc: victim@example.test\r\n\r\nbody\r\n"
    done = run_cli("sendmail", "-i", "to@example.test", input=message, env=_env(smtpd))
    assert done.returncode != 0
    assert "CR or LF" in done.stderr or "line end" in done.stderr
    assert smtpd.messages == []
