"""``smtpclient sendmail``: a sendmail-compatible command for cron, scripts and programs.

    echo "Subject: done" | smtpclient sendmail -t ops@example.com
    git config sendemail.sendmailcmd "smtpclient sendmail"
    ln -s "$(command -v smtpclient)" /usr/local/bin/sendmail   # then plain `sendmail -t`

The message comes on stdin; recipients are the arguments, plus with ``-t``
those in its To, Cc and Bcc headers (Postfix's rule: both, not either).
Bcc headers are removed; Date, Message-ID and From are added when missing.
Without ``-i`` (``-oi``) a line holding a single "." ends the message, as
in sendmail.  Where to send comes from the settings file or environment
(``smtpclient.cli.config``).  Success is silent (cron mails any output);
failures print one line per recipient on stderr; ``-v`` shows everything.
"""

from __future__ import annotations

import argparse
import email.utils
import getpass
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from typing import IO, BinaryIO

from smtpclient.cli import config
from smtpclient.cli.common import (
    EX_CONFIG,
    EX_USAGE,
    ServerAddress,
    fail,
    read_password,
)
from smtpclient.cli.outcomes import Outcome, exit_code, from_error, from_result, print_outcomes
from smtpclient.cli.transcript import transcript
from smtpclient.envelope import DSN
from smtpclient.errors import SMTPClientError
from smtpclient.session import Session
from smtpclient.timeouts import Timeouts
from smtpclient.tls import verifying_context

__all__ = ["read_message", "register", "run"]

SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger messages go to a temporary file

EPILOG = (config.__doc__ or "").split("\n\n", 1)[1]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sendmail`` to the command line."""
    parser = subparsers.add_parser(
        "sendmail",
        help="sendmail-compatible: the message on stdin, settings from a config file",
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog="settings file:\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("-t", action="store_true", help="also send to To, Cc and Bcc")
    parser.add_argument("-f", "-r", dest="sender", metavar="ADDRESS", help="envelope sender")
    parser.add_argument("-F", dest="full_name", metavar="NAME", help="name for an added From")
    parser.add_argument("-i", action="store_true", help="a lone '.' line does not end input")
    parser.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPTION",
        help="sendmail -o options: -oi is -i, others are accepted and ignored",
    )
    parser.add_argument("-b", dest="mode", default="m", metavar="MODE", help="only -bm (send)")
    parser.add_argument("-N", dest="notify", metavar="WHEN", help="DSN NOTIFY (e.g. failure,delay)")
    parser.add_argument("-R", dest="ret", metavar="full|hdrs", help="DSN RET")
    parser.add_argument("-V", dest="envid", metavar="ID", help="DSN envelope id")
    parser.add_argument("-v", dest="verbose", action="store_true", help="show the conversation")
    parser.add_argument("-a", "--account", metavar="NAME", help="the settings file's [NAME]")
    parser.add_argument("-C", dest="config_file", metavar="FILE", help="the settings file")
    for flag in ("-m", "-n", "-U", "-G"):  # accepted for compatibility, no meaning here
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-B", "-L", "-q", dest="ignored", metavar="X", help=argparse.SUPPRESS)
    parser.add_argument("recipients", nargs="*", metavar="RECIPIENT")
    parser.set_defaults(handler=run)


def _is_header_start(line: bytes) -> bool:
    name, sep, _ = line.partition(b":")
    return bool(sep) and bool(name) and all(33 <= c <= 126 for c in name)


def read_message(stream: BinaryIO, *, dot_ends: bool) -> tuple[list[bytes], IO[bytes]]:
    """Read stdin: the header lines, and the rest (from the blank line on) spooled.

    A lone "." line ends the input when *dot_ends*.
    """
    headers: list[bytes] = []
    body: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    in_headers = True
    for line in stream:
        if dot_ends and line.rstrip(b"\r\n") == b".":
            break
        if in_headers:
            if line[:1] in (b" ", b"\t") and headers:
                headers.append(line)
                continue
            if _is_header_start(line):
                headers.append(line)
                continue
            in_headers = False
            if line.strip() and headers:
                body.write(b"\n")  # a body line right after the headers: keep them apart
        body.write(line)
    body.seek(0)
    return headers, body


def _drop(headers: list[bytes], names: Iterable[bytes]) -> list[bytes]:
    """The header lines without the fields *names* (their continuation lines too)."""
    wanted = {name.lower() for name in names}
    kept: list[bytes] = []
    dropping = False
    for line in headers:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.partition(b":")[0].strip().lower() in wanted
        if not dropping:
            kept.append(line)
    return kept


def _addresses(parsed: EmailMessage, names: Iterable[str]) -> list[str]:
    values = [str(v) for name in names for v in parsed.get_all(name, [])]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def _default_sender() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def run(args: argparse.Namespace) -> int:
    """Send the message on stdin; silent on success."""
    if args.mode != "m":
        fail(f"-b{args.mode} is not supported: only -bm (read a message and send it)")
    env = config.environ()
    if args.config_file:
        env["SMTPCLIENT_CONFIG"] = args.config_file
    account = config.load_account(env, args.account)
    if not account.host and not account.direct:
        fail(
            f"no server configured: set host in {config.config_path(env)} or $SMTPCLIENT_HOST "
            "(or direct = yes to deliver to MX hosts); see `smtpclient sendmail --help`",
            EX_CONFIG,
        )
    dot_ends = not (args.i or "i" in args.options)
    headers, body = read_message(sys.stdin.buffer, dot_ends=dot_ends)
    with body:
        parsed = BytesHeaderParser(policy=policy.default).parsebytes(b"".join(headers) + b"\n")
        assert isinstance(parsed, EmailMessage)
        recipients = [r.strip() for item in args.recipients for r in item.split(",") if r.strip()]
        if args.t:
            recipients += _addresses(parsed, ("To", "Cc", "Bcc"))
        recipients = list(dict.fromkeys(recipients))
        if not recipients:
            fail("no recipients: give them as arguments, or use -t to read the headers", EX_USAGE)
        found = _addresses(parsed, ("From",))
        sender = args.sender or account.sender or (found[0] if found else _default_sender())
        added = _missing_headers(parsed, sender, args.full_name)
        if headers and headers[0].endswith(b"\r\n"):
            added = added.replace(b"\n", b"\r\n")  # one kind of line end in the header
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as message:
            message.write(added + b"".join(_drop(headers, (b"bcc", b"resent-bcc"))))
            if not headers:
                message.write(b"\n")
            shutil.copyfileobj(body, message)
            message.seek(0)
            dsn = _dsn(args)
            with transcript(args.verbose, sys.stderr, show_host=account.direct):
                outcomes = _send(account, sender, recipients, message, dsn)
    failed = [o for o in outcomes if not o.ok]
    if args.verbose:
        print_outcomes(outcomes, sys.stderr)
    elif failed:
        print_outcomes(failed, sys.stderr)
    return exit_code(outcomes)


def _missing_headers(parsed: EmailMessage, sender: str, full_name: str | None) -> bytes:
    out = []
    if "From" not in parsed:
        out.append(f"From: {email.utils.formataddr((full_name or '', sender))}")
    if "Date" not in parsed:
        out.append(f"Date: {email.utils.formatdate(localtime=True)}")
    if "Message-ID" not in parsed:
        out.append(f"Message-ID: {email.utils.make_msgid(domain=sender.rpartition('@')[2])}")
    return "".join(line + "\n" for line in out).encode("utf-8")


def _dsn(args: argparse.Namespace) -> DSN | None:
    if not (args.notify or args.ret or args.envid):
        return None
    notify = tuple(p.strip() for p in args.notify.split(",")) if args.notify else None
    try:
        return DSN(ret=args.ret, envid=args.envid, notify=notify, required=False)
    except ValueError as exc:
        fail(str(exc))


def _send(
    account: config.Account,
    sender: str,
    recipients: list[str],
    message: IO[bytes],
    dsn: DSN | None,
) -> list[Outcome]:
    if account.direct:
        # Direct delivery needs the MX resolver (dnspython): loaded only here,
        # so that a relaying sendmail (the usual cron case) starts fast.
        from smtpclient.cli.compose import Composed  # noqa: PLC0415
        from smtpclient.cli.direct import DirectOptions, deliver_direct  # noqa: PLC0415

        parsed = BytesParser(policy=policy.default).parsebytes(message.read())
        assert isinstance(parsed, EmailMessage)
        options = DirectOptions(
            tls=account.tls,
            ssl_context=verifying_context(cafile=account.cafile) if account.cafile else None,
            timeouts=Timeouts.uniform(account.timeout) if account.timeout else None,
            local_hostname=account.ehlo,
        )
        return deliver_direct(Composed(parsed, sender, tuple(recipients)), dsn, options)
    assert account.host is not None
    server = ServerAddress(account.host, account.port)
    password = account.password
    if account.username and password is None:
        password = read_password(account.username, str(server), os.environ.copy())
    context = verifying_context(cafile=account.cafile) if account.cafile else None
    try:
        with Session.connect(
            account.host,
            account.port,
            tls=account.tls,
            ssl_context=context,
            server_hostname=account.tls_name,
            timeouts=Timeouts.uniform(account.timeout) if account.timeout else None,
            local_hostname=account.ehlo,
        ) as session:
            if account.username and password is not None:
                session.login(account.username, password)
            result = session.sendmail(sender, recipients, message, dsn=dsn)
    except (SMTPClientError, ValueError, TypeError) as exc:
        print(f"smtpclient sendmail: {exc}", file=sys.stderr)
        return from_error(exc, recipients)
    return from_result(result)
