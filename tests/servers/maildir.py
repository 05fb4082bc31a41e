"""Reading what a real server delivered into a Maildir.

Postfix and Dovecot store messages with LF line ends and prepend their own
trace headers; ``strip_added_headers`` undoes both so a test can compare
the stored message byte for byte with what the client sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ._proc import wait_until

# What delivery prepends: at most one of each, in this order (Postfix's
# virtual agent adds X-Original-To too); Received may be folded.
_ADDED_HEADERS = re.compile(
    rb"\A(?:Return-Path:[^\n]*\n)?(?:X-Original-To:[^\n]*\n)?(?:Delivered-To:[^\n]*\n)?"
    rb"(?:Received:[^\n]*\n(?:[ \t][^\n]*\n)*)?"
)


def strip_added_headers(stored: bytes) -> bytes:
    """Drop the Return-Path, X-Original-To, Delivered-To and Received
    headers that delivery prepended, and turn the Maildir's LF line ends
    back into CRLF. The result equals the (dot-unstuffed, CRLF) message
    that was sent.
    """
    body = _ADDED_HEADERS.sub(b"", stored, count=1)
    return body.replace(b"\n", b"\r\n")


def new_messages(folder: Path) -> list[Path]:
    """The message files in a Maildir's new/ folder, oldest first."""
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def wait_for_messages(
    folder: Path, count: int, wait: float, log: Callable[[], str] = str
) -> list[bytes]:
    """Wait at most ``wait`` seconds until ``folder`` holds ``count`` or more
    messages; return all of them, oldest first.

    Raises AssertionError (showing what ``log()`` returns) when fewer
    arrive in time.
    """
    if not wait_until(lambda: len(new_messages(folder)) >= count, wait):
        raise AssertionError(
            f"expected {count} message(s) in {folder}, found "
            f"{len(new_messages(folder))} after {wait} s; end of the server log:\n{log()}"
        )
    return [p.read_bytes() for p in new_messages(folder)]


def clear(maildir: Path) -> None:
    """Delete every message in a Maildir (its new/, cur/ and tmp/)."""
    for name in ("new", "cur", "tmp"):
        folder = maildir / name
        if folder.is_dir():
            for item in folder.iterdir():
                item.unlink(missing_ok=True)
