"""SCRAM's derived keys, cached in memory so a repeat login skips PBKDF2.

RFC 5802 §5.1 lets a client keep ClientKey and ServerKey for later logins
to the same service: they depend only on the password, the salt and the
iteration count the server stores for the user, and deriving them
(PBKDF2, 4,096 or more iterations) is nearly all of SCRAM's client cost.

* Key: (server, hash, user name, a keyed digest of the password, salt,
  iteration count).  The password itself is never stored: the digest is
  an HMAC-SHA-256 under a random key made once per process, so it cannot
  be compared with anything outside this process.  A changed password, salt
  or count is simply another key.
* Kept only after a login succeeded *and* the server proved it knows the
  same password (its signature checked); *taken* out when used, so any
  failure -- a 535, a wrong server signature, a dropped connection --
  leaves nothing behind, and the next login derives the keys afresh.
* Bounded (least recently stored dropped first), thread-safe, emptied in
  a forked child, never written anywhere.

What the keys are worth to someone who reads this process's memory: they
let that someone log in to this server as this user (as the password
would), not recover the password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["MAX_ENTRIES", "ScramKeyCache", "ScramKeys", "scram_keys"]

MAX_ENTRIES = 256

# (server, hash name, user name, keyed password digest, salt, iterations)
_Key = tuple[str, str, str, bytes, bytes, int]


@dataclass(frozen=True)
class ScramKeys:
    """ClientKey and ServerKey (RFC 5802 §3) for one salt and iteration count."""

    client_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    salt: bytes
    iterations: int


class ScramKeyCache:
    """The cache behind SCRAM logins (see the module docstring)."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        """Start empty, with a new lock and a new digest key (in a forked
        child the lock may have been held by a thread that is gone)."""
        self._lock = threading.Lock()
        self._digest_key = os.urandom(32)
        self._entries: OrderedDict[_Key, ScramKeys] = OrderedDict()

    def _key(
        self,
        server: str,
        hash_name: str,
        username: str,
        password: bytes,
        salt: bytes,
        iterations: int,
    ) -> _Key:
        digest = hmac.new(self._digest_key, password, hashlib.sha256).digest()
        return (server, hash_name, username, digest, salt, iterations)

    def take(
        self,
        server: str,
        hash_name: str,
        username: str,
        password: bytes,
        salt: bytes,
        iterations: int,
    ) -> ScramKeys | None:
        """Remove and return the keys for this login (None: not cached).
        *password* is the SASLprep-ed password's UTF-8."""
        key = self._key(server, hash_name, username, password, salt, iterations)
        with self._lock:
            return self._entries.pop(key, None)

    def keep(
        self, server: str, hash_name: str, username: str, password: bytes, keys: ScramKeys
    ) -> None:
        """Cache *keys* after a successful, server-verified login."""
        key = self._key(server, hash_name, username, password, keys.salt, keys.iterations)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = keys
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


scram_keys = ScramKeyCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=scram_keys.reset)
