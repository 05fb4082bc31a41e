"""Stages of an SMTP conversation, the order in which they may happen, and
which replies can answer which command.

Three tables, no IO:

* ``ALLOWED``: which state each operation may start from (a caller's
  mistake otherwise, refused before a byte is written);
* ``TRANSITIONS``: how an ``Event`` moves a session from state to state
  (``next_state``); an event with no entry for the current state is a bug
  in the engine, and the session that met it is poisoned (as h11 does);
* ``ANSWERING``: which reply codes can answer the command of a stage
  (``answers``): any other reply means the reply stream is out of step.
  The general send path and the fast path both read this one table.
"""

from __future__ import annotations

import enum


class Stage(enum.Enum):
    """One step of a conversation; each has its own deadline in ``Timeouts``."""

    DNS = "dns"
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA_INIT = "data_init"
    DATA_BLOCK = "data_block"
    DATA_DONE = "data_done"
    RSET = "rset"
    QUIT = "quit"
    # Commands outside a mail transaction share one deadline (the RSET one).
    COMMAND = "command"

    # Members are singletons compared by identity: hash them the same way.
    # (Enum's own __hash__ is Python code, run on every dict or set lookup.)
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


class SessionState(enum.Enum):
    """Where a session stands; ``BROKEN`` and ``CLOSED`` are final."""

    NEW = "new"  # socket open, greeting not read yet
    GREETED = "greeted"  # 220 read, no EHLO yet
    READY = "ready"  # EHLO done, no transaction open
    IN_TRANSACTION = "in-transaction"  # MAIL accepted, data not finished
    BROKEN = "broken"  # a protocol error or lost connection: only close() is allowed
    CLOSED = "closed"

    __hash__ = object.__hash__  # as for Stage


# Which state each operation may start from.  Anything else is a bug in the
# caller (or in us) and is refused before a byte is written.
ALLOWED: dict[str, frozenset[SessionState]] = {
    "greeting": frozenset({SessionState.NEW}),
    "ehlo": frozenset({SessionState.GREETED, SessionState.READY}),
    "starttls": frozenset({SessionState.READY}),
    "auth": frozenset({SessionState.READY}),
    "mail": frozenset({SessionState.READY}),
    "rcpt": frozenset({SessionState.IN_TRANSACTION}),
    "data": frozenset({SessionState.IN_TRANSACTION}),
    "rset": frozenset({SessionState.GREETED, SessionState.READY, SessionState.IN_TRANSACTION}),
    "command": frozenset({SessionState.GREETED, SessionState.READY, SessionState.IN_TRANSACTION}),
    "quit": frozenset(
        {SessionState.GREETED, SessionState.READY, SessionState.IN_TRANSACTION, SessionState.NEW}
    ),
}


def check_allowed(operation: str, state: SessionState) -> None:
    """Raise if *operation* may not start in *state*.

    Raises:
        SessionClosedError: the session is closed or broken (a ``ValueError``).
        RuntimeError: the operation is out of order (a bug in the caller).
    """
    if state in ALLOWED[operation]:
        return
    from smtpclient.errors import SessionClosedError  # noqa: PLC0415 (errors imports us)

    if state in (SessionState.CLOSED, SessionState.BROKEN):
        raise SessionClosedError(f"cannot {operation}: the session is {state.value}")
    raise RuntimeError(f"cannot {operation} while the session is {state.value}")


class Event(enum.Enum):
    """What happened to a session; ``TRANSITIONS`` says where it leads."""

    GREETING = "greeting"  # the 220 greeting was read
    HELLO = "hello"  # EHLO (or HELO, LHLO) was accepted
    TLS_STARTED = "tls-started"  # the STARTTLS handshake finished: say EHLO again
    MAIL = "mail"  # MAIL is being sent: a transaction is open
    TRANSACTION_DONE = "transaction-done"  # the final reply(ies) to the content were read
    # send_many pipelines across messages: the next MAIL goes out behind the
    # end of a message's content, before that message's final reply is read.
    PIPELINED_MAIL = "pipelined-mail"
    EARLIER_DONE = "earlier-done"  # that earlier message's final reply was read
    RESET = "reset"  # RSET was accepted
    BROKEN = "broken"  # a protocol error or lost connection
    CLOSED = "closed"  # QUIT said, or closed without it

    __hash__ = object.__hash__  # as for Stage


_S = SessionState
_EVERY = tuple(SessionState)

# event -> {state before: state after}.  Absent: an illegal transition.
TRANSITIONS: dict[Event, dict[SessionState, SessionState]] = {
    Event.GREETING: {_S.NEW: _S.GREETED},
    Event.HELLO: {_S.GREETED: _S.READY, _S.READY: _S.READY},
    Event.TLS_STARTED: {_S.READY: _S.GREETED},
    Event.MAIL: {_S.READY: _S.IN_TRANSACTION},
    Event.TRANSACTION_DONE: {_S.IN_TRANSACTION: _S.READY},
    Event.PIPELINED_MAIL: {_S.IN_TRANSACTION: _S.IN_TRANSACTION},
    Event.EARLIER_DONE: {_S.IN_TRANSACTION: _S.IN_TRANSACTION},
    Event.RESET: {_S.GREETED: _S.GREETED, _S.READY: _S.READY, _S.IN_TRANSACTION: _S.READY},
    # Final states stay final: a break after close() is still closed.
    Event.BROKEN: {s: (_S.CLOSED if s is _S.CLOSED else _S.BROKEN) for s in _EVERY},
    Event.CLOSED: dict.fromkeys(_EVERY, _S.CLOSED),
}


def next_state(state: SessionState, event: Event) -> SessionState | None:
    """The state *event* leads to from *state*, or None when it may not happen there."""
    return TRANSITIONS[event].get(state)


# Reply codes the parser can produce (RFC 5321 §4.2: 2yz-5yz; 1yz is never
# sent by an SMTP server and the parser refuses it).
_CODES = range(100, 600)

# Which codes can answer each stage's command.  A 3xx answers only DATA
# (354); DATA is never answered by a 2xx (RFC 5321 §4.3.2 lists 354 and
# refusals); every other command is answered by 2xx, 4xx or 5xx.
ANSWERING: dict[Stage, frozenset[int]] = {
    stage: frozenset(
        code
        for code in _CODES
        if ((code == 354 or code >= 400) if stage is Stage.DATA_INIT else not 300 <= code < 400)
    )
    for stage in Stage
}


def answers(stage: Stage, code: int) -> bool:
    """True when a reply with *code* can answer the command of *stage*."""
    return code in ANSWERING[stage]
