"""MTA-STS (RFC 8461) without IO: the TXT record, the policy, MX matching, the cache.

A domain that publishes MTA-STS says, over HTTPS with a certificate any
public CA vouches for, which MX hosts are genuine and that they all offer
STARTTLS with a valid certificate.  An attacker on the path who strips
STARTTLS or answers with forged MX records then fails to get the mail:
under ``mode: enforce`` it is deferred instead.

* ``parse_txt()`` reads ``_mta-sts.<domain>`` TXT records (§3.1) into the
  policy id, or None when there is no usable record.
* ``parse_policy()`` reads the policy file (§3.2): ``version``, ``mode``,
  ``mx`` patterns, ``max_age``.
* ``mx_matches()`` is §4.1's rule: a pattern is a host name, or
  ``*.`` plus a name standing for exactly one more left-most label.
* ``PolicyCache`` keeps policies until their ``max_age`` runs out (§5.1),
  in memory and optionally in a JSON file shared between processes.

Fetching (HTTPS, DNS) is in ``mtasts_fetch``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from smtpclient.errors import MTASTSError, PolicyError  # re-exported here

__all__ = [
    "MAX_MAX_AGE",
    "MAX_POLICY_BYTES",
    "MTASTSError",
    "PolicyCache",
    "PolicyError",
    "STSMode",
    "STSPolicy",
    "mx_matches",
    "parse_policy",
    "parse_txt",
]

log = logging.getLogger(__name__)

MAX_POLICY_BYTES = 64 * 1024  # §3.3: senders may limit the policy's size (64 KiB)
MAX_MAX_AGE = 31557600  # §3.2: about one year

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class STSMode(enum.Enum):
    """A policy's ``mode``."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class STSPolicy:
    """One domain's MTA-STS policy.

    Attributes:
        mode: ``STSMode``.
        mx: the mx patterns, lower case, without a final dot.
        max_age: seconds the policy may be cached.
        policy_id: the TXT record's ``id`` it was fetched under ("" unknown).
    """

    mode: STSMode
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""

    def matches(self, host: str) -> bool:
        """True when *host* matches one of the ``mx`` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def __str__(self) -> str:
        patterns = ", ".join(self.mx) or "no mx patterns"
        return f"mode {self.mode}, mx {patterns}, max_age {self.max_age}, id {self.policy_id}"


def parse_txt(records: Iterable[str]) -> str | None:
    """The policy id of a domain's ``_mta-sts`` TXT records (RFC 8461 §3.1),
    or None when there is not exactly one valid ``v=STSv1`` record."""
    candidates = [r for r in records if r.startswith("v=STSv1;")]
    if len(candidates) != 1:
        return None
    found: str | None = None
    for raw in candidates[0].split(";")[1:]:
        field = raw.strip(" \t")
        if not field:
            continue
        name, equals, value = field.partition("=")
        if not equals or not _FIELD_NAME.fullmatch(name) or not value:
            return None
        if name == "id" and found is None:
            if not _ID.fullmatch(value):
                return None
            found = value
    return found


def _valid_pattern(pattern: str) -> bool:
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    return len(labels) >= 1 and all(_LABEL.fullmatch(label) for label in labels)


def parse_policy(text: str, policy_id: str = "") -> STSPolicy:
    """Parse a policy file: ``key: value`` lines ending in LF or CRLF.

    Unknown fields are ignored; of a repeated field other than ``mx``
    the first counts.  ``max_age`` above a year is cut to a year.

    Raises:
        PolicyError: no or a wrong ``version``, an unknown ``mode``, a
            missing or malformed ``max_age``, a malformed ``mx`` pattern,
            or no ``mx`` pattern under ``enforce``/``testing``.
    """
    fields: dict[str, str] = {}
    patterns: list[str] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise PolicyError(f"policy line {number} is not 'name: value': {line[:80]!r}")
        value = value.strip(" \t")
        if name == "mx":
            pattern = value.lower().removesuffix(".")
            if not _valid_pattern(pattern):
                raise PolicyError(f"malformed mx pattern {value[:80]!r}")
            patterns.append(pattern)
        else:
            fields.setdefault(name, value)
    if fields.get("version") != "STSv1":
        raise PolicyError(f"policy version is {fields.get('version')!r}, not 'STSv1'")
    try:
        mode = STSMode(fields.get("mode", ""))
    except ValueError:
        raise PolicyError(f"unknown policy mode {fields.get('mode')!r}") from None
    max_age = fields.get("max_age", "")
    if not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        raise PolicyError(f"max_age must be 1 to 10 digits, not {max_age[:20]!r}")
    if mode is not STSMode.NONE and not patterns:
        raise PolicyError(f"a policy in mode {mode} needs at least one mx pattern")
    return STSPolicy(mode, tuple(patterns), min(int(max_age), MAX_MAX_AGE), policy_id)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: *host* equals *pattern*, or *pattern* is ``*.name``
    and *host* is one more label in front of ``name`` (case ignored)."""
    host = host.lower().removesuffix(".")
    pattern = pattern.lower().removesuffix(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


@dataclass(frozen=True)
class _Entry:
    policy: STSPolicy
    fetched: float  # wall-clock seconds (a file outlives the process)

    @property
    def expires(self) -> float:
        return self.fetched + self.policy.max_age


class PolicyCache:
    """MTA-STS policies by domain until ``max_age`` runs out; thread-safe.

    With *path*, entries are also kept in that JSON file (written whole,
    atomically, on each change) and read from it at start; a missing or
    unreadable file starts empty.  *clock* (wall-clock seconds) is for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        if self.path is not None:
            self._load(self.path)

    def get(self, domain: str) -> STSPolicy | None:
        """The unexpired policy of *domain*, if one is cached."""
        with self._lock:
            entry = self._entries.get(domain.lower())
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._entries[domain.lower()]
                return None
            return entry.policy

    def put(self, domain: str, policy: STSPolicy) -> None:
        """Cache *policy* for *domain* from now on for ``max_age`` seconds."""
        with self._lock:
            self._entries[domain.lower()] = _Entry(policy, self._clock())
            if self.path is not None:
                self._save(self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for domain, item in data.items():
                policy = STSPolicy(
                    STSMode(item["mode"]),
                    tuple(str(p) for p in item["mx"]),
                    int(item["max_age"]),
                    str(item["id"]),
                )
                self._entries[str(domain)] = _Entry(policy, float(item["fetched"]))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("MTA-STS cache %s not read: %s", path, exc)
            self._entries.clear()

    def _save(self, path: Path) -> None:
        data = {
            domain: {
                "mode": entry.policy.mode.value,
                "mx": list(entry.policy.mx),
                "max_age": entry.policy.max_age,
                "id": entry.policy.policy_id,
                "fetched": entry.fetched,
            }
            for domain, entry in self._entries.items()
        }
        try:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".mta-sts-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out)
            Path(temporary).replace(path)
        except OSError as exc:  # the memory copy still works
            log.warning("MTA-STS cache %s not written: %s", path, exc)
