"""Process-wide shared ``Mailer`` objects for the framework integrations.

A web framework creates backend objects per request (Django) or holds one
configuration per application (Flask); either way every thread of the
process should share one connection pool per server configuration.  A
``MailerRegistry`` maps a hashable key (the integration's settings, with
secrets digested) to one ``Mailer``, built on first use.

Fork safety: a pool drops connections inherited across ``fork()`` by itself
(it never writes to its parent's sockets); the registry re-creates its lock
in the child, since a parent thread may have held it at the moment of the
fork.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from smtpclient.mailer import Mailer
from smtpclient.server import secret_digest

__all__ = ["MailerRegistry", "settings_key"]

_REGISTRIES: weakref.WeakSet[MailerRegistry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_REGISTRIES):
        registry.reset_lock_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

_SECRET_NAMES = frozenset({"password"})


def _hashable(value: Any) -> Hashable:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))  # an ssl.SSLContext, a dict...: by identity
    return value  # type: ignore[no-any-return]


def settings_key(*parts: Hashable, options: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """A registry key: *parts* and *options*, passwords replaced by a digest
    (so a key in memory or a log does not hold the secret)."""
    items = []
    for name, value in sorted((options or {}).items()):
        secret = name in _SECRET_NAMES and isinstance(value, str) and value
        items.append((name, secret_digest(value) if secret else _hashable(value)))
    return (*parts, tuple(items))


class MailerRegistry:
    """One ``Mailer`` per key, shared by every thread of the process."""

    def __init__(self) -> None:
        self._mailers: dict[Hashable, Mailer] = {}
        self._lock = threading.Lock()
        _REGISTRIES.add(self)

    def get(self, key: Hashable, build: Callable[[], Mailer]) -> Mailer:
        """The open Mailer for *key*, built with *build* if there is none.

        Raises: what *build* raises (nothing is stored then).
        """
        with self._lock:
            mailer = self._mailers.get(key)
            if mailer is None or mailer.closed:
                mailer = self._mailers[key] = build()
            return mailer

    def close(self, key: Hashable, timeout: float | None = 30.0) -> None:
        """Close and forget the Mailer for *key* (nothing if there is none)."""
        with self._lock:
            mailer = self._mailers.pop(key, None)
        if mailer is not None:
            mailer.close(timeout)

    def close_all(self, timeout: float | None = 30.0) -> None:
        """Close every Mailer (QUIT to each pooled connection) and forget them."""
        with self._lock:
            mailers = list(self._mailers.values())
            self._mailers.clear()
        for mailer in mailers:
            mailer.close(timeout)

    def __len__(self) -> int:
        with self._lock:
            return sum(not mailer.closed for mailer in self._mailers.values())

    def reset_lock_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._lock = threading.Lock()
