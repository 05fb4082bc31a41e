"""The plain-message fast path of ``Session.sendmail`` against the general
path: the same message, the same scripted server, compared byte for byte.

Each scenario is sent twice on fresh connections to one scripted server:
once as ``sendmail`` chooses (the fast path when the message has no
options), once with the fast path switched off.  Everything the server
received, how the client grouped it into writes (recorded at the client's
``Transport.sendall``, not from the server's reads: how the kernel splits a
large write into reads depends on timing), the ``SendResult`` or the
exception with every field, and the session's state afterwards must be
identical, with and without PIPELINING, with DATA and BDAT.  The scenarios cover the
usual replies and each point where the fast path hands over to the
general one: refused recipients, a 452 split, refused MAIL and DATA, a
refused or lost final reply, a 421, replies out of step, multi-line and
dripped replies, a timeout, and the messages it must decline before
writing anything.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer

from hostile.faultkit import FAST, QUICK
from smtpclient import Session, Timeouts
from smtpclient.body import Body
from smtpclient.envelope import Envelope
from smtpclient.errors import SMTPClientError
from smtpclient.options import ConnectOptions
from smtpclient.plan import build_plan
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.results import SendResult
from smtpclient.session import fastpath
from smtpclient.session.config import SendConfig
from smtpclient.session.plain import plain_plan
from smtpclient.transport import Transport

BODY = b"Subject: fast\r\n\r\n" + b"line of text\r\n" * 140  # about 2 KiB
ODD_BODY = b".leading dot\nbare LF\r\n..two dots\rbare CR\n.\nno final line end"
QUEUED = "250 2.0.0 Ok: queued as Q1"
SENDER = "sender@example.test"
THREE = ["a@example.test", "b@example.test", "c@example.test"]
REAL_FAST_PATH = fastpath.sendmail
REAL_SENDALL = Transport.sendall


@dataclass
class Script:
    """How the scripted server answers.  Each entry is a reply ("\\n" between
    the lines of a multi-line one), "HANGUP" (close without a word) or
    "STALL" (say nothing); lists are used up one entry per command."""

    extensions: tuple[str, ...] = ("8BITMIME",)
    mail: list[str] = field(default_factory=list)  # default "250 2.1.0 Ok"
    rcpt: dict[str, list[str]] = field(default_factory=dict)  # default "250 2.1.5 Ok"
    data: list[str] = field(default_factory=list)  # default "354 go ahead"
    final: list[str] = field(default_factory=list)  # default QUEUED
    after_ehlo: bytes = b""  # sent with the EHLO reply, in one write (out of step)
    drip: bool = False  # replies one byte at a time


def _answer(conn: Conn, script: Script, entry: str) -> bool:
    """Send *entry*; False when the connection is to end here."""
    if entry == "HANGUP":
        return False
    if entry == "STALL":
        conn.stall(3)
        return False
    data = (entry.replace("\n", "\r\n") + "\r\n").encode()
    if script.drip:
        conn.drip(data, 0.002)
    else:
        conn.send(data)
    return not entry.startswith("421")


def _handler(script: Script) -> Any:
    def handler(conn: Conn) -> None:
        # Each connection uses up its own copy of the script.
        own = dataclasses.replace(
            script,
            mail=list(script.mail),
            rcpt={k: list(v) for k, v in script.rcpt.items()},
            data=list(script.data),
            final=list(script.final),
        )
        conn.reply("220 scripted.test ESMTP")
        conn.expect(b"EHLO")
        lines = ["scripted.test", *own.extensions]
        ehlo = "".join(
            f"250{'-' if i < len(lines) - 1 else ' '}{x}\r\n" for i, x in enumerate(lines)
        )
        # The stray reply goes out in the same write as the EHLO reply, so it
        # is there before MAIL however the machine schedules the threads.
        conn.send(ehlo.encode() + own.after_ehlo)
        # As Postfix: a BDAT chunk is read even without a transaction.
        mail_ok = rcpt_ok = False
        while True:
            line = conn.line()
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"MAIL":
                entry = own.mail.pop(0) if own.mail else "250 2.1.0 Ok"
                mail_ok = entry.startswith("2")
            elif verb == b"RCPT":
                address = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                queue = own.rcpt.get(address)
                entry = queue.pop(0) if queue else "250 2.1.5 Ok"
                rcpt_ok = rcpt_ok or entry.startswith("2")
            elif verb == b"DATA":
                entry = own.data.pop(0) if own.data else "354 go ahead"
                if not _answer(conn, own, entry):
                    return
                if not entry.startswith("354"):
                    continue
                conn.read_data()
                entry = own.final.pop(0) if own.final else QUEUED
            elif verb == b"BDAT":
                conn.read_exact(int(line.split()[1]))
                if not mail_ok:
                    entry = "503 5.5.1 Error: need MAIL command"
                elif not rcpt_ok:
                    entry = "554 5.5.1 Error: no valid recipients"
                else:
                    entry = own.final.pop(0) if own.final else QUEUED
                mail_ok = rcpt_ok = False
            elif verb == b"QUIT":
                conn.reply("221 2.0.0 Bye")
                return
            else:  # RSET, NOOP
                entry = "250 2.0.0 Ok"
                if verb == b"RSET":
                    mail_ok = rcpt_ok = False
            if not _answer(conn, own, entry):
                return

    return handler


def _norm(value: Any) -> Any:
    """A comparable form: replies as (code, raw lines), results field by field."""
    if isinstance(value, Reply):
        return (value.code, value.raw)
    if isinstance(value, SendResult):
        return {f.name: _norm(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return [(key, _norm(item)) for key, item in value.items()]
    if isinstance(value, (tuple, list)):
        return [_norm(item) for item in value]
    return value


@dataclass
class Evidence:
    taken: bool  # the fast path sent it (or started to)
    outcome: Any
    received: bytes
    writes: list[bytes]  # each Transport.sendall() call, in order
    state: str
    messages_sent: int


def _send(
    server: ScriptedServer,
    args: tuple[Any, ...],
    *,
    general: bool,
    pipelining: bool,
    chunking: bool,
    timeouts: Timeouts,
    monkeypatch: pytest.MonkeyPatch,
) -> Evidence:
    real = REAL_FAST_PATH
    taken: list[bool] = []

    def spy(*call: Any) -> SendResult | None:
        if general:
            return None
        try:
            result = real(*call)
        except BaseException:
            taken.append(True)
            raise
        taken.append(result is not None)
        return result

    writes: list[bytes] = []
    real_sendall = REAL_SENDALL

    def recording_sendall(transport: Transport, data: bytes | memoryview, deadline: Any) -> None:
        writes.append(bytes(data))
        real_sendall(transport, data, deadline)

    monkeypatch.setattr(fastpath, "sendmail", spy)
    monkeypatch.setattr(Transport, "sendall", recording_sendall)
    before = server.connections
    session = Session.connect(
        "127.0.0.1",
        server.port,
        timeouts=timeouts,
        use_pipelining=pipelining,
        use_chunking=chunking,
    )
    try:
        try:
            # A callable argument makes a fresh one per run (an iterator).
            outcome: Any = session.sendmail(*(a() if callable(a) else a for a in args))
        except (SMTPClientError, ValueError, TypeError) as exc:
            outcome = (type(exc), str(exc), {k: _norm(v) for k, v in vars(exc).items()})
        state, sent = session.state.value, session.messages_sent
        if session.usable:
            session.noop()  # the session goes on in step
    finally:
        session.close()
    conn = server.conns[before]
    conn.wait_closed(3)
    return Evidence(
        taken=any(taken),
        outcome=_norm(outcome),
        received=bytes(conn.received),
        writes=writes,
        state=state,
        messages_sent=sent,
    )


# (id, script, sendmail arguments, whether the fast path takes it)
SCENARIOS: list[tuple[str, Script, tuple[Any, ...], bool]] = [
    ("accepted", Script(), (SENDER, "to@example.test", BODY), True),
    ("accepted-three", Script(), (SENDER, THREE, BODY), True),
    ("tuple-recipients", Script(), (SENDER, tuple(THREE), BODY), True),
    ("odd-body", Script(), (SENDER, THREE, ODD_BODY), True),
    ("empty-body", Script(), (SENDER, THREE, b""), True),
    ("eight-bit", Script(), (SENDER, THREE, "Subject: é\r\n\r\nçà\r\n".encode()), True),
    ("size", Script(extensions=("8BITMIME", "SIZE 100000")), (SENDER, THREE, BODY), True),
    ("null-sender", Script(), ("", THREE, BODY), True),
    ("duplicate-recipients", Script(), (SENDER, [*THREE, THREE[0]], BODY), True),
    (
        "one-refused",
        Script(rcpt={THREE[1]: ["550 5.1.1 no such user"]}),
        (SENDER, THREE, BODY),
        True,
    ),
    (
        "all-refused",
        Script(rcpt={a: ["550 5.1.1 no such user"] for a in THREE}),
        (SENDER, THREE, BODY),
        True,
    ),
    (
        "all-refused-transient",
        Script(rcpt={a: ["450 4.2.0 greylisted"] for a in THREE}),
        (SENDER, THREE, BODY),
        True,
    ),
    (
        "452-split",
        Script(rcpt={THREE[1]: ["452 4.5.3 too many recipients"]}),
        (SENDER, THREE, BODY),
        True,
    ),
    ("mail-refused", Script(mail=["550 5.7.1 sender refused"]), (SENDER, THREE, BODY), True),
    ("data-refused", Script(data=["554 5.5.1 no valid recipients"]), (SENDER, THREE, BODY), True),
    ("final-refused", Script(final=["554 5.7.1 spam"]), (SENDER, THREE, BODY), True),
    ("final-transient", Script(final=["451 4.3.0 try later"]), (SENDER, THREE, BODY), True),
    (
        "421-at-rcpt",
        Script(rcpt={THREE[1]: ["421 4.3.2 shutting down"]}),
        (SENDER, THREE, BODY),
        True,
    ),
    ("421-at-mail", Script(mail=["421 4.3.2 shutting down"]), (SENDER, THREE, BODY), True),
    ("421-after-dot", Script(final=["421 4.3.2 shutting down"]), (SENDER, THREE, BODY), True),
    ("hangup-after-dot", Script(final=["HANGUP"]), (SENDER, THREE, BODY), True),
    ("hangup-at-rcpt", Script(rcpt={THREE[2]: ["HANGUP"]}), (SENDER, THREE, BODY), True),
    ("multi-line", Script(mail=["250-first line\n250 2.1.0 Ok"]), (SENDER, THREE, BODY), True),
    ("dripped", Script(drip=True), (SENDER, THREE, BODY), True),
    ("extra-reply", Script(mail=["250 2.1.0 Ok\n250 2.1.0 extra"]), (SENDER, THREE, BODY), True),
    ("354-to-rcpt", Script(rcpt={THREE[0]: ["354 what?"]}), (SENDER, THREE, BODY), True),
    ("out-of-step", Script(after_ehlo=b"250 2.0.0 surprise\r\n"), (SENDER, THREE, BODY), True),
    # Declined before a byte is written: the general path sends or refuses.
    ("bad-address", Script(), (SENDER, ["not an address"], BODY), False),
    ("control-character", Script(), (SENDER, ["a@b.test\r\nRSET"], BODY), False),
    ("non-ascii-local", Script(), (SENDER, ["é@example.test"], BODY), False),
    ("idn-domain", Script(), (SENDER, ["user@exämple.test"], BODY), False),
    ("long-line", Script(), (SENDER, THREE, b"x" * 1200 + b"\r\n"), False),
    ("eight-bit-refused", Script(extensions=()), (SENDER, THREE, b"\xe9t\xe9\r\n"), False),
    ("too-large", Script(extensions=("SIZE 1000",)), (SENDER, THREE, BODY), False),
    ("no-recipients", Script(), (SENDER, [], BODY), False),
    ("recipient-object", Script(), (SENDER, [b"a@example.test"], BODY), False),
    ("large-body", Script(), (SENDER, THREE, b"x" * 900 + b"\n" * 70_000), False),
    ("iterable-recipients", Script(), (SENDER, lambda: iter(THREE), BODY), False),
]


def _ids() -> Iterator[str]:
    return (scenario[0] for scenario in SCENARIOS)


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
@pytest.mark.parametrize(("name", "script", "args", "fast"), SCENARIOS, ids=list(_ids()))
def test_fast_path_is_the_general_path_on_the_wire(
    name: str,
    script: Script,
    args: tuple[Any, ...],
    fast: bool,
    pipelining: bool,
    chunking: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extensions = script.extensions + ("PIPELINING",) * pipelining + ("CHUNKING",) * chunking
    script = dataclasses.replace(script, extensions=extensions)
    with ScriptedServer(_handler(script)) as server:
        runs = [
            _send(
                server,
                args,
                general=general,
                pipelining=pipelining,
                chunking=chunking,
                timeouts=FAST,
                monkeypatch=monkeypatch,
            )
            for general in (False, True)
        ]
    fast_run, general_run = runs
    assert fast_run.taken is fast
    assert not general_run.taken
    if name == "accepted-three" and pipelining and chunking:
        # The one-round-trip shape: MAIL, every RCPT and BDAT LAST with the
        # content in one write, on both paths.
        groups = [w for w in fast_run.writes if w.startswith(b"MAIL FROM:")]
        assert len(groups) == 1
        assert groups[0].endswith(f"BDAT {len(BODY)} LAST\r\n".encode() + BODY)
    assert fast_run.received == general_run.received
    assert fast_run.writes == general_run.writes
    assert fast_run.outcome == general_run.outcome
    assert (fast_run.state, fast_run.messages_sent) == (
        general_run.state,
        general_run.messages_sent,
    )
    assert not server.errors


def test_a_stalled_server_times_out_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pipelined: the MAIL reply never comes; stepwise: the RCPT reply.
    script = Script(extensions=("PIPELINING",), rcpt={THREE[0]: ["STALL"]})
    for pipelining in (True, False):
        with ScriptedServer(_handler(script)) as server:
            fast_run, general_run = (
                _send(
                    server,
                    (SENDER, THREE, BODY),
                    general=general,
                    pipelining=pipelining,
                    chunking=False,
                    timeouts=QUICK,
                    monkeypatch=monkeypatch,
                )
                for general in (False, True)
            )
        assert fast_run.taken
        assert fast_run.outcome == general_run.outcome
        assert fast_run.outcome[0].__name__ == "SMTPTimeoutError"
        assert fast_run.received == general_run.received


def _transcribed(
    server: ScriptedServer,
    args: tuple[Any, ...],
    caplog: pytest.LogCaptureFixture,
    **options: Any,
) -> tuple[Evidence, list[str]]:
    """One run with the transcript on: the evidence and the transcript lines."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="smtpclient.transcript"):
        run = _send(server, args, timeouts=FAST, **options)
    lines = [r.getMessage() for r in caplog.records if r.name == "smtpclient.transcript"]
    return run, lines


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
@pytest.mark.parametrize(
    "rcpt", [{}, {THREE[1]: ["550 5.1.1 no such user"]}], ids=["accepted", "one-refused"]
)
def test_the_transcript_changes_neither_the_path_nor_the_lines(
    rcpt: dict[str, list[str]],
    pipelining: bool,
    chunking: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Debugging shows the program that runs in production: the fast path
    # still sends, and both paths log the same lines for the same wire.
    extensions = ("8BITMIME",) + ("PIPELINING",) * pipelining + ("CHUNKING",) * chunking
    script = Script(extensions=extensions, rcpt=rcpt)
    options = {"pipelining": pipelining, "chunking": chunking, "monkeypatch": monkeypatch}
    with ScriptedServer(_handler(script)) as server:
        fast_run, fast_lines = _transcribed(
            server, (SENDER, THREE, BODY), caplog, general=False, **options
        )
        general_run, general_lines = _transcribed(
            server, (SENDER, THREE, BODY), caplog, general=True, **options
        )
    assert fast_run.taken
    assert fast_run.received == general_run.received
    assert fast_run.outcome == general_run.outcome
    assert fast_lines == general_lines
    assert any("C: MAIL FROM:<sender@example.test>" in line for line in fast_lines)
    assert any("S: 250 2.0.0 Ok: queued as Q1" in line for line in fast_lines)
    if chunking:  # the command as sent, then the chunk counted
        ends = [f"C: BDAT {len(BODY)} LAST", f"C: <{len(BODY)} octets of message content, end>"]
    else:  # BODY needs no dot-stuffing: its octets and ".\r\n"
        ends = [f"C: <{len(BODY) + 3} octets of message content, end>"]
    for end in ends:
        assert any(line.endswith(end) for line in fast_lines), end


@pytest.mark.parametrize("body", [BODY, b"x" * 900 + b"\n" * 70_000], ids=["small", "streamed"])
def test_the_transcript_shows_every_bdat_command_as_sent(
    body: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(extensions=("PIPELINING", "CHUNKING"))
    with ScriptedServer(_handler(script)) as server:
        run, lines = _transcribed(
            server,
            (SENDER, THREE, body),
            caplog,
            general=False,
            pipelining=True,
            chunking=True,
            monkeypatch=monkeypatch,
        )
    # The BDAT commands on the wire, in order (the content is only x and LF).
    sent = [m.decode() for m in re.findall(rb"BDAT \d+(?: LAST)?(?=\r\n)", run.received)]
    shown = [line.split(" C: ", 1)[1] for line in lines if " C: BDAT " in line]
    assert sent
    assert sent[-1].endswith(" LAST")
    assert shown == sent


@pytest.mark.parametrize(
    "extensions",
    [(), ("CHUNKING",), ("8BITMIME", "SIZE 100000"), ("8BITMIME", "SIZE 1000", "CHUNKING")],
    ids=["bare", "chunking", "8bit-size", "small-size"],
)
@pytest.mark.parametrize(("name", "script", "args", "fast"), SCENARIOS, ids=list(_ids()))
def test_send_many_plans_a_plain_message_as_the_general_path(
    name: str, script: Script, args: tuple[Any, ...], fast: bool, extensions: tuple[str, ...]
) -> None:
    # send_many's shortcut (the fast path's rules) makes the very plan the
    # general path makes, or leaves the message to it.
    sender, recipients, data = (a() if callable(a) else a for a in args)
    lines = (b"scripted.test", *(e.encode() for e in extensions))
    offered = Extensions.parse(Reply.from_wire(250, lines))
    options = ConnectOptions("127.0.0.1", 25)
    config = SendConfig.build(offered, None, options, "127.0.0.1")
    shortcut = plain_plan(config, sender, recipients, data)
    try:
        general = build_plan(
            Envelope.build(sender, recipients), Body(data), offered, None, use_chunking=True
        )
    except (SMTPClientError, ValueError, TypeError):
        assert shortcut is None  # the general path refuses it, with its own error
        return
    if shortcut is None:
        assert not fast  # declined, and the general path sends it (as sendmail's fast path)
        return
    for name_ in ("mail_line", "rcpt_lines", "framing", "info", "check_eight_bit", "check_lines"):
        assert getattr(shortcut, name_) == getattr(general, name_), name_
    assert shortcut.envelope == general.envelope
    assert shortcut.body.canonical == general.body.canonical
