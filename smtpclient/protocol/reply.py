"""SMTP replies (RFC 5321 §4.2) and an incremental parser for them.

The parser is fed whatever the socket returned, in pieces of any size, and
hands out complete ``Reply`` objects.  Feeding one byte at a time gives the
same replies as feeding everything at once.  Memory is bounded by
``ReplyLimits``: an over-long line, too many lines or too many bytes in one
reply is a ``ProtocolError``, and the parser stays broken afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smtpclient.errors import ProtocolError

__all__ = ["Reply", "ReplyLimits", "ReplyParser"]

# RFC 3463 status code at the start of the text: class.subject.detail.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?= |$)")


@dataclass(frozen=True)
class Reply:
    """One complete reply.

    Attributes:
        code: the three-digit reply code.
        lines: the text of each line, after the code and separator.
        enhanced: the RFC 3463 enhanced status code ("5.1.1") if the first
            line starts with one whose class matches the reply code.
        raw: the undecoded text of each line (for smtplib compatibility).
    """

    code: int
    lines: tuple[str, ...] = ("",)
    enhanced: str | None = None
    raw: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def build(cls, code: int, text: str = "", enhanced: str | None = None) -> Reply:
        """A reply made locally (for example 556 for a null MX), not read from a server."""
        lines = tuple(text.split("\n")) if text else ("",)
        if enhanced:
            lines = (f"{enhanced} {lines[0]}".rstrip(), *lines[1:])
        return cls(code, lines, enhanced, tuple(line.encode("utf-8") for line in lines))

    @property
    def text(self) -> str:
        """All lines joined with newlines."""
        return "\n".join(self.lines)

    @property
    def message(self) -> str:
        """The text without the enhanced status codes that prefix its lines."""
        if self.enhanced is None:
            return self.text
        prefix = self.enhanced + " "
        return "\n".join(
            line[len(prefix) :] if line.startswith(prefix) else line for line in self.lines
        )

    @property
    def raw_text(self) -> bytes:
        """The lines as bytes joined with b"\\n", as smtplib reports them."""
        if not self.raw:
            return self.text.encode("utf-8")
        return b"\n".join(line.strip(b" \t") for line in self.raw)

    @property
    def is_positive(self) -> bool:
        """2xx: the command succeeded."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: failed for now, try later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: failed for good."""
        return 500 <= self.code < 600

    def serialise(self) -> bytes:
        """The reply as a server would send it (used by tests and the demo server)."""
        out = bytearray()
        last = len(self.lines) - 1
        for index, line in enumerate(self.lines):
            sep = b" " if index == last else b"-"
            out += str(self.code).encode("ascii") + sep + line.encode("utf-8") + b"\r\n"
        return bytes(out)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


@dataclass(frozen=True)
class ReplyLimits:
    """Caps that keep a hostile server from making us buffer without end.

    RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets; real servers stay
    well inside the defaults, which leave room for long EHLO and error texts.
    """

    max_line_length: int = 4096  # bytes, including CRLF
    max_lines: int = 256  # lines in one multi-line reply
    max_reply_bytes: int = 64 * 1024  # bytes in one reply, all lines

    def __post_init__(self) -> None:
        if self.max_line_length < 512 or self.max_lines < 1 or self.max_reply_bytes < 512:
            raise ValueError("reply limits below RFC 5321's minimums (512-byte lines)")


class ReplyParser:
    """Turn a byte stream into ``Reply`` objects.

    ``feed()`` appends bytes; ``next_reply()`` returns the next complete
    reply or ``None`` when more bytes are needed.  Lines may end in CRLF or a
    bare LF (servers that send bare LF exist, and accepting it is harmless on
    the reading side).

    Raises ``ProtocolError`` for malformed lines, codes outside 200-599, a
    continuation line whose code differs from the first line's, anything but
    " ", "-" or the end of line after the code, and replies over the limits.
    """

    def __init__(self, limits: ReplyLimits | None = None) -> None:
        self.limits = limits or ReplyLimits()
        self._buffer = bytearray()
        self._pos = 0  # start of the unparsed part of _buffer
        self._code = 0  # code of the reply being assembled, 0 if none
        self._raw: list[bytes] = []
        self._reply_bytes = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned reply's complete lines."""
        return len(self._buffer) - self._pos

    @property
    def in_reply(self) -> bool:
        """True when part of a reply has been parsed but not its last line."""
        return self._code != 0 or self.buffered > 0

    def feed(self, data: bytes) -> None:
        """Append bytes read from the server."""
        if self._error is not None:
            raise self._error
        if self._pos and self._pos == len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        self._buffer += data

    def discard(self) -> int:
        """Forget everything buffered (STARTTLS, RFC 3207 §4.2); return how many bytes."""
        dropped = self.buffered
        self._buffer.clear()
        self._pos = 0
        self._code = 0
        self._raw = []
        self._reply_bytes = 0
        return dropped

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or None if it has not all arrived."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_reply()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next_reply(self) -> Reply | None:
        limits = self.limits
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._pos)
            if end < 0:
                if len(buffer) - self._pos > limits.max_line_length:
                    raise ProtocolError(f"reply line longer than {limits.max_line_length} bytes")
                if self._pos > 65536:  # keep the consumed prefix from growing
                    del buffer[: self._pos]
                    self._pos = 0
                return None
            if end + 1 - self._pos > limits.max_line_length:
                raise ProtocolError(f"reply line longer than {limits.max_line_length} bytes")
            line = bytes(buffer[self._pos : end])
            self._reply_bytes += end + 1 - self._pos
            self._pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            final = self._take_line(line)
            if final:
                return self._finish()

    def _take_line(self, line: bytes) -> bool:
        """Record one line; return True when it was the reply's last line."""
        head = line[:3]
        if len(head) < 3 or not head.isdigit() or not b"200" <= head <= b"599":
            raise ProtocolError(f"malformed reply line: {_preview(line)}")
        code = int(head)
        if self._code and code != self._code:
            raise ProtocolError(f"reply code changed from {self._code} to {code} inside one reply")
        separator = line[3:4]
        if separator not in (b"", b" ", b"-"):
            raise ProtocolError(f"unexpected bytes after reply code: {_preview(line)}")
        self._code = code
        self._raw.append(line[4:])
        if len(self._raw) > self.limits.max_lines:
            raise ProtocolError(f"reply has more than {self.limits.max_lines} lines")
        if self._reply_bytes > self.limits.max_reply_bytes:
            raise ProtocolError(f"reply larger than {self.limits.max_reply_bytes} bytes")
        return separator != b"-"

    def _finish(self) -> Reply:
        raw = tuple(self._raw)
        code = self._code
        self._code = 0
        self._raw = []
        self._reply_bytes = 0
        lines = tuple(part.decode("utf-8", "replace") for part in raw)
        enhanced = None
        match = _ENHANCED.match(lines[0])
        if match is not None and int(match.group(1)) == code // 100:
            enhanced = match.group(0)
        return Reply(code, lines, enhanced, raw)


def _preview(line: bytes, limit: int = 60) -> str:
    text = line[:limit].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(line) > limit else ""))
