"""What the transcript (logger ``smtpclient.transcript``, DEBUG) shows.

The ``Channel`` logs every command group as written and every reply as
read; these functions describe what is not shown as is: message content is
counted (a BDAT command is shown as sent, its chunk counted), AUTH secrets
are replaced by the caller of ``Channel.write``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = [
    "Shown",
    "bdat_shown",
    "content_shown",
    "group_shown",
    "one_trip_shown",
    "printable",
    "transcript",
]

transcript = logging.getLogger("smtpclient.transcript")

# What the transcript shows instead of some octets: a text, or a function
# of the octets (called only while the transcript is on).
Shown = str | Callable[[bytes], str] | None


def printable(text: str) -> str:
    """Server text made safe for a log line: control characters escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def content_shown(data: bytes) -> str:
    """The end of a message's content under DATA framing."""
    return f"<{len(data)} octets of message content, end>"


def bdat_shown(data: bytes) -> str:
    """A BDAT command with its chunk: the command as sent, the chunk counted."""
    head, _, chunk = data.partition(b"\r\n")
    end = ", end" if head.endswith(b" LAST") else ""
    return f"{head.decode('ascii')}\r\n<{len(chunk)} octets of message content{end}>"


def group_shown(prefix: int, data: bytes) -> str:
    """A command group; its first *prefix* octets are the end of the
    previous message's content (DATA framing) or its BDAT LAST chunk."""
    text = data[prefix:].decode("utf-8", "replace").rstrip("\r\n")
    if not prefix:
        return text
    head = data[:prefix]
    before = bdat_shown(head) if head.startswith(b"BDAT ") else content_shown(head)
    return f"{before}\r\n{text}"


def one_trip_shown(envelope: int, data: bytes) -> str:
    """MAIL, the RCPTs and ``BDAT <n> LAST`` with the content in one write:
    the first *envelope* octets are the commands, shown as sent; then the
    BDAT command as sent and its chunk counted."""
    text = data[:envelope].decode("utf-8", "replace").rstrip("\r\n")
    return f"{text}\r\n{bdat_shown(data[envelope:])}"
