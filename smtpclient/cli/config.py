"""The settings file of ``smtpclient sendmail``, and the environment variables.

Programs that call sendmail (cron, git send-email, mailx, PHP's mail())
cannot pass server options, so they come from a file, as with msmtp:
``$SMTPCLIENT_CONFIG``, else ``~/.config/smtpclient/config.ini`` (under
``$XDG_CONFIG_HOME`` when set).  It is INI: one section per account,
``[default]`` used unless ``-a NAME`` (or ``$SMTPCLIENT_ACCOUNT``) picks
another; an account may name another to inherit from with ``inherit``::

    [default]
    host = smtp.example.com
    port = 587
    tls = starttls            ; none | opportunistic | starttls | implicit
    username = me@example.com
    password_command = pass show mail/example.com
    from = me@example.com

Keys: host, port, tls, username, password, password_command, from, cafile,
tls_name, ehlo, timeout, direct (yes: deliver to MX hosts, no host needed).
``password`` in the file is refused unless only its owner can read it.
Environment variables override the file: SMTPCLIENT_HOST, _PORT, _TLS,
_USER, _PASSWORD, _FROM, _CAFILE, _TLS_NAME, _EHLO, _TIMEOUT, _DIRECT.
"""

from __future__ import annotations

import configparser
import os
import shlex
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from smtpclient.cli.common import EX_CONFIG, CommandError, fail
from smtpclient.tls import TLSMode

__all__ = ["KEYS", "Account", "config_path", "load_account"]

KEYS = (
    "host",
    "port",
    "tls",
    "username",
    "password",
    "password_command",
    "from",
    "cafile",
    "tls_name",
    "ehlo",
    "timeout",
    "direct",
    "inherit",
)
_ENV = {
    "host": "SMTPCLIENT_HOST",
    "port": "SMTPCLIENT_PORT",
    "tls": "SMTPCLIENT_TLS",
    "username": "SMTPCLIENT_USER",
    "password": "SMTPCLIENT_PASSWORD",
    "from": "SMTPCLIENT_FROM",
    "cafile": "SMTPCLIENT_CAFILE",
    "tls_name": "SMTPCLIENT_TLS_NAME",
    "ehlo": "SMTPCLIENT_EHLO",
    "timeout": "SMTPCLIENT_TIMEOUT",
    "direct": "SMTPCLIENT_DIRECT",
}
_PASSWORD_COMMAND_SECONDS = 30


@dataclass(frozen=True)
class Account:
    """The settings in force after file, environment and command line."""

    name: str
    host: str | None = None
    port: int = 587
    tls: TLSMode | None = None
    username: str | None = None
    password: str | None = None
    sender: str | None = None
    cafile: str | None = None
    tls_name: str | None = None
    ehlo: str | None = None
    timeout: float | None = None
    direct: bool = False
    source: str = "defaults"


def config_path(env: Mapping[str, str]) -> Path:
    """Where the settings file is looked for."""
    if env.get("SMTPCLIENT_CONFIG"):
        return Path(env["SMTPCLIENT_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "smtpclient" / "config.ini"


def _read_file(path: Path, account: str, explicit: bool) -> dict[str, str]:
    if not path.exists():
        if explicit:
            fail(f"the config file {path} does not exist", EX_CONFIG)
        return {}
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", EX_CONFIG)
    chain: list[str] = []
    name: str | None = account
    while name is not None:
        if name in chain:
            fail(f"{path}: accounts inherit from each other in a loop: {chain}", EX_CONFIG)
        if not parser.has_section(name):
            if name == "default" and not chain:
                return {}
            fail(f"{path} has no [{name}] account", EX_CONFIG)
        chain.append(name)
        name = parser.get(name, "inherit", fallback=None)
    values: dict[str, str] = {}
    for section in reversed(chain):
        for key, value in parser.items(section):
            if key not in KEYS:
                fail(
                    f"{path} [{section}]: unknown key {key!r} (known: {', '.join(KEYS)})", EX_CONFIG
                )
            values[key] = value
    if "password" in values:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            fail(
                f"{path} holds a password but others can read it: chmod 600 {path}, "
                "or use password_command",
                EX_CONFIG,
            )
    return values


def _run_password_command(command: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - the user's own configured command, no shell
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=_PASSWORD_COMMAND_SECONDS,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        fail(f"password_command failed: {exc}", EX_CONFIG)
    if done.returncode != 0:
        fail(f"password_command exited with status {done.returncode}", EX_CONFIG)
    return done.stdout.rstrip("\r\n").split("\n", 1)[0]


def _boolean(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise CommandError(f"{key} must be yes or no, not {value!r}", EX_CONFIG)


def load_account(env: Mapping[str, str], account: str | None = None) -> Account:
    """The settings for *account* from the file, with the environment on top.

    Raises:
        CommandError: the file is unreadable or wrong, a value is invalid,
            or the password command failed (EX_CONFIG).
    """
    name = account or env.get("SMTPCLIENT_ACCOUNT") or "default"
    path = config_path(env)
    explicit = bool(env.get("SMTPCLIENT_CONFIG")) or name != "default"
    values = _read_file(path, name, explicit)
    source = str(path) if values else "defaults"
    for key, variable in _ENV.items():
        if env.get(variable):
            values[key] = env[variable]
            source = f"{source} + environment" if "environment" not in source else source
    password = values.get("password")
    if password is None and values.get("password_command"):
        password = _run_password_command(values["password_command"])
    try:
        port = int(values.get("port", "0") or "0")
        timeout = float(values["timeout"]) if values.get("timeout") else None
        tls = TLSMode(values["tls"].strip().lower()) if values.get("tls") else None
    except ValueError as exc:
        fail(f"invalid setting in {source}: {exc}", EX_CONFIG)
    if port and not 0 < port < 65536:
        fail(f"port must be between 1 and 65535, not {port}", EX_CONFIG)
    if not port:
        port = 465 if tls is TLSMode.IMPLICIT else 587
    return Account(
        name=name,
        host=values.get("host") or None,
        port=port,
        tls=tls,
        username=values.get("username") or None,
        password=password,
        sender=values.get("from") or None,
        cafile=values.get("cafile") or None,
        tls_name=values.get("tls_name") or None,
        ehlo=values.get("ehlo") or None,
        timeout=timeout,
        direct=_boolean("direct", values.get("direct", "no")),
        source=source,
    )


def environ() -> dict[str, str]:
    """A copy of the process environment (the seam tests and callers can replace)."""
    return dict(os.environ)
