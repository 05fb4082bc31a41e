"""Message content sources: bytes/str, a seekable binary file, or a one-shot iterable.

Bytes and seekable files are scanned before MAIL FROM (size for SIZE=, 8-bit
for BODY=8BITMIME, line lengths) and can be sent again (the next MX, a
retry).  An iterable is read once, while sending; its size and body type are
what the caller declared, or are assumed conservatively.  Content is never
joined in memory: files and iterables are read in blocks of ``BLOCK_SIZE``.

The header block at the start of the content has its line ends checked
(``headercheck.check_raw_header``): by ``info()`` for bytes and files, so
before MAIL; while streaming for an iterable, whose first
``RAW_HEAD_LIMIT`` octets are examined before any of them is passed on.
NUL octets are noted by ``info()`` (``BodyInfo.nul``) and refused by the
plan unless the content goes out as BINARYMIME.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from smtpclient.headercheck import RAW_HEAD_LIMIT, check_raw_header
from smtpclient.protocol.data import (
    BodyScanner,
    canonical_and_longest,
    content_size,
    nul_error,
)

__all__ = ["BLOCK_SIZE", "Body", "BodyInfo", "BodySource", "check_content"]

BLOCK_SIZE = 128 * 1024
SMALL_BODY = 1024 * 1024  # in-memory messages up to this size are encoded in one step

BodySource = bytes | bytearray | memoryview | str | BinaryIO | Iterable[bytes]


@dataclass(frozen=True)
class BodyInfo:
    """What MAIL FROM has to declare about the content.

    ``size`` is None when unknown (an iterable without a declared size);
    ``eight_bit`` is None when unknown (an iterable without a declaration:
    treated as 8-bit when the server offers 8BITMIME, and checked while
    streaming when it does not); ``max_line`` is None when not measured;
    ``nul`` is True when the content has a NUL octet (False when unknown:
    an iterable is checked while streaming).
    """

    size: int | None
    eight_bit: bool | None
    max_line: int | None
    nul: bool = False


def check_content(data: bytes) -> None:
    """Refuse raw content that cannot go out as DATA or BDAT: a NUL octet, or
    bad line ends in its header block.

    Raises:
        NulOctetError: *data* holds a NUL octet.
        HeaderInjectionError: see ``headercheck.check_raw_header``.
    """
    if b"\x00" in data:
        raise nul_error()
    check_raw_header(data)


_UNDECLARED = BodyInfo(None, None, None)


class Body:
    """One message's content, wherever it comes from.

    Raises:
        TypeError: *source* is none of the accepted kinds, or *size* /
            *eight_bit* have the wrong type.
        ValueError: *size* is negative.
    """

    def __init__(
        self,
        source: BodySource,
        *,
        size: int | None = None,
        eight_bit: bool | None = None,
    ) -> None:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise TypeError(f"size must be an int or None, not {size!r}")
        if size is not None and size < 0:
            raise ValueError(f"size must not be negative, not {size!r}")
        if eight_bit is not None and not isinstance(eight_bit, bool):
            raise TypeError(f"eight_bit must be a bool or None, not {eight_bit!r}")
        self._bytes: bytes | None = None
        self._file: BinaryIO | None = None
        self._iterable: Iterable[bytes] | None = None
        self._start = 0
        self._consumed = False
        self._declared = (
            _UNDECLARED if size is None and eight_bit is None else BodyInfo(size, eight_bit, None)
        )
        self._info: BodyInfo | None = None
        self._canonical: bytes | None = None
        self._longest = 0  # the longest line of _canonical
        if isinstance(source, str):
            self._bytes = source.encode("utf-8")
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._bytes = bytes(source)
        elif _is_text_file(source):
            raise TypeError("message files must be opened in binary mode ('rb')")
        elif _is_seekable_binary(source):
            self._file = cast(BinaryIO, source)
            self._start = self._file.tell()
        elif callable(getattr(source, "read", None)):
            # A pipe or socket file: read it once, in blocks (not by lines).
            reader = cast(BinaryIO, source)
            self._iterable = iter(lambda: reader.read(BLOCK_SIZE), b"")
        elif isinstance(source, Iterable):
            self._iterable = source
        else:
            raise TypeError(
                "message data must be bytes, str, a seekable binary file or an iterable of "
                f"bytes, not {type(source).__name__}"
            )

    @property
    def reusable(self) -> bool:
        """True when the content can be sent more than once."""
        return self._iterable is None

    def info(self) -> BodyInfo:
        """Scan the content (once) and return what MAIL FROM must declare.

        For an iterable, nothing is read: the declared values are returned.

        Raises:
            HeaderInjectionError: bad line ends in the content's header block.
        """
        if self._info is not None:
            return self._info
        if self._iterable is not None:
            self._info = self._declared
            return self._info
        canonical = self.canonical
        if canonical is not None:
            # Small in-memory message: normalise once, measure the result.
            assert self._bytes is not None
            check_raw_header(self._bytes)
            eight_bit = not canonical.isascii()
            size = content_size(canonical)
            declared = self._declared
            self._info = BodyInfo(
                declared.size if declared.size is not None else size,
                eight_bit if declared.eight_bit is None else declared.eight_bit or eight_bit,
                self._longest,
                b"\x00" in canonical,
            )
            return self._info
        scanner = BodyScanner()
        first = True
        for block in self._blocks():
            if first:  # the header block lies well within the first block
                check_raw_header(block, complete=len(block) < BLOCK_SIZE)
                first = False
            scanner.feed(block)
        declared = self._declared
        self._info = BodyInfo(
            declared.size if declared.size is not None else scanner.size,
            scanner.eight_bit
            if declared.eight_bit is None
            else declared.eight_bit or scanner.eight_bit,
            scanner.max_line,
            scanner.nul,
        )
        return self._info

    @property
    def canonical(self) -> bytes | None:
        """The whole content with CRLF line ends, for small in-memory messages
        (up to ``SMALL_BODY`` bytes); None for larger or streamed ones."""
        if self._canonical is None and self._bytes is not None and len(self._bytes) <= SMALL_BODY:
            self._canonical, self._longest = canonical_and_longest(self._bytes)
        return self._canonical

    def octets(self) -> int | None:
        """The content's length exactly as given, without line-end
        conversion (what BINARYMIME sends); for an iterable, the declared
        size (None if none was declared)."""
        if self._bytes is not None:
            return len(self._bytes)
        if self._file is not None:
            end = self._file.seek(0, io.SEEK_END)
            self._file.seek(self._start)
            return end - self._start
        return self._declared.size

    def blocks(self) -> Iterator[bytes]:
        """Yield the content in blocks of at most ``BLOCK_SIZE`` bytes.

        Raises:
            RuntimeError: a one-shot iterable is read a second time.
            TypeError: an iterable yields something other than bytes.
            HeaderInjectionError: (an iterable) bad line ends in its header
                block; raised before any of its first ``RAW_HEAD_LIMIT``
                octets is yielded.
        """
        if self._iterable is not None:
            if self._consumed:
                raise RuntimeError("a one-shot message iterable cannot be sent twice")
            self._consumed = True
            return self._iterate()
        return self._blocks()

    def _blocks(self) -> Iterator[bytes]:
        if self._bytes is not None:
            data = self._bytes
            if len(data) <= BLOCK_SIZE:
                yield data
                return
            view = memoryview(data)
            for offset in range(0, len(data), BLOCK_SIZE):
                yield bytes(view[offset : offset + BLOCK_SIZE])
            return
        assert self._file is not None
        self._file.seek(self._start)
        try:
            while True:
                block = self._file.read(BLOCK_SIZE)
                if not block:
                    return
                yield block
        finally:
            # Leave the file where we found it, so the same file object can
            # be sent again (next MX, retry, another sendmail call).
            self._file.seek(self._start)

    def _iterate(self) -> Iterator[bytes]:
        head: list[bytes] | None = []  # held back until the header block is checked
        held = 0
        for piece in self._pieces():
            data = piece
            if head is not None:
                head.append(piece)
                held += len(piece)
                if held < RAW_HEAD_LIMIT:
                    continue
                data = b"".join(head)
                head = None
                check_raw_header(data, complete=False)
            # Re-cut oversized pieces so that no write exceeds one block.
            for offset in range(0, len(data), BLOCK_SIZE):
                yield data[offset : offset + BLOCK_SIZE]
        if head:
            data = b"".join(head)
            check_raw_header(data)
            for offset in range(0, len(data), BLOCK_SIZE):
                yield data[offset : offset + BLOCK_SIZE]

    def _pieces(self) -> Iterator[bytes]:
        assert self._iterable is not None
        for piece in self._iterable:
            if not isinstance(piece, (bytes, bytearray, memoryview)):
                raise TypeError(f"message iterables must yield bytes, not {type(piece).__name__}")
            if piece:
                yield bytes(piece)


def _is_text_file(source: object) -> bool:
    return isinstance(source, io.TextIOBase)


def _is_seekable_binary(source: object) -> bool:
    read = getattr(source, "read", None)
    if read is None or isinstance(source, io.TextIOBase):
        return False
    try:
        return bool(source.seekable())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
