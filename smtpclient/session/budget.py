"""The ``total`` deadline of one whole call.

``Timeouts.total`` bounds one call of a face -- ``smtpclient.send()``, one
attempt of ``Mailer.send()`` -- from the first connect attempt (DNS
included) through greeting, EHLO, STARTTLS, AUTH, the transaction and the
final reply.  The face opens the budget with ``overall``; the opening
procedure, AUTH and every send made inside it are capped by it (each also
keeps its own stage deadlines), except that once "." or BDAT LAST is
written the wait for its reply keeps the ``data_done`` floor.  A context
variable carries it, so each thread (and each asyncio task calling in
through a thread) has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from smtpclient.protocol.state import Stage
from smtpclient.timeouts import Deadline

__all__ = ["CALL_DEADLINE", "overall"]

# The deadline of the call in progress in this context, if any.
CALL_DEADLINE: ContextVar[Deadline | None] = ContextVar("smtpclient_call_deadline", default=None)


@contextmanager
def overall(seconds: float | None) -> Iterator[Deadline | None]:
    """Bound everything inside by *seconds* from now (None or 0: no bound).
    Nested, the outer (earlier) budget stays in force."""
    outer = CALL_DEADLINE.get()
    if outer is not None or not seconds:
        yield outer
        return
    deadline = Deadline(seconds, Stage.CONNECT)
    token = CALL_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        CALL_DEADLINE.reset(token)
