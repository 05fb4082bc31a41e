"""Stages of an SMTP conversation and the order in which they may happen."""

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
