"""A throwaway Dovecot on loopback: SASL for Postfix and an LMTP server.

Everything lives in one temporary directory: the config file (``dovecot -c``),
base_dir with the sockets, state_dir, the log file, a passwd-file with the
test users and the users' Maildirs. No system users are involved; mail is
stored as uid/gid 65534.

    with DovecotServer() as dovecot:
        with smtplib.LMTP(dovecot.lmtp_socket) as lmtp: ...
        (stored,) = dovecot.messages("alice@example.test")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._proc import NOBODY, ChildServer, free_port, read_banner, require_binary, tail
from .maildir import clear, strip_added_headers, wait_for_messages

__all__ = ["USERS", "DovecotServer", "strip_added_headers"]

# Test accounts (username -> password). Stored as {PLAIN} so that every
# mechanism works: CRAM-MD5 and SCRAM need the plaintext (or a matching hash).
USERS: dict[str, str] = {
    "alice@example.test": "secret",
    "bob@example.test": "b0b-Pa55word",
    "carol@example.test": "pässwörd",  # non-ASCII password (UTF-8 on the wire)
    "jörg@example.test": "geheim",  # non-ASCII username (UTF-8 on the wire)
}

AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")


class DovecotServer(ChildServer):
    """A private Dovecot serving SASL (for Postfix) and LMTP.

    Arguments (keyword-only): ``users`` (username -> password, default
    ``USERS``), ``extra_config`` (text appended to dovecot.conf),
    ``start_timeout`` (seconds).

    Attributes: ``directory``, ``auth_socket`` (a Unix socket Postfix's
    ``smtpd_sasl_path`` can name), ``lmtp_socket`` (Unix socket path),
    ``lmtp_host``/``lmtp_port`` (TCP on 127.0.0.1), ``users``.

    Dovecot 2.3's LMTP does not offer SMTPUTF8, so the non-ASCII user can
    log in (SASL) but cannot be an LMTP recipient. Every mechanism in
    ``AUTH_MECHANISMS`` works for every user; a failed PLAIN/LOGIN is
    answered after about 0.5 s (Dovecot's failure tick).
    """

    name = "Dovecot"

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        extra_config: str = "",
        start_timeout: float = 20.0,
    ) -> None:
        self._dovecot = require_binary("dovecot", "dovecot-core")
        if not Path("/usr/lib/dovecot/lmtp").exists():
            raise RuntimeError(
                "Dovecot's LMTP server is not installed: install the Debian "
                "package 'dovecot-lmtpd' (.ci/run does this)"
            )
        self.users = dict(USERS if users is None else users)
        for name, password in self.users.items():
            if any(c in name + password for c in ":\n\r"):
                raise ValueError(f"{name!r}: ':' and line breaks cannot be stored in a passwd-file")
        self._extra = extra_config
        self.lmtp_host = "127.0.0.1"
        self.lmtp_port = 0
        super().__init__("smtpclient-dovecot-", start_timeout)

    # -- paths ---------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return self.directory / "run"

    @property
    def config_file(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        """Dovecot's log (``log()`` returns what is in it so far)."""
        return self.directory / "dovecot.log"

    @property
    def output_path(self) -> Path:
        """What dovecot printed itself (fatal start-up errors land here)."""
        return self.directory / "dovecot.out"

    @property
    def auth_socket(self) -> Path:
        return self.base_dir / "auth-postfix"

    @property
    def lmtp_socket(self) -> Path:
        return self.base_dir / "lmtp"

    def maildir(self, user: str) -> Path:
        """Where ``user``'s mail is stored (a Maildir: new/, cur/, tmp/)."""
        return self.directory / "mail" / user

    # -- what tests look at -------------------------------------------------
    def messages(self, user: str, count: int = 1, wait: float = 20.0) -> list[bytes]:
        """Wait (at most ``wait`` seconds) until ``user`` has at least
        ``count`` new messages; return all of them, oldest first, as stored
        (LF line ends, Dovecot's Return-Path/Delivered-To/Received first:
        see ``strip_added_headers``).

        Raises AssertionError with the log if fewer arrive in time.
        """
        return wait_for_messages(
            self.maildir(user) / "new", count, wait, lambda: tail(self.log_path)
        )

    def clear_messages(self, user: str | None = None) -> None:
        """Delete the stored mail of ``user`` (of every user when None)."""
        for name in [user] if user is not None else self.users:
            clear(self.maildir(name))

    # -- internals (start/stop: ManagedServer) ---------------------------------
    def _log_files(self) -> Sequence[Path]:
        return (self.log_path, self.output_path)

    def _prepare(self) -> None:
        # Postfix's smtpd (user postfix) must reach the auth socket, and the
        # delivery processes (uid 65534) their Maildirs.
        self.directory.chmod(0o755)
        self.base_dir.mkdir(mode=0o755)
        (self.directory / "state").mkdir(mode=0o750)
        mail = self.directory / "mail"
        mail.mkdir()
        os.chown(mail, NOBODY, NOBODY)
        lines = [f"{name}:{{PLAIN}}{password}::::::" for name, password in self.users.items()]
        users = self.directory / "users"
        users.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # The auth process runs as the dovecot user.
        shutil.chown(users, user="root", group="dovecot")
        users.chmod(0o640)

    def _config(self) -> str:
        d = self.directory
        return f"""\
# Generated for one test run; see tests/servers/dovecot.py.
base_dir = {self.base_dir}
state_dir = {d / "state"}
instance_name = {d.name}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = lmtp
listen = 127.0.0.1
ssl = no
hostname = lmtp.example.test
postmaster_address = postmaster@example.test
# Postfix decides whether AUTH needs TLS (smtpd_tls_auth_only); Dovecot must
# not refuse PLAIN on its own when Postfix allows it.
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256
# Non-ASCII usernames are part of the tests; keep names exactly as sent.
auth_username_chars =
auth_username_format = %u
# Failed logins would otherwise be answered only after 2 s.
auth_failure_delay = 0
auth_verbose = yes
mail_location = maildir:{d / "mail"}/%u
mail_uid = {NOBODY}
mail_gid = {NOBODY}
first_valid_uid = 1
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d / "users"}
  # Answer a failed login at once rather than on the next 0.5 s tick (only
  # credential lookups honour it: CRAM-MD5, SCRAM; PLAIN still waits).
  default_fields = nodelay=yes
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d / "users"}
  default_fields = uid={NOBODY} gid={NOBODY} home={d / "home"}/%u
}}
# Dovecot slows every AUTH from an address after a failure, by up to 15 s
# per attempt (anvil's auth penalty); a closed socket is the documented off
# switch. Tests fail logins on purpose and all come from 127.0.0.1.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = {self.lmtp_host}
    port = {self.lmtp_port}
  }}
}}
{self._extra}
"""

    def _start_once(self) -> str | None:
        self.lmtp_port = free_port(self.lmtp_host)
        self.config_file.write_text(self._config())
        # -F keeps the master in the foreground, as our child.
        self._launch([self._dovecot, "-F", "-c", str(self.config_file)], self.output_path)
        return None if self._wait_running(self._listening) else "did not start"

    def _listening(self) -> bool:
        return (
            self.auth_socket.exists()
            and self.lmtp_socket.exists()
            and read_banner(self.lmtp_host, self.lmtp_port, timeout=1.0).startswith(b"220 ")
        )
