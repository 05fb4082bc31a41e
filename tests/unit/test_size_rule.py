"""One message-size rule (RFC 1870): every path that declares SIZE= or
refuses a message as too large asks ``protocol.data`` -- the plan, the fast
path, ``Body.info()`` for bytes and for files, and ``BodyScanner`` while
streaming.  The table gives each content the size SIZE= must declare: the
octets of the content as BDAT sends it (line ends as CRLF, an unfinished
last line terminated; no dot-stuffing, no end marker)."""

from __future__ import annotations

import io

import pytest

from smtpclient import plan
from smtpclient.body import Body
from smtpclient.envelope import Envelope
from smtpclient.errors import MessageTooLarge
from smtpclient.plan import build_plan
from smtpclient.protocol import data
from smtpclient.protocol.data import (
    BodyScanner,
    DataEncoder,
    Framing,
    canonicalise,
    content_size,
    encode_complete,
    size_parameter,
    terminated_size,
)
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply

SIZES = [
    (b"", 0),
    (b"a", 3),  # the CRLF the encoder adds counts
    (b"a\r\n", 3),
    (b"a\n", 3),  # a bare LF goes out as CRLF
    (b"a\r", 3),  # so does a bare CR
    (b"a\nb", 6),
    (b"a\r\nb\r\n", 6),
    (b"\r\n\r\n", 4),
    (b"\n\n\n", 6),
    (b"\r\r", 4),
    (b"\r\n\r", 4),
    (b".\r\n..\r\n", 7),  # dot-stuffing is not counted
    (b"x" * 998 + b"\n" + b"y" * 10, 998 + 2 + 10 + 2),
    ("é\n".encode(), 4),
]


def scanned(content: bytes, piece: int) -> int:
    scanner = BodyScanner()
    for start in range(0, max(len(content), 1), piece):
        scanner.feed(content[start : start + piece])
    return scanner.size


def bdat_octets(content: bytes) -> int:
    encoder = DataEncoder(Framing.BDAT)
    return len(encoder.feed(content) + encoder.finish())


@pytest.mark.parametrize(("content", "size"), SIZES)
def test_every_path_declares_the_same_size(content: bytes, size: int) -> None:
    canonical = canonicalise(content)
    assert content_size(canonical) == size
    assert scanned(content, len(content) or 1) == size  # one piece
    assert scanned(content, 1) == size  # a byte at a time: CR and LF apart
    assert Body(content).info().size == size  # in memory
    assert Body(io.BytesIO(content)).info().size == size  # a file: the scanner
    # What SIZE declares is what goes out (BDAT framing: no stuffing, no marker).
    assert len(encode_complete(canonical, Framing.BDAT)) == size
    assert bdat_octets(content) == size


@pytest.mark.parametrize(("content", "size"), [row for row in SIZES if row[0]])
def test_mail_from_declares_the_rule_and_the_limit_uses_it(content: bytes, size: int) -> None:
    envelope = Envelope.build("a@example.com", ["b@example.com"])
    offered = Extensions.parse(Reply(250, ("mx.test", f"SIZE {size}", "8BITMIME")))
    made = build_plan(envelope, Body(content), offered, None)
    assert made.mail_line.endswith(f" SIZE={size}\r\n".encode())
    too_small = Extensions.parse(Reply(250, ("mx.test", f"SIZE {size - 1}", "8BITMIME")))
    with pytest.raises(MessageTooLarge):
        build_plan(envelope, Body(content), too_small, None)


def test_plan_and_fast_path_use_the_protocol_functions() -> None:
    # One function, not a copy: plan re-exports what protocol.data defines.
    assert plan.content_size is data.content_size
    assert plan.size_parameter is data.size_parameter


@pytest.mark.parametrize(
    ("size", "limit", "offered", "declared"),
    [
        (10, None, True, "10"),
        (10, None, False, None),
        (10, 10, True, "10"),  # at the limit is allowed
        (10, 10, False, None),
        (0, 0, True, "0"),
        (11, 10, True, MessageTooLarge),
        (11, 10, False, MessageTooLarge),  # a limit is known only when offered, but obeyed
    ],
)
def test_size_parameter(
    size: int, limit: int | None, offered: bool, declared: str | type[Exception] | None
) -> None:
    if isinstance(declared, type):
        with pytest.raises(declared):
            size_parameter(size, limit, offered)
    else:
        assert size_parameter(size, limit, offered) == declared


@pytest.mark.parametrize(
    ("octets", "open_line", "size"), [(0, False, 0), (5, False, 5), (5, True, 7), (0, True, 2)]
)
def test_terminated_size(octets: int, open_line: bool, size: int) -> None:
    assert terminated_size(octets, open_line=open_line) == size
