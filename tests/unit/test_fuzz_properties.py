"""Fuzz properties in the normal suite (hypothesis; deadline=None and
derandomised in CI, see tests/conftest.py), the stored fuzz corpus replayed,
and regression tests for what the fuzzers found.

Properties already in test_reply.py, test_data.py and test_commands.py are
not repeated; these add EHLO parsing of arbitrary text, exceptions built
from arbitrary replies, BDAT/BINARY framing and the one-step encoder on
arbitrary bytes, every command encoder, and whole SMTP conversations
against a scripted server answering with hypothesis-generated replies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from servers.scripted import Conn, ScriptedServer

from smtpclient import Session, TLSMode
from smtpclient.errors import InvalidArgumentError
from smtpclient.protocol import commands
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the fuzz/ package at the top of the repository

from fuzz.conversation import (  # noqa: E402
    REPLIES,
    TIMEOUTS,
    Recv,
    drive_client,
    script_from_bytes,
    serve_script,
)
from fuzz.targets import (  # noqa: E402
    TARGETS,
    check_reply,
    commands_target,
    data_target,
    ehlo_target,
    reply_target,
)

# --- the stored corpus --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_stored_fuzz_corpus_replays_cleanly(name: str) -> None:
    files = sorted((REPO / "fuzz" / "corpus" / name).glob("*"))
    assert files, f"fuzz/corpus/{name} is empty"
    for path in files:
        TARGETS[name](path.read_bytes())


# --- parsers ------------------------------------------------------------------------------

reply_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60
)


@given(st.lists(reply_text, min_size=1, max_size=8))
@example(["mx", "SIZE ²"])  # found by the EHLO fuzzer: int("²") raised ValueError
@example(["mx", "SIZE ٣"])  # Arabic-Indic digit: int() reads it, SMTP does not
@example(["mx", "AUTH=", "AUTH=PLAIN=", "auth"])
def test_ehlo_parsing_of_any_text_never_raises(lines: list[str]) -> None:
    ehlo_target("\n".join(lines).encode())
    size = Extensions.parse(Reply(250, tuple(lines))).max_size
    assert size is None or size > 0


@given(st.integers(200, 599), st.lists(reply_text, min_size=1, max_size=4))
def test_any_reply_makes_printable_picklable_exceptions(code: int, lines: list[str]) -> None:
    check_reply(Reply(code, tuple(lines)))


@given(st.binary(max_size=600))
@example(b"\x00250-a\r\n250 b\r\n")
@example(b"\x05550 5.1.1 \x1b[2J\xff\r\n")
def test_reply_parser_split_anywhere_agrees_with_whole(data: bytes) -> None:
    reply_target(data)


@given(st.binary(max_size=400))
@example(b"\x00.\r\n")
@example(b"\x01\r")
@example(b"\x02..\r\n.\n.\r.")
def test_every_framing_of_any_bytes_keeps_its_invariants(data: bytes) -> None:
    data_target(data)


@given(st.binary(max_size=120))
def test_every_command_encoder_gives_one_clean_line_or_refuses(data: bytes) -> None:
    commands_target(data)


# --- regressions found by the fuzzers ----------------------------------------------------


def test_a_non_ascii_sasl_initial_response_is_refused_not_a_unicode_error() -> None:
    # commands.auth() encoded the line as ASCII after checking only for
    # control characters: "AUTH PLAIN é" raised UnicodeEncodeError.
    with pytest.raises(InvalidArgumentError):
        commands.auth("PLAIN", "é")
    assert commands.auth("PLAIN", "dGVzdA==") == b"AUTH PLAIN dGVzdA==\r\n"


@pytest.mark.parametrize("name", ["[192.0.2.1>", "192.0.2.1]", "[192.0.2.1", "[]"])
def test_an_ehlo_address_literal_needs_both_brackets(name: str) -> None:
    # "[192.0.2.1>" passed (only the "[" was checked, then the inside of
    # [1:-1]) and went out as "EHLO [192.0.2.1>".
    with pytest.raises(InvalidArgumentError):
        commands.ehlo(name)
    assert commands.ehlo("[192.0.2.1]") == b"EHLO [192.0.2.1]\r\n"


def test_the_size_keyword_takes_ascii_digits_only() -> None:
    assert Extensions.parse(Reply(250, ("mx", "SIZE ²"))).max_size is None
    assert Extensions.parse(Reply(250, ("mx", "SIZE ٣٣"))).max_size is None
    assert Extensions.parse(Reply(250, ("mx", "SIZE 1000"))).max_size == 1000


# --- whole conversations against a scripted server ---------------------------------------

chunk = st.one_of(
    st.sampled_from(REPLIES),
    st.sampled_from(REPLIES).map(lambda r: r[: len(r) // 2]),  # half a reply
    st.binary(max_size=24),
)
scripts = st.lists(chunk, max_size=14)


def _conn_recv(conn: Conn) -> Recv:
    """Read straight from the server socket (Conn's own reads poll every 0.2 s)."""

    def recv(timeout: float) -> bytes | None:
        conn.sock.settimeout(timeout)
        try:
            data = conn.sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""
        conn.received += data
        return data

    return recv


@settings(max_examples=40)
@given(
    greeting=st.sampled_from([REPLIES[0], b"220-a\r\n220 b\r\n", b"554 no\r\n", b""]),
    ehlo=st.sampled_from([REPLIES[1], REPLIES[2], REPLIES[3], b"502 no\r\n", b"250 x"]),
    rest=scripts,
    pipelining=st.booleans(),
    lmtp=st.booleans(),
)
def test_a_session_against_any_reply_script_raises_only_library_errors(
    greeting: bytes, ehlo: bytes, rest: list[bytes], pipelining: bool, lmtp: bool
) -> None:
    # Whatever the server sends, the client ends with a result or the
    # library's own error, is unusable after a connection-level failure,
    # and closes its socket (drive_client checks; no_leaks checks threads).
    script = [greeting, ehlo, *rest]

    def handler(conn: Conn) -> None:
        serve_script(script, _conn_recv(conn), conn.send)

    with ScriptedServer(handler) as server:
        drive_client(
            lambda: Session.connect(
                "127.0.0.1",
                server.port,
                tls=TLSMode.NONE,
                timeouts=TIMEOUTS,
                use_pipelining=pipelining,
                lmtp=lmtp,
            )
        )
        assert not server.errors


def test_the_conversation_corpus_replays_against_a_scripted_server() -> None:
    # The campaign runs conversations over a socket pair; here the same
    # stored scripts go through a loopback server, one connection each.
    scripts = [
        (data[0], script_from_bytes(data[1:]))
        for data in (p.read_bytes() for p in sorted((REPO / "fuzz/corpus/conversation").glob("*")))
        if data
    ][:80]
    assert scripts

    def handler(conn: Conn) -> None:
        _, script = scripts[conn.server.conns.index(conn)]
        serve_script(script, _conn_recv(conn), conn.send)

    with ScriptedServer(handler, max_connections=len(scripts)) as server:
        for options, _ in scripts:
            drive_client(
                lambda options=options: Session.connect(  # type: ignore[misc]
                    "127.0.0.1",
                    server.port,
                    tls=TLSMode.NONE,
                    timeouts=TIMEOUTS,
                    use_pipelining=bool(options & 1),
                    use_chunking=bool(options & 2),
                    lmtp=bool(options & 4),
                )
            )
        assert not server.errors
