"""The reply parser: tables of bytes in, replies (or ProtocolError) out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.errors import ProtocolError, ReplyLimitExceeded
from smtpclient.protocol.reply import Reply, ReplyLimits, ReplyParser


def parse_all(
    data: bytes, *, chunk: int | None = None, limits: ReplyLimits | None = None
) -> list[Reply]:
    parser = ReplyParser(limits)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    replies = []
    for piece in pieces:
        parser.feed(piece)
        while (reply := parser.next_reply()) is not None:
            replies.append(reply)
    return replies


@pytest.mark.parametrize(
    ("wire", "code", "lines", "enhanced"),
    [
        (b"250 OK\r\n", 250, ("OK",), None),
        (b"250\r\n", 250, ("",), None),  # a code with no text (RFC 5321 §4.2)
        (b"250 \r\n", 250, ("",), None),
        (b"220-first\r\n220-second\r\n220 last\r\n", 220, ("first", "second", "last"), None),
        (b"250-\r\n250 x\r\n", 250, ("", "x"), None),
        (b"550 5.1.1 <x@y>: no such user\r\n", 550, ("5.1.1 <x@y>: no such user",), "5.1.1"),
        (b"452 4.5.3 Too many recipients\r\n", 452, ("4.5.3 Too many recipients",), "4.5.3"),
        (b"250 2.0.0\r\n", 250, ("2.0.0",), "2.0.0"),
        # Class digit must match the reply's: not an enhanced code here.
        (b"550 2.1.1 odd\r\n", 550, ("2.1.1 odd",), None),
        (b"250 1.2.3 odd\r\n", 250, ("1.2.3 odd",), None),
        (b"250 2.1.5Ok\r\n", 250, ("2.1.5Ok",), None),
        (b"354 End data with <CR><LF>.<CR><LF>\n", 354, ("End data with <CR><LF>.<CR><LF>",), None),
        (b"250 caf\xc3\xa9\r\n", 250, ("caf\u00e9",), None),
        (b"250 bad \xff byte\r\n", 250, ("bad \ufffd byte",), None),
        (b"599 top\r\n", 599, ("top",), None),
    ],
)
def test_well_formed_replies(
    wire: bytes, code: int, lines: tuple[str, ...], enhanced: str | None
) -> None:
    (reply,) = parse_all(wire)
    assert (reply.code, reply.lines, reply.enhanced) == (code, lines, enhanced)


@pytest.mark.parametrize(
    "wire",
    [
        b"25 OK\r\n",
        b"2500 OK\r\n",  # junk after the code
        b"250x OK\r\n",
        b"250\tOK\r\n",
        b"abc OK\r\n",
        b"199 too low\r\n",
        b"600 too high\r\n",
        b"000 zero\r\n",
        b"\r\n",
        b" 250 OK\r\n",
        b"250-one\r\n251 two\r\n",  # codes differ between lines
        b"250-one\r\n550 two\r\n",
        b"\xff\xfe\xfd\r\n",
    ],
)
def test_malformed_replies_raise(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_all(wire)


def test_parser_stays_broken_after_an_error() -> None:
    parser = ReplyParser()
    parser.feed(b"abc\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):
        parser.feed(b"250 OK\r\n")


def test_incomplete_reply_waits_for_more() -> None:
    parser = ReplyParser()
    parser.feed(b"250-one\r\n250 tw")
    assert parser.next_reply() is None
    parser.feed(b"o\r\n")
    reply = parser.next_reply()
    assert reply is not None and reply.lines == ("one", "two")


def test_several_replies_in_one_read_come_out_in_order() -> None:
    replies = parse_all(b"250 a\r\n251 b\r\n354 c\r\n")
    assert [r.code for r in replies] == [250, 251, 354]


def test_line_length_cap() -> None:
    limits = ReplyLimits(max_line_length=600)
    assert parse_all(b"250 " + b"x" * 590 + b"\r\n", limits=limits)[0].code == 250
    with pytest.raises(ReplyLimitExceeded) as info:
        parse_all(b"250 " + b"x" * 700 + b"\r\n", limits=limits)
    assert (info.value.limit, info.value.value) == ("max_line_length", 600)


def test_endless_line_without_newline_is_refused_with_bounded_memory() -> None:
    parser = ReplyParser(ReplyLimits(max_line_length=1024))
    parser.feed(b"250 ")
    with pytest.raises(ReplyLimitExceeded):
        for _ in range(100):
            parser.feed(b"x" * 100)
            assert parser.next_reply() is None
    assert parser.buffered < 1024 + 200


def test_line_count_cap() -> None:
    limits = ReplyLimits(max_lines=10)
    with pytest.raises(ReplyLimitExceeded) as info:
        parse_all(b"250-x\r\n" * 20 + b"250 end\r\n", limits=limits)
    assert (info.value.limit, info.value.value) == ("max_lines", 10)


def test_reply_size_cap() -> None:
    limits = ReplyLimits(max_reply_bytes=2048)
    with pytest.raises(ReplyLimitExceeded) as info:
        parse_all((b"250-" + b"y" * 100 + b"\r\n") * 30 + b"250 end\r\n", limits=limits)
    assert (info.value.limit, info.value.value) == ("max_reply_bytes", 2048)


@pytest.mark.parametrize(
    "wire",
    [b"SSH-2.0-OpenSSH\r\n", b"250-a\r\n251 b\r\n", b"250x\r\n", b"199 too low\r\n"],
)
def test_malformed_replies_are_protocol_errors_but_not_over_a_limit(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_all(wire)
    assert not isinstance(info.value, ReplyLimitExceeded)


def test_limits_below_rfc_minimum_are_refused() -> None:
    with pytest.raises(ValueError):
        ReplyLimits(max_line_length=100)


def test_discard_forgets_buffered_bytes() -> None:
    parser = ReplyParser()
    parser.feed(b"220 ready\r\n250 injected\r\n")
    assert parser.next_reply() == Reply(220, ("ready",))
    assert parser.discard() == len(b"250 injected\r\n")
    assert parser.next_reply() is None


def test_reply_helpers() -> None:
    reply = Reply.build(550, "no such user", "5.1.1")
    assert reply.text == "5.1.1 no such user"
    assert reply.message == "no such user"
    assert reply.is_permanent and not reply.is_transient
    assert str(reply) == "550 5.1.1 no such user"
    assert reply.raw_text == b"5.1.1 no such user"
    assert Reply(354, ("go",)).is_intermediate


# --- properties -----------------------------------------------------------------------

text_lines = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        max_size=40,
    ),
    min_size=1,
    max_size=6,
)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    code = draw(st.integers(200, 599))
    lines = tuple(draw(text_lines))
    return Reply(code, lines)


@given(st.lists(replies(), min_size=1, max_size=5), st.data())
def test_any_well_formed_reply_cut_anywhere_parses_back(
    items: list[Reply], data: st.DataObject
) -> None:
    wire = b"".join(r.serialise() for r in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    parser = ReplyParser()
    parsed = []
    previous = 0
    for cut in [*cuts, len(wire)]:
        parser.feed(wire[previous:cut])
        previous = cut
        while (reply := parser.next_reply()) is not None:
            parsed.append(reply)
    assert [(r.code, r.lines) for r in parsed] == [(r.code, r.lines) for r in items]


@given(st.binary(max_size=300))
def test_byte_at_a_time_equals_whole(wire: bytes) -> None:
    def outcome(chunk: int | None) -> object:
        try:
            return [(r.code, r.lines, r.enhanced) for r in parse_all(wire, chunk=chunk)]
        except ProtocolError:
            return "error"

    assert outcome(1) == outcome(None)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_nothing_but_protocol_error(wire: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_all(wire, chunk=7)
