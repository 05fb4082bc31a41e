"""Run one script against ``smtplib`` and against ``smtpclient.compat`` and
record what each saw, so a test can compare the two.

A script is ``script(lib, server) -> list`` where ``lib`` is either module;
``attempt()`` turns a call into a comparable outcome (its value, or the
exception's class and smtplib attributes).
"""

from __future__ import annotations

import contextlib
import io
import smtplib
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import trustme

import smtpclient.compat as compat

LIBS = (smtplib, compat)
Script = Callable[[ModuleType, Any], list[Any]]

USERS = {"alice": "s3cret-pw"}


@dataclass
class TLSFiles:
    """A throwaway CA and a server context whose certificate it signed."""

    ca: trustme.CA
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def describe(exc: BaseException) -> tuple[Any, ...]:
    """What smtplib users look at on an exception: its smtplib class and attributes."""
    smtplib_class = next(
        (cls for cls in type(exc).__mro__ if cls.__module__ == "smtplib"),
        type(exc),
    )
    return (
        smtplib_class.__name__,
        getattr(exc, "smtp_code", None),
        getattr(exc, "smtp_error", None),
        getattr(exc, "sender", None),
        getattr(exc, "recipients", None),
        exc.args if smtplib_class.__module__ == "smtplib" else None,
    )


def attempt(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("raised", describe(exception))."""
    try:
        return ("ok", call())
    except Exception as exc:
        return ("raised", describe(exc))


def envelopes(server: Any) -> list[tuple[Any, ...]]:
    """What an AiosmtpdServer stored, without the per-connection peer."""
    return [
        (m.mail_from, m.rcpt_tos, m.content, m.mail_options, m.rcpt_options)
        for m in server.messages
    ]


@dataclass
class Run:
    """What one library did: the script's outcomes, what the server stored,
    and what ``set_debuglevel`` printed."""

    outcomes: list[Any]
    stored: list[tuple[Any, ...]]
    stderr: str


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    saved, sys.stderr = sys.stderr, buffer
    try:
        yield buffer
    finally:
        sys.stderr = saved


def run_both(script: Script, server: Any) -> tuple[Run, Run]:
    """Run *script* with smtplib, then with compat, against the same server."""
    runs = []
    for lib in LIBS:
        server.messages.clear()
        with captured_stderr() as err:
            outcomes = script(lib, server)
        runs.append(Run(outcomes, envelopes(server), err.getvalue()))
    return runs[0], runs[1]


def assert_same(script: Script, server: Any) -> Run:
    """Both libraries give the same outcomes and store the same messages; return one run."""
    theirs, ours = run_both(script, server)
    assert ours.outcomes == theirs.outcomes
    assert ours.stored == theirs.stored
    assert ours.stderr == theirs.stderr
    return ours
