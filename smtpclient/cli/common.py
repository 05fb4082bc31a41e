"""What every subcommand shares: exit codes, server and TLS options, passwords, errors.

Exit codes follow sysexits(3), as sendmail and msmtp use them, so shell
scripts and cron can tell "try again later" (75) from "give up" (69).  The
one code outside that range, 79, means partial delivery: some recipients
were accepted and some were not (each one's outcome is printed).
"""

from __future__ import annotations

import argparse
import getpass
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from smtpclient.errors import (
    AuthenticationFailed,
    CertificateVerifyError,
    CommandError,
    ConnectError,
    ExtensionNotSupported,
    InsecureAuthError,
    MessageTooLarge,
    PermanentError,
    ProtocolError,
    SMTPClientError,
    TLSRequiredError,
    TransientError,
    UsageError,
)
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode, verifying_context

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_NOPERM",
    "EX_OK",
    "EX_PARTIAL",
    "EX_PROTOCOL",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "INTERRUPTED",
    "PASSWORD_ENV",
    "CommandError",
    "ConnectionSettings",
    "ServerAddress",
    "add_tls_options",
    "connection_settings",
    "error",
    "exit_code_for",
    "hint_for",
    "parse_server",
    "read_password",
    "report_error",
]

EX_OK = 0
EX_USAGE = 64  # the command line was wrong
EX_DATAERR = 65  # the input (message, address, CSV, template) was wrong
EX_NOINPUT = 66  # an input file could not be opened
EX_UNAVAILABLE = 69  # permanent failure: the server refused (5xx)
EX_SOFTWARE = 70  # a bug in smtpclient
EX_TEMPFAIL = 75  # transient failure: try again later (4xx, timeout, no connection)
EX_PROTOCOL = 76  # the server broke the SMTP protocol
EX_NOPERM = 77  # authentication failed, or refused over an insecure connection
EX_CONFIG = 78  # the configuration file is wrong
EX_PARTIAL = 79  # some recipients accepted, others not (outside sysexits' 64-78 on purpose)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after reporting what was and was not sent

PASSWORD_ENV = "SMTPCLIENT_PASSWORD"  # noqa: S105 - the variable's name
PROG = "smtpclient"


def error(message: str) -> None:
    """Print ``smtpclient: error: message`` on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def fail(message: str, code: int = EX_USAGE) -> NoReturn:
    """Raise a ``CommandError``."""
    raise CommandError(message, code)


# --- servers -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerAddress:
    """A server named on the command line."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server(text: str, default_port: int = 587) -> ServerAddress:
    """Read ``host``, ``host:port``, ``[v6addr]:port`` or a bare IPv6 address.

    Raises:
        CommandError: the text is empty or the port is not a number 1-65535.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            fail(f"unbalanced '[' in server {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            fail(f"expected ':port' after ']' in server {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        fail(f"no host name in server {text!r}")
    if not port_text:
        return ServerAddress(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        fail(f"the port in {text!r} must be a number from 1 to 65535")
    return ServerAddress(host, int(port_text))


# --- TLS and connection options ----------------------------------------------------


def add_tls_options(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    """--tls, --cafile, --tls-name, --ehlo, --timeout: shared by send and probe."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--tls",
        choices=[mode.value for mode in TLSMode],
        help=default_help,
    )
    group.add_argument(
        "--cafile",
        metavar="PEM",
        help="trust the CA certificates in this file instead of the certifi bundle "
        "(a private CA, a test server)",
    )
    group.add_argument(
        "--tls-name",
        metavar="NAME",
        help="the name the server's certificate must carry (default: the host as given; "
        "needed when connecting to an IP address)",
    )
    group.add_argument("--ehlo", metavar="NAME", help="the name to give in EHLO")
    group.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="limit for each stage of the conversation (default: 30 s a stage)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


@dataclass(frozen=True)
class ConnectionSettings:
    """Keyword arguments for ``Session.connect`` (and ``Mailer``) from the options."""

    tls: TLSMode | None
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    timeouts: Timeouts | None
    local_hostname: str | None


def connection_settings(args: argparse.Namespace) -> ConnectionSettings:
    """Turn --tls/--cafile/--tls-name/--ehlo/--timeout into connection settings.

    Raises:
        CommandError: the CA file cannot be read (EX_NOINPUT).
    """
    context = None
    if args.cafile:
        try:
            context = verifying_context(cafile=args.cafile)
        except (OSError, ssl.SSLError) as exc:
            fail(f"cannot load CA certificates from {args.cafile}: {exc}", EX_NOINPUT)
    timeouts = None
    if args.timeout is not None:
        timeouts = Timeouts.uniform(args.timeout)
    return ConnectionSettings(
        tls=TLSMode(args.tls) if args.tls else None,
        ssl_context=context,
        server_hostname=args.tls_name,
        timeouts=timeouts,
        local_hostname=args.ehlo,
    )


def read_password(user: str, where: str, env: dict[str, str] | None = None) -> str:
    """The password for *user*: $SMTPCLIENT_PASSWORD, else a prompt on the terminal.

    The prompt does not echo.  Without a terminal and without the variable
    it is an error rather than a hang.

    Raises:
        CommandError: no password available (EX_USAGE).
    """
    environ = os.environ if env is None else env
    password = environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    if not _has_terminal():
        fail(
            f"--user {user} needs a password: set {PASSWORD_ENV} "
            "(there is no terminal to prompt on)"
        )
    try:
        return getpass.getpass(f"Password for {user} at {where}: ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        fail("no password given")


def _has_terminal() -> bool:
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return sys.stdin.isatty()


# --- errors to exit codes ----------------------------------------------------------


def exit_code_for(exc: BaseException) -> int:
    """The sysexits code for an exception the library raised."""
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, (AuthenticationFailed, InsecureAuthError)):
        return EX_NOPERM
    if isinstance(exc, (ExtensionNotSupported, MessageTooLarge)):
        return EX_UNAVAILABLE
    if isinstance(exc, ProtocolError):
        return EX_PROTOCOL
    if isinstance(exc, TransientError):
        return EX_TEMPFAIL
    if isinstance(exc, PermanentError):
        return EX_UNAVAILABLE
    if isinstance(exc, SMTPClientError):
        return EX_TEMPFAIL
    if isinstance(exc, (UsageError, ValueError, TypeError, UnicodeError)):
        return EX_DATAERR
    if isinstance(exc, OSError):
        return EX_TEMPFAIL
    return EX_SOFTWARE


def combine(codes: Sequence[int]) -> int:
    """One exit code for several outcomes (one per recipient or message).

    All accepted: 0.  Some accepted, others not: ``EX_PARTIAL``.  None
    accepted: ``EX_TEMPFAIL`` when any failure may pass if tried again
    later, else the first failure's code.
    """
    failures = [code for code in codes if code != EX_OK]
    if not failures:
        return EX_OK
    if len(failures) < len(codes):
        return EX_PARTIAL
    if EX_TEMPFAIL in failures:
        return EX_TEMPFAIL
    return failures[0]


def hint_for(exc: BaseException, server: ServerAddress | None) -> str | None:
    """What the user can do about *exc*, in one sentence."""
    if isinstance(exc, ConnectError) and server is not None:
        return (
            f"is a mail server listening at {server}? To deliver straight to the "
            "recipients' mail servers instead, use --direct"
        )
    if isinstance(exc, InsecureAuthError):
        return (
            "use --tls starttls (port 587) or --tls implicit (port 465), --cafile for a "
            "private CA, or --allow-insecure-auth if you accept the risk"
        )
    if isinstance(exc, CertificateVerifyError):
        return "trust a private CA with --cafile PEM; name the certificate's host with --tls-name"
    if isinstance(exc, TLSRequiredError):
        return "the server offers no STARTTLS; --tls opportunistic sends without it"
    return None


def report_error(exc: BaseException, server: ServerAddress | None) -> None:
    """Print *exc* and a hint on stderr."""
    error(str(exc))
    hint = hint_for(exc, server)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
