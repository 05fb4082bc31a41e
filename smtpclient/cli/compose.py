"""Build the message ``smtpclient send`` sends: from options, or a ready .eml file.

Input problems are ``CommandError``s with the right exit code: a file that
cannot be opened is EX_NOINPUT (66), content that cannot be used is
EX_DATAERR (65), conflicting options are EX_USAGE (64).
"""

from __future__ import annotations

import argparse
import email.utils
import mimetypes
import sys
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from smtpclient.cli.common import EX_DATAERR, EX_NOINPUT, EX_USAGE, fail

__all__ = ["Composed", "compose", "parse_message", "read_input"]


@dataclass(frozen=True)
class Composed:
    """The message and its envelope."""

    message: EmailMessage
    sender: str
    recipients: tuple[str, ...]


def read_input(path: str) -> bytes:
    """The bytes of *path*, or of stdin for ``-``.

    Raises:
        CommandError: the file cannot be read (EX_NOINPUT).
    """
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EX_NOINPUT)


def parse_message(data: bytes, source: str) -> EmailMessage:
    """Parse an RFC 5322 message.

    Raises:
        CommandError: *data* has no header section (EX_DATAERR).
    """
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    if not message.keys():
        fail(f"{source} does not look like a message (no header lines)", EX_DATAERR)
    return message


def _address(text: str, option: str) -> str:
    """The bare address in ``Name <addr>`` or ``addr``."""
    _, addr = email.utils.parseaddr(text)
    if "@" not in addr:
        fail(f"{option} {text!r} is not an email address", EX_DATAERR)
    return addr


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that may also hold comma-separated lists."""
    out: list[str] = []
    for value in values or []:
        out += [part.strip() for part in value.split(",") if part.strip()]
    return out


def compose(args: argparse.Namespace) -> Composed:
    """The message described by send's options.

    Raises:
        CommandError: conflicting options, unreadable files, bad addresses.
    """
    to, cc, bcc = _split(args.to), _split(args.cc), _split(args.bcc)
    if args.eml is not None:
        return _from_eml(args, to, cc, bcc)
    if args.sender is None:
        fail("--from is required (or give a ready message with --eml FILE)")
    if not (to or cc or bcc):
        fail("give at least one recipient with --to, --cc or --bcc")
    sender = _address(args.sender, "--from")
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = args.sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = args.subject or ""
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    for header in args.header or []:
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or any(c in header for c in "\r\n"):
            fail(f"--header {header!r} must look like 'Name: value'")
        message[name.strip()] = value.strip()
    message.set_content(_body_text(args))
    for path in args.attach or []:
        _attach(message, path)
    recipients = tuple(_address(r, "recipient") for r in to + cc + bcc)
    return Composed(message, sender, recipients)


def _body_text(args: argparse.Namespace) -> str:
    if args.body is not None and args.body_file is not None:
        fail("give --body or --body-file, not both")
    raw: bytes
    if args.body is not None:
        raw = args.body.encode("utf-8", "surrogateescape")
    elif args.body_file is not None:
        raw = read_input(args.body_file)
    elif not sys.stdin.isatty():
        raw = sys.stdin.buffer.read()
    else:
        fail("no message body: give --body TEXT, --body-file FILE, or pipe it on stdin")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        fail("the body is not UTF-8 text (send binary content with --attach)", EX_DATAERR)
    return text if text.endswith("\n") else text + "\n"


def _attach(message: EmailMessage, path: str) -> None:
    data = read_input(path)
    kind, encoding = mimetypes.guess_type(path)
    if kind is None or encoding is not None:
        kind = "application/octet-stream"
    maintype, subtype = kind.split("/", 1)
    name = Path(path).name
    if maintype == "text":
        try:
            message.add_attachment(data.decode("utf-8"), subtype=subtype, filename=name)
            return
        except UnicodeDecodeError:
            maintype, subtype = "application", "octet-stream"
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


def _from_eml(args: argparse.Namespace, to: list[str], cc: list[str], bcc: list[str]) -> Composed:
    clashing = [
        option
        for option, value in (
            ("--subject", args.subject),
            ("--body", args.body),
            ("--body-file", args.body_file),
            ("--attach", args.attach),
            ("--header", args.header),
        )
        if value
    ]
    if clashing:
        fail(f"--eml sends the file as it is; it cannot be combined with {', '.join(clashing)}")
    message = parse_message(read_input(args.eml), args.eml)
    if args.sender is not None:
        sender = _address(args.sender, "--from")
    else:
        found = email.utils.getaddresses([str(v) for v in message.get_all("From", [])])
        sender = next((addr for _, addr in found if addr), "")
        if not sender:
            fail(f"{args.eml} has no From header: give --from", EX_USAGE)
    if to or cc or bcc:
        recipients = tuple(_address(r, "recipient") for r in to + cc + bcc)
    else:
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
        recipients = tuple(addr for _, addr in email.utils.getaddresses(fields) if addr)
        if not recipients:
            fail(f"{args.eml} has no To, Cc or Bcc: give --to", EX_USAGE)
    return Composed(message, sender, recipients)
