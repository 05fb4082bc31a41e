"""Shared pieces for the hostile-server tests: tight timeouts, a server that
behaves until a chosen stage and then misbehaves, and one send through it.

Every helper returns evidence the tests assert on: the client's error or
result, how long it took, whether the session is still usable, and every
command line the server received (``Attempt.commands``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from servers.scripted import Conn, ScriptedServer, serve_normally

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import SMTPClientError
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult
from smtpclient.transport import Transport

# One second a stage; data_done keeps its 10 s floor (a short wait after the
# final dot is how duplicates are made), so only a few tests wait for it.
FAST = dataclasses.replace(Timeouts.uniform(1.0), data_done=10.0, total=None)
# Half a second a stage, for the cases that wait for a deadline on purpose.
QUICK = dataclasses.replace(Timeouts.uniform(0.5), data_done=10.0, total=None)

# The conversation in order, and the Stage the client reports for each step.
STAGES: dict[str, Stage] = {
    "greeting": Stage.GREETING,
    "ehlo": Stage.EHLO,
    "mail": Stage.MAIL,
    "rcpt": Stage.RCPT,
    "data": Stage.DATA_INIT,
    "dot": Stage.DATA_DONE,
}

Misbehaviour = Callable[[Conn], None]


@contextlib.contextmanager
def client_writes() -> Iterator[list[bytes]]:
    """Record the bytes of every ``Transport.sendall`` call, in order: how
    the client grouped what it wrote.  (The server's ``Conn.writes`` are its
    reads, which the kernel may split or merge depending on timing.)"""
    writes: list[bytes] = []
    real = Transport.sendall

    def recording(transport: Transport, data: bytes | memoryview, deadline: Any) -> None:
        writes.append(bytes(data))
        real(transport, data, deadline)

    Transport.sendall = recording  # type: ignore[method-assign]
    try:
        yield writes
    finally:
        Transport.sendall = real  # type: ignore[method-assign]


def until(stage: str, misbehave: Misbehaviour, extensions: Sequence[str] = ()) -> Misbehaviour:
    """A handler that plays a normal server (no PIPELINING unless given in
    *extensions*, so every command waits for its reply) up to *stage*, then
    hands the connection to *misbehave* instead of answering."""
    if stage not in STAGES:
        raise ValueError(stage)

    def handler(conn: Conn) -> None:
        if stage == "greeting":
            misbehave(conn)
            return
        conn.reply("220 scripted.test ESMTP")
        conn.expect(b"EHLO")
        if stage == "ehlo":
            misbehave(conn)
            return
        conn.reply("250 scripted.test", *(f"250 {ext}" for ext in extensions))
        for step, verb, answer in (
            ("mail", b"MAIL", "250 2.1.0 ok"),
            ("rcpt", b"RCPT", "250 2.1.5 ok"),
            ("data", b"DATA", "354 go ahead"),
        ):
            conn.expect(verb)
            if stage == step:
                misbehave(conn)
                return
            conn.reply(answer)
        conn.read_data()
        misbehave(conn)

    return handler


def normal_after(handler: Misbehaviour) -> Misbehaviour:
    """*handler*, then a well-behaved server until QUIT."""

    def run(conn: Conn) -> None:
        handler(conn)
        serve_normally(conn)

    return run


def connect(server: ScriptedServer, timeouts: Timeouts = FAST, **options: object) -> Session:
    return Session.connect(
        "127.0.0.1",
        server.port,
        tls=TLSMode.NONE,
        timeouts=timeouts,
        **options,  # type: ignore[arg-type]
    )


@dataclass
class Attempt:
    """What one connect-and-send against a scripted server came to."""

    server: ScriptedServer
    error: BaseException | None
    result: SendResult | None
    took: float
    usable_after: bool | None  # Session.usable right after the send (None: never connected)

    @property
    def commands(self) -> list[bytes]:
        """The command lines of the first connection (message content excluded)."""
        return command_lines(bytes(self.server.conns[0].received)) if self.server.conns else []

    def verbs(self) -> list[bytes]:
        return [line.split(b" ", 1)[0].split(b":", 1)[0].upper() for line in self.commands]


def command_lines(wire: bytes) -> list[bytes]:
    """Split what a client sent into command lines, skipping DATA content."""
    lines: list[bytes] = []
    in_data = False
    for line in wire.split(b"\r\n"):
        if in_data:
            in_data = line != b"."
            continue
        if line:
            lines.append(line)
        in_data = line.upper() == b"DATA"
    return lines


def attempt(
    handler: Misbehaviour,
    *,
    timeouts: Timeouts = FAST,
    body: bytes = b"Subject: t\r\n\r\nhello\r\n",
    recipients: Sequence[str] = ("b@example.com",),
    rcvbuf: int | None = None,
    **options: object,
) -> Attempt:
    """Connect, send one message, say QUIT if the session is still usable."""
    with ScriptedServer(handler, rcvbuf=rcvbuf) as server:
        start = time.monotonic()
        error: BaseException | None = None
        result: SendResult | None = None
        usable: bool | None = None
        try:
            session = connect(server, timeouts, **options)
        except SMTPClientError as exc:
            error = exc
        else:
            with session:
                try:
                    result = session.sendmail("a@example.com", list(recipients), body)
                except SMTPClientError as exc:
                    error = exc
                usable = session.usable
        took = time.monotonic() - start
        # Let the handler read up to the client's close before the server stops.
        deadline = time.monotonic() + 0.5
        while any(t.is_alive() for t in server._threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        return Attempt(server, error, result, took, usable)
