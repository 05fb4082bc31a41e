"""A throwaway Postfix instance on 127.0.0.1, for tests against a real MTA.

Each ``PostfixServer`` lives in its own temporary directory (main.cf,
master.cf, queue, data, log and the Maildir all under it), listens on free
ephemeral ports and accepts mail for ``example.test`` into one Maildir.
See /work/shared/SERVERS.md for why each setting is there.

    with PostfixServer() as server:
        smtplib.SMTP("127.0.0.1", server.port).sendmail(...)
        (stored,) = server.maildir_messages(count=1)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from ._proc import (
    NOBODY,
    ManagedServer,
    accepts,
    free_port,
    kill_session,
    pid_alive,
    process_session,
    read_banner,
    require_binary,
    tail,
    wait_until,
)
from .certs import TestCertificates, make_test_certificates
from .maildir import clear, strip_added_headers, wait_for_messages

DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
MiB = 1024 * 1024

# Recipients with a fixed answer, so tests can provoke per-recipient refusals
# from a real server (partial success, 4xx vs 5xx handling).
REJECTED_RECIPIENT = f"rejected@{DOMAIN}"
DEFERRED_RECIPIENT = f"deferred@{DOMAIN}"
_RECIPIENT_ACCESS = (
    f"{REJECTED_RECIPIENT} 550 5.1.1 Recipient refused (test fixture)\n"
    f"{DEFERRED_RECIPIENT} 450 4.2.0 Recipient deferred (test fixture)\n"
)

# The default main.cf must list every alternate config directory, or
# ``postfix -c DIR`` exits 1 without a word. Several test processes may edit
# it at once, so every read-modify-write happens under this lock.
_DEFAULT_CONFIG_DIR = Path("/etc/postfix")
_ALT_DIRS_LOCK = Path(tempfile.gettempdir()) / "smtpclient-postfix-alternate-dirs.lock"

__all__ = ["DEFERRED_RECIPIENT", "REJECTED_RECIPIENT", "PostfixServer", "strip_added_headers"]

_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")

# Services a test instance needs. chroot is "n" everywhere: a chroot under
# the temp queue directory would lack /etc files and the Dovecot socket.
_MASTER_CF_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@contextlib.contextmanager
def _alt_dirs_locked() -> Iterator[None]:
    with _ALT_DIRS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _edit_alternate_dirs(postconf: str, add: str | None, remove: str | None) -> None:
    """Add/remove one directory from alternate_config_directories in the
    default main.cf, and drop entries whose directory is gone (left by a
    killed test run), so the list does not grow forever."""
    with _alt_dirs_locked():
        current = (
            subprocess.run(
                [postconf, "-c", str(_DEFAULT_CONFIG_DIR), "-h", "alternate_config_directories"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            .stdout.replace(",", " ")
            .split()
        )
        wanted = [d for d in current if d != remove and (d.startswith("$") or Path(d).is_dir())]
        if add is not None and add not in wanted:
            wanted.append(add)
        if wanted != current:
            subprocess.run(
                [
                    postconf,
                    "-c",
                    str(_DEFAULT_CONFIG_DIR),
                    "-e",
                    f"alternate_config_directories = {' '.join(wanted)}",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            # Every postfix command waits until the default main.cf is two
            # seconds old (0.3 s naps); date our edit back to skip that.
            past = time.time() - 60
            os.utime(_DEFAULT_CONFIG_DIR / "main.cf", (past, past))


class PostfixServer(ManagedServer):
    """A private Postfix on 127.0.0.1 delivering ``@example.test`` to a Maildir.

    Arguments (all keyword-only):
      tls: offer STARTTLS (``smtpd_tls_security_level = may``).
      implicit_tls: also listen on ``implicit_port`` with TLS from the first
        byte (port-465 style, ``smtpd_tls_wrappermode = yes``); implies tls.
      cert_file, key_file: the server certificate (chain) and key, PEM.
      certs: a ``TestCertificates`` instead (see certs.py); kept as ``.certs``.
        With TLS on and neither given, a trustme CA and a certificate for
        localhost/127.0.0.1/::1/mail.example.test are made: ``.certs``.
      sasl: AUTH through Dovecot at ``dovecot_auth_socket`` (a path).
      allow_plaintext_auth: offer AUTH before STARTTLS too (default: AUTH
        only after STARTTLS, ``smtpd_tls_auth_only = yes``).
      discard: deliver every message to the discard transport (benchmarks).
      message_size_limit: bytes (default 200 MiB).
      main_cf: extra main.cf parameters, applied last (override anything).

    Attributes: ``host``, ``port``, ``implicit_port`` (None unless asked),
    ``directory``, ``maildir`` (the Maildir root), ``certs``.
    Fixed recipients: ``REJECTED_RECIPIENT`` (550 at RCPT) and
    ``DEFERRED_RECIPIENT`` (450 at RCPT); any other ``@example.test``
    address is delivered; other domains get 554 relay access denied
    unless authenticated.
    """

    name = "Postfix"

    def __init__(
        self,
        *,
        tls: bool = False,
        implicit_tls: bool = False,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        certs: TestCertificates | None = None,
        sasl: bool = False,
        dovecot_auth_socket: str | os.PathLike[str] | None = None,
        allow_plaintext_auth: bool = False,
        discard: bool = False,
        message_size_limit: int = 200 * MiB,
        main_cf: Mapping[str, str] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self._postfix = require_binary("postfix", "postfix")
        self._postconf = require_binary("postconf", "postfix")
        if sasl and dovecot_auth_socket is None:
            raise ValueError("sasl=True needs dovecot_auth_socket (see DovecotServer.auth_socket)")
        if (cert_file is None) != (key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        if certs is not None:
            if cert_file is not None:
                raise ValueError("give certs or cert_file/key_file, not both")
            cert_file, key_file = certs.cert_file, certs.key_file
        self.host = "127.0.0.1"
        self.port = 0
        self.implicit_port: int | None = None
        self.tls = tls or implicit_tls
        self.implicit_tls = implicit_tls
        self.sasl = sasl
        self.allow_plaintext_auth = allow_plaintext_auth
        self.discard = discard
        self.message_size_limit = message_size_limit
        self._dovecot_auth_socket = dovecot_auth_socket
        self._extra = dict(main_cf or {})
        self._cert_file = cert_file
        self._key_file = key_file
        self.certs: TestCertificates | None = certs
        super().__init__("smtpclient-postfix-", start_timeout)
        self.maildir = self.directory / "maildir"
        self._registered = False

    # -- paths ---------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.directory / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.directory / "spool"

    @property
    def log_path(self) -> Path:
        """The mail log (``maillog()`` returns what is in it so far)."""
        return self.directory / "maillog"

    @property
    def inbox_new(self) -> Path:
        return self.maildir / "inbox" / "new"

    # -- what tests look at -------------------------------------------------
    def maildir_messages(self, count: int = 1, wait: float = 20.0) -> list[bytes]:
        """Wait (at most ``wait`` seconds) until at least ``count`` messages
        are in the Maildir's new/ folder; return all of them, oldest first,
        as stored (LF line ends, Postfix's headers prepended: see
        ``strip_added_headers``).

        Raises AssertionError with the mail log if fewer arrive in time.
        """
        return wait_for_messages(self.inbox_new, count, wait, lambda: tail(self.log_path))

    def clear_maildir(self) -> None:
        """Remove every delivered message (the server is shared by a session)."""
        clear(self.maildir / "inbox")

    def maillog(self) -> str:
        """The instance's mail log so far."""
        return self.log()

    def queue_is_empty(self) -> bool:
        """True when no message waits in any queue (all delivered or bounced)."""
        for queue in _QUEUES:
            folder = self.queue_dir / queue
            if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
                return False
        return True

    def wait_queue_empty(self, wait: float = 20.0) -> bool:
        """Poll ``queue_is_empty`` for at most ``wait`` seconds."""
        return wait_until(self.queue_is_empty, wait)

    # -- internals (start/stop: ManagedServer) ---------------------------------
    def _start_once(self) -> str | None:
        self._write_config()
        try:
            self._run("start")  # fails when master cannot bind
        except RuntimeError as exc:
            return str(exc)
        if self._wait_ready():
            return None
        return f"did not start listening on {self.host}:{self.port}"

    def _forget(self) -> None:
        if self._registered:
            self._registered = False
            _edit_alternate_dirs(self._postconf, add=None, remove=str(self.config_dir))

    def _prepare(self) -> None:
        # Postfix daemons run as the postfix user and must traverse the path.
        self.directory.chmod(0o755)
        self.config_dir.mkdir()
        (self.directory / "data").mkdir()
        self.queue_dir.mkdir()
        self.maildir.mkdir()
        os.chown(self.maildir, NOBODY, NOBODY)  # the virtual agent writes as 65534
        (self.config_dir / "recipient_access").write_text(_RECIPIENT_ACCESS)
        if self.tls and self._cert_file is None:
            self.certs = make_test_certificates(self.directory / "tls")
            self._cert_file, self._key_file = self.certs.cert_file, self.certs.key_file
        _edit_alternate_dirs(self._postconf, add=str(self.config_dir), remove=None)
        self._registered = True

    def _main_cf(self) -> dict[str, str]:
        d = self.directory
        params: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(d / "data"),
            # No /dev/log here: log to a file (postlogd needs the prefix allowed).
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": f"/var, /dev/stdout, {d}",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": HOSTNAME,
            "mydomain": DOMAIN,
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": str(self.maildir),
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{NOBODY}",
            "virtual_gid_maps": f"static:{NOBODY}",
            "virtual_minimum_uid": "100",
            # The virtual agent refuses to run when its mailbox limit is below
            # message_size_limit, and mail then stays queued without a word.
            "message_size_limit": str(self.message_size_limit),
            "virtual_mailbox_limit": "0",
            "mailbox_size_limit": "0",
            "smtputf8_enable": "yes",
            # Reverse lookups of 127.x stall; refusals would be slowed down;
            # NOOP/RSET health checks would count as junk and get cut off.
            "smtpd_peername_lookup": "no",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_junk_command_limit": "100000",
            # Many parallel connections in pool and benchmark tests.
            "default_process_limit": "200",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            # Keep the stored message byte-identical to what was sent: no
            # header rewriting and no added Date/Message-ID for 127.0.0.1.
            "local_header_rewrite_clients": "",
            "always_add_missing_headers": "no",
            # Relaying is refused (no DNS lookups, nothing stuck in the queue);
            # mynetworks is deliberately not a reason to relay: it only
            # exempts 127/8 from anvil's connection limits.
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": (
                f"check_recipient_access texthash:{self.config_dir / 'recipient_access'}"
            ),
            "smtpd_banner": "$myhostname ESMTP Postfix",
            "disable_vrfy_command": "no",
            "delay_warning_time": "0",
            # Never wait long for anything that slipped into the queue.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "bounce_queue_lifetime": "0",
            "maximal_queue_lifetime": "1h",
            "smtp_dns_support_level": "disabled",
        }
        if self.discard:
            params["virtual_transport"] = "discard:"
            params["default_transport"] = "discard:"
        if self.tls:
            assert self._cert_file is not None and self._key_file is not None
            params.update(
                smtpd_tls_cert_file=str(self._cert_file),
                smtpd_tls_key_file=str(self._key_file),
                smtpd_tls_security_level="may",
                smtpd_tls_loglevel="1",
                smtpd_tls_received_header="no",
                smtpd_tls_session_cache_database="",
            )
        if self.sasl:
            params.update(
                smtpd_sasl_auth_enable="yes",
                smtpd_sasl_type="dovecot",
                # Absolute, so it does not depend on the queue directory.
                smtpd_sasl_path=str(self._dovecot_auth_socket),
                smtpd_sasl_security_options="noanonymous",
                smtpd_sasl_tls_security_options="noanonymous",
                smtpd_tls_auth_only="no" if self.allow_plaintext_auth else "yes",
                broken_sasl_auth_clients="no",
            )
        params.update(self._extra)
        return params

    def _write_config(self) -> None:
        self.port = free_port(self.host)
        lines = [f"{key} = {value}" for key, value in self._main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        listeners = [f"{self.host}:{self.port} inet n - n - - smtpd"]
        if self.implicit_tls:
            self.implicit_port = free_port(self.host)
            listeners.append(
                f"{self.host}:{self.implicit_port} inet n - n - - smtpd\n"
                "  -o smtpd_tls_wrappermode=yes\n"
                "  -o smtpd_tls_security_level=encrypt\n"
                "  -o syslog_name=postfix/submissions"
            )
        master_cf = "\n".join(listeners) + "\n" + _MASTER_CF_SERVICES
        (self.config_dir / "master.cf").write_text(master_cf)
        # Postfix waits until main.cf and texthash: files are two seconds old
        # (they might still be being edited), 0.3 s at a time: date them back.
        past = time.time() - 60
        for path in self.config_dir.iterdir():
            os.utime(path, (past, past))
        # Queue and data directories must be owned right before start.
        subprocess.run(["chown", "-R", "postfix", str(self.directory / "data")], check=True)
        self._run("set-permissions")

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [self._postfix, "-c", str(self.config_dir), *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=_clean_env(),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`postfix -c {self.config_dir} {' '.join(command)}` exited "
                f"{result.returncode} (is {self.config_dir} listed in "
                f"alternate_config_directories of /etc/postfix/main.cf?)\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"end of the mail log:\n{tail(self.log_path)}"
            )

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _wait_ready(self) -> bool:
        ports = [self.port] + ([self.implicit_port] if self.implicit_port else [])

        def listening() -> bool:
            pid = self._master_pid()
            if pid is None or not pid_alive(pid):
                return False
            return all(accepts(self.host, port) for port in ports)

        if not wait_until(listening, self._start_timeout, interval=0.05):
            return False
        # Our master is alive, so it bound the ports; check smtpd answers.
        return read_banner(self.host, self.port).startswith(f"220 {HOSTNAME}".encode())

    def _stop_processes(self) -> None:
        pid = self._master_pid()
        sid = process_session(pid) if pid is not None else None
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("stop")  # exits 1 if master is already gone; fine
        if pid is not None:
            wait_until(lambda: not pid_alive(pid), 10.0)
        # master puts itself and all its children in a session of their own
        if sid is not None:
            kill_session(sid)
        elif pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _clean_env() -> dict[str, str]:
    # MAIL_CONFIG from a caller's environment would override -c.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return env
