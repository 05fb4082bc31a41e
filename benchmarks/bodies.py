"""The messages the scenarios send, written to files once per run."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MiB", "large_message", "small_message"]

MiB = 1024 * 1024

_HEADERS = (
    b"From: Bench Sender <sender@example.test>\r\n"
    b"To: Bench Recipient <rcpt@example.test>\r\n"
    b"Subject: benchmark message\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <bench@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
)


def small_message(path: Path, size: int = 2048) -> Path:
    """A *size*-octet plain-text message with CRLF line ends."""
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = (line * (size // len(line) + 1))[: size - len(_HEADERS) - 2] + b"\r\n"
    path.write_bytes(_HEADERS + body)
    return path


def large_message(path: Path, size: int) -> Path:
    """About *size* octets of text whose lines end in a bare LF and every
    seventh of which starts with a dot: the worst ordinary case for a
    client, which must turn each LF into CRLF and stuff each dot."""
    lines = []
    for i in range(1000):
        text = b"x" * (20 + (i * 37) % 60)
        lines.append((b"." if i % 7 == 0 else b"") + text + b"\n")
    block = b"".join(lines)
    with path.open("wb") as out:
        out.write(_HEADERS.replace(b"\r\n", b"\n"))
        written = len(_HEADERS)
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
        rest = size - written
        out.write((b"y" * 71 + b"\n") * (rest // 72))
        if rest % 72:
            out.write(b"z" * (rest % 72 - 1) + b"\n")
    return path
