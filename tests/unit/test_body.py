"""Body sources: what is scanned before MAIL, what is declared, how it is read."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.body import BLOCK_SIZE, Body, BodyInfo
from smtpclient.protocol.data import DataEncoder, Framing


@pytest.mark.parametrize(
    ("source", "info"),
    [
        (b"", BodyInfo(0, False, 0)),
        (b"a\r\n", BodyInfo(3, False, 1)),
        (b"a", BodyInfo(3, False, 1)),  # the missing line end counts on the wire
        (b"a\nb\n", BodyInfo(6, False, 1)),  # bare LF becomes CRLF
        (b"a\rb\r", BodyInfo(6, False, 1)),  # bare CR too
        (b"\xc3\xa9\r\n", BodyInfo(4, True, 2)),  # 8-bit
        ("é\r\n", BodyInfo(4, True, 2)),  # str is sent as UTF-8
        (b"x" * 999 + b"\r\n", BodyInfo(1001, False, 999)),  # one over RFC 5321's 998
        (bytearray(b".a\r\n"), BodyInfo(4, False, 2)),  # dots are not counted twice
        (memoryview(b"a\r\n"), BodyInfo(3, False, 1)),
    ],
)
def test_in_memory_sources_are_scanned(source: bytes | str, info: BodyInfo) -> None:
    body = Body(source)
    assert body.info() == info
    assert body.reusable


@pytest.mark.parametrize(
    ("declared", "data", "info"),
    [
        # A declared size is an estimate the caller may know better.
        ({"size": 10}, b"a\r\n", BodyInfo(10, False, 1)),
        # A declaration of 8-bit wins over a 7-bit scan...
        ({"eight_bit": True}, b"a\r\n", BodyInfo(3, True, 1)),
        # ...but 7-bit cannot hide 8-bit octets that are there.
        ({"eight_bit": False}, b"\xff\r\n", BodyInfo(3, True, 1)),
    ],
)
def test_declarations_for_scannable_sources(
    declared: dict[str, object], data: bytes, info: BodyInfo
) -> None:
    assert Body(data, **declared).info() == info  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("declared", "info"),
    [
        ({}, BodyInfo(None, None, None)),  # nothing known, nothing read
        ({"size": 5}, BodyInfo(5, None, None)),
        ({"eight_bit": False}, BodyInfo(None, False, None)),
        ({"size": 7, "eight_bit": True}, BodyInfo(7, True, None)),
    ],
)
def test_iterables_are_not_read_before_sending(
    declared: dict[str, object], info: BodyInfo
) -> None:
    read: list[bytes] = []

    def pieces() -> Iterator[bytes]:
        for piece in (b"a\r\n", b"b\r\n"):
            read.append(piece)
            yield piece

    body = Body(pieces(), **declared)  # type: ignore[arg-type]
    assert body.info() == info
    assert read == []
    assert not body.reusable


def test_seekable_file_is_scanned_and_rewound() -> None:
    data = b"head\r\n" + b"\xe9" * 10 + b"\r\n"
    handle = io.BytesIO(b"skip" + data)
    handle.seek(4)  # content starts where the file stands
    body = Body(handle)
    assert body.info() == BodyInfo(len(data), True, 10)
    assert handle.tell() == 4
    assert b"".join(body.blocks()) == data
    assert b"".join(body.blocks()) == data  # and again (next MX, retry)
    assert handle.tell() == 4


def test_a_pipe_like_reader_is_read_once_in_blocks() -> None:
    class Pipe:
        def __init__(self, data: bytes) -> None:
            self.stream = io.BytesIO(data)
            self.sizes: list[int] = []

        def read(self, size: int = -1) -> bytes:
            self.sizes.append(size)
            return self.stream.read(size)

        def seekable(self) -> bool:
            return False

    pipe = Pipe(b"x" * (BLOCK_SIZE + 10))
    body = Body(pipe)
    assert not body.reusable
    assert b"".join(body.blocks()) == b"x" * (BLOCK_SIZE + 10)
    assert set(pipe.sizes) == {BLOCK_SIZE}  # never "read everything"
    with pytest.raises(RuntimeError, match="cannot be sent twice"):
        body.blocks()


@pytest.mark.parametrize(
    "source",
    [
        b"x" * (3 * BLOCK_SIZE + 1),
        io.BytesIO(b"x" * (3 * BLOCK_SIZE + 1)),
        iter([b"x" * (3 * BLOCK_SIZE + 1)]),  # one huge piece is re-cut
    ],
    ids=["bytes", "file", "iterable"],
)
def test_blocks_never_exceed_block_size(source: object) -> None:
    body = Body(source)  # type: ignore[arg-type]
    sizes = [len(block) for block in body.blocks()]
    assert max(sizes) <= BLOCK_SIZE
    assert sum(sizes) == 3 * BLOCK_SIZE + 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (io.StringIO("text"), "binary mode"),
        (12, "not int"),
        (None, "not NoneType"),
    ],
)
def test_unsupported_sources_are_type_errors(source: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Body(source)  # type: ignore[arg-type]


def test_an_iterable_yielding_str_is_a_type_error_while_sending() -> None:
    body = Body(iter(["text"]))  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must yield bytes"):
        list(body.blocks())


@given(st.binary(max_size=2000).map(lambda data: b"\n" + data.replace(b"\x00", b"")))
def test_declared_size_is_what_bdat_sends(data: bytes) -> None:
    # SIZE= must match the octets BDAT announces, bare line ends included.
    # (No NUL, which is refused; a leading empty line: no header block.)
    body = Body(data)
    encoder = DataEncoder(Framing.BDAT)
    wire = b"".join(encoder.feed(block) for block in body.blocks()) + encoder.finish()
    assert body.info().size == len(wire)
    assert Body(io.BytesIO(data)).info() == body.info()


@pytest.mark.parametrize(
    ("source", "declared", "octets"),
    [
        (b"a\nb\r", None, 4),  # as given: no line ends added
        (io.BytesIO(b"xx\x00\n"), None, 4),
        (iter([b"abc"]), 10, 10),  # an iterable: only what was declared
        (iter([b"abc"]), None, None),
    ],
)
def test_octets_are_the_length_as_given(
    source: object, declared: int | None, octets: int | None
) -> None:
    assert Body(source, size=declared).octets() == octets  # type: ignore[arg-type]
