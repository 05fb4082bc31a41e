"""`smtpclient sendmail`: the sendmail command line, stdin, the settings file."""

from __future__ import annotations

import os
from pathlib import Path

from servers.smtpd import AiosmtpdServer

from cli.helpers import cli_env, run_cli

MESSAGE = (
    b"To: to@example.test\n"
    b"Cc: cc@example.test\n"
    b"Bcc: hidden@example.test\n"
    b"Subject: nightly backup\n"
    b"\n"
    b"first line\n"
    b".\n"
    b"after the dot\n"
)


def env_for(server: AiosmtpdServer, **extra: str) -> dict[str, str]:
    return cli_env(SMTPCLIENT_HOST="127.0.0.1", SMTPCLIENT_PORT=str(server.port),
                   SMTPCLIENT_TLS="none", **extra)


def test_t_reads_recipients_from_headers_and_drops_bcc(smtpd: AiosmtpdServer) -> None:
    done = run_cli("sendmail", "-t", "-i", "-f", "cron@example.test", input=MESSAGE,
                   env=env_for(smtpd))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # silent on success (cron)
    (received,) = smtpd.messages
    assert received.mail_from == "cron@example.test"
    assert received.rcpt_tos == ["to@example.test", "cc@example.test", "hidden@example.test"]
    content = received.content.decode()
    assert "Bcc" not in content and "hidden@example.test" not in content
    assert "Subject: nightly backup" in content
    assert "after the dot" in content  # -i: a lone "." is just a line
    for added in ("From: cron@example.test", "Date: ", "Message-ID: "):
        assert added in content


def test_without_i_a_lone_dot_ends_the_message(smtpd: AiosmtpdServer) -> None:
    done = run_cli("sendmail", "-oem", "arg@example.test", input=MESSAGE, env=env_for(smtpd))
    assert done.returncode == 0, done.stderr
    (received,) = smtpd.messages
    assert received.rcpt_tos == ["arg@example.test"]  # no -t: only the arguments
    assert b"first line" in received.content
    assert b"after the dot" not in received.content


def test_settings_file_accounts_and_inheritance(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    config = tmp_path / "config.ini"
    config.write_text(
        "[default]\nhost = 127.0.0.1\nport = 1\ntls = none\nfrom = default@example.test\n\n"
        f"[work]\ninherit = default\nport = {smtpd.port}\nfrom = work@example.test\n"
    )
    env = cli_env(SMTPCLIENT_CONFIG=str(config))
    done = run_cli("sendmail", "-a", "work", "-i", "x@example.test", input=MESSAGE, env=env)
    assert done.returncode == 0, done.stderr
    assert smtpd.messages[0].mail_from == "work@example.test"
    failed = run_cli("sendmail", "-i", "x@example.test", input=MESSAGE, env=env)  # port 1
    assert failed.returncode == 75
    assert "deferred  x@example.test" in failed.stderr
    # The environment overrides the file.
    env["SMTPCLIENT_PORT"] = str(smtpd.port)
    assert run_cli("sendmail", "-i", "y@example.test", input=MESSAGE, env=env).returncode == 0


def test_a_password_in_a_readable_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.ini"
    config.write_text("[default]\nhost = 127.0.0.1\nusername = u\npassword = p4ss\n")
    os.chmod(config, 0o644)
    done = run_cli("sendmail", "-t", input=MESSAGE, env=cli_env(SMTPCLIENT_CONFIG=str(config)))
    assert done.returncode == 78
    assert "chmod 600" in done.stderr


def test_config_and_usage_errors(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    assert run_cli("sendmail", "-t", input=MESSAGE, env=cli_env()).returncode == 78  # no host
    no_rcpt = run_cli("sendmail", input=MESSAGE, env=env_for(smtpd))
    assert no_rcpt.returncode == 64
    assert run_cli("sendmail", "-bp", env=env_for(smtpd)).returncode == 64
    bad = tmp_path / "bad.ini"
    bad.write_text("[default]\nhots = typo\n")
    done = run_cli("sendmail", "-t", input=MESSAGE, env=cli_env(SMTPCLIENT_CONFIG=str(bad)))
    assert done.returncode == 78 and "unknown key 'hots'" in done.stderr
    assert smtpd.messages == []


def test_refused_recipient_is_reported_on_stderr(smtpd: AiosmtpdServer) -> None:
    smtpd.recorder.refuse["gone@example.test"] = "550 5.1.1 No such user"
    done = run_cli("sendmail", "-i", "ok@example.test", "gone@example.test", input=MESSAGE,
                   env=env_for(smtpd))
    assert done.returncode == 79
    assert "refused   gone@example.test  550 5.1.1 No such user" in done.stderr
    assert "ok@example.test" not in done.stderr  # only failures, unless -v
