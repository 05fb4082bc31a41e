"""The streaming data encoder and the body scanner."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.protocol.data import BodyScanner, DataEncoder, Framing


def encode(pieces: list[bytes], framing: Framing = Framing.DATA) -> bytes:
    encoder = DataEncoder(framing)
    return b"".join(encoder.feed(p) for p in pieces) + encoder.finish()


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a\n", b"a\r\n.\r\n"),  # bare LF
        (b"a\r", b"a\r\n.\r\n"),  # bare CR
        (b"a\rb\nc\r\nd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),  # a leading dot is doubled
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # an early end marker is neutralised
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # smuggling with bare LF
        (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),  # smuggling with bare CR
        (b"..x", b"...x\r\n.\r\n"),
        (b"x.y\r\n", b"x.y\r\n.\r\n"),  # dots inside lines stay
        (b"\r\n\r\n", b"\r\n\r\n.\r\n"),
        (b"\n\r", b"\r\n\r\n.\r\n"),  # LF then CR: two line ends
    ],
)
def test_data_framing(body: bytes, wire: bytes) -> None:
    assert encode([body]) == wire
    assert encode([body[i : i + 1] for i in range(len(body))]) == wire


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b""),
        (b".a\nb\r", b".a\r\nb\r\n"),  # BDAT: normalised, never dot-stuffed, no end marker
        (b"x", b"x\r\n"),
    ],
)
def test_bdat_framing(body: bytes, wire: bytes) -> None:
    assert encode([body], Framing.BDAT) == wire
    assert encode([body[i : i + 1] for i in range(len(body))], Framing.BDAT) == wire


def test_binary_framing_passes_bytes_through() -> None:
    body = b"\x00\r.\n\xff"
    assert encode([body], Framing.BINARY) == body


def test_finish_twice_is_an_error() -> None:
    encoder = DataEncoder()
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.feed(b"x")


def normalise(body: bytes) -> bytes:
    """The reference: what the receiving side must reconstruct."""
    text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def unstuff(wire: bytes) -> bytes:
    """What an SMTP server does with DATA content (RFC 5321 §4.5.2)."""
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1])


body_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\xff", b" "]), max_size=60
).map(b"".join)


@given(body_bytes, st.data())
def test_encoder_output_decodes_to_normalised_input(body: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    wire = encode(pieces)
    assert wire == encode([body])
    assert unstuff(wire) == normalise(body)
    # Exactly one end marker, at the very end, and no bare CR or LF anywhere.
    assert (b"\r\n" + wire).count(b"\r\n.\r\n") == 1
    assert wire.count(b"\n") == wire.count(b"\r\n") == wire.count(b"\r")


@given(body_bytes, st.data())
def test_scanner_counts_what_goes_on_the_wire(body: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    scanner = BodyScanner()
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        scanner.feed(body[a:b])
    normal = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert scanner.size == len(normalise(body))
    assert scanner.eight_bit == (not body.isascii())
    longest = max((len(line) for line in normal.split(b"\r\n")), default=0)
    assert scanner.max_line == longest


def test_scanner_flags_long_lines() -> None:
    scanner = BodyScanner()
    scanner.feed(b"x" * 998 + b"\r\n")
    assert not scanner.long_lines
    scanner.feed(b"y" * 500)
    scanner.feed(b"y" * 499)
    assert scanner.long_lines and scanner.max_line == 999
