"""SMTP replies (RFC 5321 §4.2) and an incremental parser for them.

The parser is fed whatever the socket returned, in pieces of any size, and
hands out complete ``Reply`` objects.  Feeding one byte at a time gives the
same replies as feeding everything at once.  Memory is bounded by
``ReplyLimits``: an over-long line, too many lines or too many bytes in one
reply is a ``ReplyLimitExceeded`` (a ``ProtocolError``), and the parser stays
broken afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtpclient.errors import ProtocolError, ReplyLimitExceeded

__all__ = ["Reply", "ReplyLimits", "ReplyParser"]

# RFC 3463 status code at the start of the text: class.subject.detail.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?= |$)")


_UNSET: object = object()

# "250 " -> 250: the first four octets of a one-line reply that take() may
# parse on its own (421 is left to next_reply, whose caller acts on it).
_ONE_LINE_CODES = {b"%d " % code: code for code in range(200, 600) if code != 421}


class Reply:
    """One complete reply (immutable): ``code`` (the three-digit reply
    code), ``lines`` (the text of each line after the code and separator),
    ``enhanced`` (the RFC 3463 status code such as "5.1.1", when the first
    line starts with one whose class matches the code) and ``raw`` (the
    undecoded text of each line, for smtplib compatibility).

    Replies read from the wire decode their text only when it is first
    asked for: most replies are only ever looked at for their code.
    """

    __slots__ = ("_enhanced", "_lines", "code", "raw")

    code: int
    raw: tuple[bytes, ...]
    _lines: tuple[str, ...] | None
    _enhanced: str | object | None

    def __init__(
        self,
        code: int,
        lines: tuple[str, ...] = ("",),
        enhanced: str | object | None = _UNSET,
        raw: tuple[bytes, ...] = (),
    ) -> None:
        setter = object.__setattr__
        setter(self, "code", code)
        text = tuple(lines)
        setter(self, "_lines", text)
        setter(self, "_enhanced", _find_enhanced(code, text) if enhanced is _UNSET else enhanced)
        setter(self, "raw", raw or tuple(line.encode("utf-8") for line in text))

    @classmethod
    def from_wire(cls, code: int, raw: tuple[bytes, ...]) -> Reply:
        """A reply as the parser read it: *raw* is the text of each line
        after the code; it is decoded only when first asked for."""
        # _lines and _enhanced stay unset until first asked for.
        reply = cls.__new__(cls)
        object.__setattr__(reply, "code", code)
        object.__setattr__(reply, "raw", raw)
        return reply

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Reply is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Reply is immutable")

    @property
    def lines(self) -> tuple[str, ...]:
        """The text of each line (decoded as UTF-8, undecodable bytes replaced)."""
        try:
            lines = self._lines
        except AttributeError:  # read from the wire, not decoded yet
            lines = None
        if lines is None:
            lines = tuple(part.decode("utf-8", "replace") for part in self.raw)
            object.__setattr__(self, "_lines", lines)
        return lines

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code, or None."""
        try:
            found = self._enhanced
        except AttributeError:  # read from the wire, not looked for yet
            found = _UNSET
        if found is _UNSET:
            found = _find_enhanced(self.code, self.lines)
            object.__setattr__(self, "_enhanced", found)
        assert found is None or isinstance(found, str)
        return found

    @classmethod
    def build(cls, code: int, text: str = "", enhanced: str | None = None) -> Reply:
        """A reply made locally (for example 556 for a null MX), not read from a server."""
        lines = tuple(text.split("\n")) if text else ("",)
        if enhanced:
            lines = (f"{enhanced} {lines[0]}".rstrip(), *lines[1:])
        return cls(code, lines, enhanced)

    def _key(self) -> tuple[int, tuple[str, ...], str | None]:
        return (self.code, self.lines, self.enhanced)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reply):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Reply(code={self.code}, lines={self.lines!r}, enhanced={self.enhanced!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Reply, (self.code, self.lines, self.enhanced, self.raw))

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
        lines = self.lines
        last = len(lines) - 1
        for index, line in enumerate(lines):
            sep = b" " if index == last else b"-"
            out += str(self.code).encode("ascii") + sep + line.encode("utf-8") + b"\r\n"
        return bytes(out)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


def _find_enhanced(code: int, lines: tuple[str, ...]) -> str | None:
    match = _ENHANCED.match(lines[0]) if lines else None
    if match is not None and int(match.group(1)) == code // 100:
        return match.group(0)
    return None


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
    " ", "-" or the end of line after the code; ``ReplyLimitExceeded`` (a
    ``ProtocolError``) for replies over the limits.
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
        buffer = self._buffer
        start = self._pos
        if start == len(buffer):
            return None
        if not self._code:
            # Fast path: a whole one-line reply ending in CRLF ("250 Ok"),
            # the usual case; anything else takes the careful way below.
            end = buffer.find(b"\n", start)
            if (
                end > start
                and buffer[end - 1] == 0x0D
                and end + 1 - start <= self.limits.max_line_length
            ):
                line = bytes(buffer[start : end - 1])
                code = _ONE_LINE_CODES.get(line[:4])
                if code is not None:
                    self._pos = end + 1
                    return Reply.from_wire(code, (line[4:],))
        try:
            return self._next_reply()
        except ProtocolError as exc:
            self._error = exc
            raise

    def take(self, limit: int) -> list[Reply]:
        """Up to *limit* replies already buffered, in order, in one pass: the
        fast path of ``next_reply`` (whole one-line replies ending in CRLF)
        for the replies to a pipelined group.  It stops early at anything
        else -- a multi-line, malformed or over-long line, a bare LF, a 421
        -- which ``next_reply`` handles.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        pos = self._pos
        complete = buffer.rfind(b"\n") + 1
        if self._code or complete <= pos or limit <= 0:
            return []
        out: list[Reply] = []
        longest = self.limits.max_line_length
        codes, new, setter = _ONE_LINE_CODES, Reply.__new__, object.__setattr__
        chunk = bytes(buffer[pos:complete])
        lines = chunk.split(b"\r\n")
        if len(chunk) <= longest and chunk.count(b"\n") == len(lines) - 1:
            # No line can be over-long and none holds a bare LF (the usual
            # case): those two checks once for the whole chunk.
            for line in lines[:limit]:
                code = codes.get(line[:4])
                if code is None:
                    break
                reply = new(Reply)
                setter(reply, "code", code)
                setter(reply, "raw", (line[4:],))
                out.append(reply)
                pos += len(line) + 2
            self._pos = pos
            return out
        for line in lines:
            code = codes.get(line[:4])
            if code is None or len(line) + 2 > longest or b"\n" in line:
                break
            reply = new(Reply)
            setter(reply, "code", code)
            setter(reply, "raw", (line[4:],))
            out.append(reply)
            pos += len(line) + 2
            if len(out) == limit:
                break
        self._pos = pos
        return out

    def _next_reply(self) -> Reply | None:
        limits = self.limits
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._pos)
            if end < 0:
                if len(buffer) - self._pos > limits.max_line_length:
                    raise _line_too_long(limits)
                if self._pos > 65536:  # keep the consumed prefix from growing
                    del buffer[: self._pos]
                    self._pos = 0
                return None
            if end + 1 - self._pos > limits.max_line_length:
                raise _line_too_long(limits)
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
            cap = self.limits.max_lines
            raise ReplyLimitExceeded(
                f"reply has more than {cap} lines", limit="max_lines", value=cap
            )
        if self._reply_bytes > self.limits.max_reply_bytes:
            cap = self.limits.max_reply_bytes
            raise ReplyLimitExceeded(
                f"reply larger than {cap} bytes", limit="max_reply_bytes", value=cap
            )
        return separator != b"-"

    def _finish(self) -> Reply:
        raw = tuple(self._raw)
        code = self._code
        self._code = 0
        self._raw = []
        self._reply_bytes = 0
        return Reply.from_wire(code, raw)


def _line_too_long(limits: ReplyLimits) -> ReplyLimitExceeded:
    cap = limits.max_line_length
    return ReplyLimitExceeded(
        f"reply line longer than {cap} bytes", limit="max_line_length", value=cap
    )


def _preview(line: bytes, limit: int = 60) -> str:
    text = line[:limit].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(line) > limit else ""))
