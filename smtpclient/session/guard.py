"""The thread and fork guard of a ``Session``.

A session is used by one thread at a time: a second thread gets
``SessionBusyError`` at once, never interleaved bytes.  A session inherited
across ``fork()`` belongs to the parent: the child only closes its copy of
the descriptor.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar, cast

from smtpclient.errors import SessionBusyError, SessionClosedError

__all__ = ["Guard", "exclusive"]

P = ParamSpec("P")
R = TypeVar("R")

# This process's id, kept current across fork(): os.getpid() is a system
# call, and every send asks (twice through a pool).
_pid = os.getpid()


def _forked() -> None:
    global _pid  # noqa: PLW0603 (one value per process)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class Guard:
    """The lock one thread holds while it uses the session, and the id of
    the process that opened it."""

    __slots__ = ("lock", "pid")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = _pid

    @property
    def inherited(self) -> bool:
        """True in a child process: the connection is the parent's."""
        return self.pid != _pid


class Guarded(Protocol):
    """What ``exclusive`` needs of the object whose methods it guards."""

    guard: Guard

    def drop(self) -> None: ...


G = TypeVar("G", bound=Guarded)


def exclusive(method: Callable[Concatenate[G, P], R]) -> Callable[Concatenate[G, P], R]:
    """Run *method* holding the session's lock.

    Raises:
        SessionBusyError: another thread holds it.
        SessionClosedError: the session was opened by another process (it
            is dropped here).
    """

    @functools.wraps(method)
    def wrapper(self: G, *args: P.args, **kwargs: P.kwargs) -> R:
        guard = self.guard
        if guard.pid != _pid:
            # Inherited across fork(): the parent owns this connection.
            self.drop()
            raise SessionClosedError("this session was opened by another process (fork)")
        if not guard.lock.acquire(blocking=False):
            raise SessionBusyError(
                "this session is in use by another thread; use a Mailer or one session per thread"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.lock.release()

    return cast("Callable[Concatenate[G, P], R]", wrapper)
