"""Message content on the wire: line-ending normalisation, dot-stuffing, scanning.

``DataEncoder`` is a streaming, stateful encoder: it is fed the message in
chunks of any size and produces output that is identical whether the input
came whole or a byte at a time.  RFC 5321 §2.3.8 forbids a client to send a
bare CR or LF, so both become CRLF (the 2023 "SMTP smuggling" attacks use
bare line ends around "."); for DATA, a line starting with "." gets a second
one (§4.5.2) and ``finish()`` adds the single end marker CRLF "." CRLF.  BDAT
(RFC 3030) content is normalised but not dot-stuffed; BINARYMIME content is
passed through untouched.

``BodyScanner`` measures what MAIL FROM must declare: the size (RFC 1870),
whether there are 8-bit bytes (RFC 6152) and the longest line (RFC 5321
§4.5.3.1.6 allows 998 octets plus CRLF); it also notes NUL octets, which
RFC 5322 §2.3 and RFC 2045 allow only in BINARYMIME content.  A receiver
that drops NULs would see ``CRLF NUL "." CRLF`` as the end of the data
(SMTP smuggling), so ``DataEncoder`` refuses them for DATA and BDAT
framing: ``feed()`` raises ``NulOctetError`` before it returns a byte of
the chunk that holds one.
"""

from __future__ import annotations

import enum
import re

from smtpclient.errors import MessageTooLarge, NulOctetError

__all__ = [
    "MAX_LINE_LENGTH",
    "BodyScanner",
    "DataEncoder",
    "Framing",
    "canonical_and_longest",
    "canonicalise",
    "content_size",
    "encode_complete",
    "longest_line",
    "nul_error",
    "size_parameter",
    "terminated_size",
]

MAX_LINE_LENGTH = 998  # octets, not counting CRLF (RFC 5321 §4.5.3.1.6)

# Dot-stuffing with the regex engine: its literal-prefix search is about
# twice as fast as bytes.replace() for these patterns (measured).
_DOT_AFTER_CRLF = re.compile(rb"\r\n\.")
_DOT_AFTER_LF = re.compile(rb"\n\.")


class Framing(enum.Enum):
    """How content is framed on the wire."""

    DATA = "data"  # dot-stuffed, CRLF.CRLF terminated
    BDAT = "bdat"  # CRLF-normalised, length-framed
    BINARY = "binary"  # BDAT with BODY=BINARYMIME: bytes as given


# --- the message-size rule (RFC 1870) ---------------------------------------------------
# One rule for every path that declares SIZE= or refuses a message as too
# large before MAIL: the plan, the fast path, Body.info() and BodyScanner.


def terminated_size(octets: int, *, open_line: bool) -> int:
    """The size SIZE= declares for content of *octets* octets with CRLF line
    ends: the octets as sent before dot-stuffing, so plus the CRLF the
    encoder adds when the last line is *open_line* (unterminated).  The
    end-of-data marker and dot-stuffing do not count (RFC 1870 §3)."""
    return octets + 2 if open_line else octets


def content_size(canonical: bytes) -> int:
    """``terminated_size`` of content already in canonical form (CRLF line ends)."""
    return terminated_size(
        len(canonical), open_line=bool(canonical) and not canonical.endswith(b"\r\n")
    )


def size_parameter(size: int, limit: int | None, offered: bool) -> str | None:
    """A message of *size* octets against the server's SIZE *limit*: refused
    when over it; when SIZE is *offered*, the value MAIL FROM declares
    (else None).

    Raises:
        MessageTooLarge: *size* is over *limit*.
    """
    if limit is not None and size > limit:
        raise MessageTooLarge(f"the message is {size} octets; the server accepts at most {limit}")
    return str(size) if offered else None


def nul_error() -> NulOctetError:
    """The error for content with a NUL octet outside BINARYMIME."""
    return NulOctetError(
        "the message content contains a NUL octet, which RFC 5322 allows only with "
        "BINARYMIME (binary=True); encode the part as base64"
    )


class DataEncoder:
    """Streaming encoder for message content; see the module docstring.

    Raises (from ``feed``):
        NulOctetError: a NUL octet, unless the framing is BINARY.
    """

    __slots__ = ("_at_line_start", "_finished", "_pending_cr", "framing")

    def __init__(self, framing: Framing = Framing.DATA) -> None:
        self.framing = framing
        self._pending_cr = False  # the last chunk ended in CR: CRLF or bare CR?
        self._at_line_start = True
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        """Encode the next piece of content; may return b"" while waiting for more."""
        if self._finished:
            raise RuntimeError("DataEncoder.feed() after finish()")
        if self.framing is Framing.BINARY:
            return bytes(chunk)
        if b"\x00" in chunk:
            raise nul_error()
        if type(chunk) is bytes and not self._pending_cr and b"\r" not in chunk:
            # Bare LF line ends only (a file on disk): the fast path.
            if not chunk:
                return b""
            if self.framing is Framing.DATA:
                chunk = _DOT_AFTER_LF.sub(b"\n..", chunk)
                if self._at_line_start and chunk[:1] == b".":
                    chunk = b"." + chunk
            self._at_line_start = chunk.endswith(b"\n")
            return chunk.replace(b"\n", b"\r\n")
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # Hold it back: it is a line end either way, but which bytes
            # follow decides whether the next chunk starts with its LF.
            chunk = chunk[:-1]
            self._pending_cr = True
        if not chunk:
            return b""
        crlf = chunk.count(b"\r\n")
        if crlf == chunk.count(b"\n") == chunk.count(b"\r"):
            # Already canonical (the common case): only dots need care.
            out = chunk
            if self.framing is Framing.DATA:
                out = _DOT_AFTER_CRLF.sub(b"\r\n..", out)
                if self._at_line_start and out[:1] == b".":
                    out = b"." + out
            self._at_line_start = out.endswith(b"\n")
        else:
            text = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if self.framing is Framing.DATA:
                text = _DOT_AFTER_LF.sub(b"\n..", text)
                if self._at_line_start and text[:1] == b".":
                    text = b"." + text
            self._at_line_start = text.endswith(b"\n")
            out = text.replace(b"\n", b"\r\n")
        if self._pending_cr:
            # The held CR is a line end: the next byte starts a line.
            self._at_line_start = True
        return bytes(out)

    def encode_complete(self, canonical: bytes) -> bytes:
        """Encode a whole message already in canonical CRLF form, in one step.

        The fast path for small in-memory messages: the same output as
        ``feed(canonical) + finish()`` with less work.
        """
        if self._finished or self._pending_cr or not self._at_line_start:
            raise RuntimeError("encode_complete() must be the only call on a DataEncoder")
        self._finished = True
        return encode_complete(canonical, self.framing)

    def finish(self) -> bytes:
        """Return the tail: a pending line end, a final CRLF if missing, and the
        end marker for DATA."""
        if self._finished:
            raise RuntimeError("DataEncoder.finish() called twice")
        self._finished = True
        if self.framing is Framing.BINARY:
            return b""
        tail = b""
        if self._pending_cr:
            tail = b"\r\n"
            self._pending_cr = False
        elif not self._at_line_start:
            tail = b"\r\n"
        if self.framing is Framing.DATA:
            tail += b".\r\n"
        return tail


def encode_complete(canonical: bytes, framing: Framing) -> bytes:
    """A whole message already in canonical CRLF form, encoded for *framing*
    in one step (``DataEncoder.encode_complete`` without the encoder)."""
    if framing is Framing.BINARY:
        return canonical
    tail = b"" if not canonical or canonical.endswith(b"\r\n") else b"\r\n"
    if framing is Framing.BDAT:
        return canonical + tail if tail else canonical
    out = _DOT_AFTER_CRLF.sub(b"\r\n..", canonical)
    if out[:1] == b".":
        out = b"." + out
    return out + tail + b".\r\n"


def canonicalise(data: bytes) -> bytes:
    """*data* with every line end as CRLF (bare CR and bare LF converted).

    Returns *data* itself when it is already canonical (no copy).
    """
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n") if b"\n" in data else data
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") == data.count(b"\r"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def canonical_and_longest(data: bytes) -> tuple[bytes, int]:
    """``canonicalise(data)`` and the longest line of the result, from one
    split (the fast path for small in-memory messages, which are usually
    CRLF already)."""
    lines = data.split(b"\r\n")
    rest = b"".join(lines) if len(lines) > 1 else data
    if b"\r" in rest or b"\n" in rest:
        data = canonicalise(data)
        lines = data.split(b"\r\n")
    return data, max(map(len, lines))


def longest_line(canonical: bytes) -> int:
    """The longest line of CRLF-canonical *canonical*, in octets without CRLF."""
    return max(map(len, canonical.split(b"\r\n")))


class BodyScanner:
    """Measure content as it would go on the wire (before dot-stuffing).

    Attributes after ``feed``: ``size`` (octets with line ends as CRLF and
    the final line terminated, the figure SIZE= declares), ``eight_bit``,
    ``max_line`` (longest line in octets without its line end) and ``nul``
    (a NUL octet was seen).
    """

    __slots__ = ("_line", "_pending_cr", "_size", "eight_bit", "max_line", "nul")

    def __init__(self) -> None:
        self._size = 0
        self.nul = False
        self.eight_bit = False
        self.max_line = 0
        self._line = 0  # length of the unfinished last line
        self._pending_cr = False

    def feed(self, chunk: bytes) -> None:
        """Account for the next piece of content."""
        if not chunk:
            return
        if not self.eight_bit and not chunk.isascii():
            self.eight_bit = True
        if not self.nul and b"\x00" in chunk:
            self.nul = True
        if not self._pending_cr and b"\r" not in chunk:
            # Bare LF line ends only (a file on disk): one split does it all.
            lines = chunk.split(b"\n")
            self._size += len(chunk) + len(lines) - 1  # each LF becomes CRLF
            first = self._line + len(lines[0])
            if len(lines) == 1:
                self._line = first
                self.max_line = max(self.max_line, first)
                return
            longest = max(map(len, lines))
            self.max_line = max(self.max_line, first, longest)
            self._line = len(lines[-1])
            return
        lf = chunk.count(b"\n")
        cr = chunk.count(b"\r")
        crlf = chunk.count(b"\r\n")
        if self._pending_cr and chunk[:1] == b"\n":
            crlf += 1
            cr += 1  # the CR of the previous chunk is counted here, not there
            self._size -= 1
        # Every line end becomes two octets: bare LF and bare CR gain one.
        self._size += len(chunk) + (lf - crlf) + (cr - crlf)
        self._pending_cr = chunk.endswith(b"\r")
        if lf == 0 and cr == 0:
            self._line += len(chunk)
            self.max_line = max(self.max_line, self._line)
            return
        lines = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        first = self._line + len(lines[0])
        longest = max(first, max(map(len, lines[1:-1]), default=0))
        self.max_line = max(self.max_line, longest)
        self._line = len(lines[-1])
        self.max_line = max(self.max_line, self._line)

    @property
    def size(self) -> int:
        """Octets on the wire, counting the CRLF added to an unfinished last line."""
        return terminated_size(self._size, open_line=self._line > 0)

    @property
    def long_lines(self) -> bool:
        """True when a line exceeds RFC 5321's 998 octets."""
        return self.max_line > MAX_LINE_LENGTH
