"""TLS session resumption: the last session per server, kept in this process.

A new connection to a server this process has talked to recently offers
the session of the previous one (a TLS 1.3 ticket or a TLS 1.2 session),
and the server may skip the certificate exchange and the key agreement's
public-key work.  What keeps this safe:

* Only sessions of verified handshakes (``CERT_REQUIRED`` and host name
  checked) are kept.
* A session is offered only to the **same server name** (the name the
  certificate was verified against), the same host and port, and a socket
  built from the **same** ``SSLContext`` object with the same verification
  settings.  The original handshake verified the certificate for exactly
  that name with exactly that context, and resumption proves the server
  holds the secret of that handshake, so verification still holds; a
  different name or context always gets a full handshake.
* A session is *taken* when offered (RFC 8446 Appendix C.4: a client
  should not reuse a ticket), and the connection's own new session is
  kept once the server's ticket has arrived.  Expired sessions are dropped,
  and so is any session whose chain of resumptions goes back to a full
  handshake (the last time the certificate was actually verified) more
  than ``MAX_AGE`` seconds ago: a busy client still checks the
  certificate -- expiry, a new one -- at least that often.
* The cache is bounded, guarded by a lock, lives in memory only, and is
  emptied in a forked child.

Under TLS 1.3 the ticket arrives *after* the handshake, so ``Transport``
keeps the session after its first read (the first reply cannot come
before the ticket: the server sends the ticket as soon as the handshake
ends).
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

__all__ = ["MAX_AGE", "MAX_CONTEXTS", "MAX_SESSIONS", "Offer", "SessionCache", "sessions"]

MAX_SESSIONS = 64  # servers
# Each entry keeps its SSLContext alive (a session refers to it), and a
# context holding certifi's bundle is about 0.8 MB: a caller who builds a
# new context per connection must not pin 64 of them.
MAX_CONTEXTS = 4
MAX_AGE = 3600.0  # seconds since the full handshake (Postfix's client default)

# (id of the context, verify mode, host names checked, server name, host, port)
_Key = tuple[int, int, bool, str | None, str, int]


def _key(context: ssl.SSLContext, server_hostname: str | None, host: str, port: int) -> _Key:
    return (
        id(context),
        int(context.verify_mode),
        context.check_hostname,
        server_hostname,
        host,
        port,
    )


def resumable(session: ssl.SSLSession | None, version: str | None) -> bool:
    """True for a session worth offering again: TLS 1.3 needs a ticket;
    TLS 1.2 a ticket or a session id the server may have cached."""
    if session is None:
        return False
    if version == "TLSv1.3":
        return session.has_ticket
    return session.has_ticket or bool(session.id)


class Offer(NamedTuple):
    """A session to offer, and when its certificate was last verified
    (``time.time()`` of the full handshake its resumptions go back to)."""

    session: ssl.SSLSession
    verified_at: float


class SessionCache:
    """Sessions by (context, server name, host, port): at most *limit* of
    them, made with at most *contexts* different contexts (least recently
    stored dropped first).  Thread-safe."""

    def __init__(self, limit: int = MAX_SESSIONS, contexts: int = MAX_CONTEXTS) -> None:
        self.limit = limit
        self.contexts = contexts
        self._lock = threading.Lock()
        # The entry keeps its context: the id in the key cannot be reused
        # by another context while the entry exists.
        self._entries: OrderedDict[_Key, tuple[ssl.SSLContext, Offer]] = OrderedDict()

    def take(
        self, context: ssl.SSLContext, server_hostname: str | None, host: str, port: int
    ) -> Offer | None:
        """Remove and return the session kept for this server and context
        (None: none, or it expired, or its certificate was verified more
        than ``MAX_AGE`` seconds ago)."""
        key = _key(context, server_hostname, host, port)
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None or entry[0] is not context:
            return None
        offer = entry[1]
        now = time.time()
        session = offer.session
        if session.timeout and session.time + session.timeout <= now:
            return None
        if not now - MAX_AGE < offer.verified_at <= now:
            return None
        return offer

    def keep(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        host: str,
        port: int,
        offer: Offer,
    ) -> None:
        """Remember *offer* for the next connection to this server."""
        key = _key(context, server_hostname, host, port)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (context, offer)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
            recent: list[ssl.SSLContext] = []  # most recently stored first
            for kept, _ in reversed(self._entries.values()):
                if not any(kept is seen for seen in recent):
                    recent.append(kept)
            for stale in recent[self.contexts :]:
                for old in [k for k, (kept, _) in self._entries.items() if kept is stale]:
                    del self._entries[old]

    def clear(self) -> None:
        """Forget every session."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        """Start empty with a new lock (in a forked child: the lock may have
        been held by a thread that does not exist there, and the sessions
        belong to the parent's connections)."""
        self._lock = threading.Lock()
        self._entries = OrderedDict()


sessions = SessionCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=sessions.reset)
