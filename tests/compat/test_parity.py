"""One table, two faces: the same hostile scenarios give the same verdict
through smtpclient.compat and through the native Session, because both run
on the same engine (address code, content rules, unsolicited-data check,
reply parser)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient.compat as compat
from smtpclient import Session, TLSMode
from smtpclient.errors import ProtocolError

HOST = "127.0.0.1"
BODY = b"Subject: parity\r\n\r\nhello\r\n"


def normal(*extensions: str) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, extensions or ("PIPELINING", "8BITMIME"))
        serve_normally(conn)

    return handler


def stale_after_ehlo(conn: Conn) -> None:
    conn.reply("220 scripted.test ESMTP")
    conn.expect(b"EHLO")
    conn.send(b"250 scripted.test\r\n550 5.7.1 refused before anyone asked\r\n")
    serve_normally(conn)


def answer_mail_with(raw: bytes) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        conn.expect(b"MAIL")
        conn.send(raw)
        conn.wait_closed()

    return handler


@dataclass(frozen=True)
class Scenario:
    handler: Callable[[Conn], None]
    sender: str = "me@example.test"
    recipient: str = "you@example.test"
    body: bytes = BODY
    verdict: str = "sent"


SCENARIOS = {
    "well-behaved": Scenario(normal()),
    "CRLF in a quoted recipient": Scenario(
        normal(),
        recipient='"bob\r\nRCPT TO:<evil@attacker.test>"@example.test',
        verdict="refused before MAIL",
    ),
    "CRLF in the sender": Scenario(
        normal(),
        sender="me@example.test\r\nRCPT TO:<evil@attacker.test>",
        verdict="refused before MAIL",
    ),
    "NUL in a display name": Scenario(
        normal(), recipient='"You\x00" <you@example.test>', verdict="refused before MAIL"
    ),
    "non-ASCII local part without SMTPUTF8": Scenario(
        normal(), recipient="j\u00f6rg@example.test", verdict="refused before MAIL"
    ),
    "a 1500-octet line": Scenario(
        normal(), body=b"Subject: x\r\n\r\n" + b"a" * 1500 + b"\r\n", verdict="refused before MAIL"
    ),
    "8-bit without 8BITMIME": Scenario(
        normal("PIPELINING"),
        body="Subject: x\r\n\r\ncaf\u00e9\r\n".encode(),
        verdict="refused before MAIL",
    ),
    "a stale reply after EHLO": Scenario(stale_after_ehlo, verdict="protocol error, closed"),
    "junk instead of a reply": Scenario(
        answer_mail_with(b"hello, I am not SMTP\r\n"), verdict="protocol error, closed"
    ),
    "a code that changes inside a reply": Scenario(
        answer_mail_with(b"250-fine\r\n550 not fine\r\n"), verdict="protocol error, closed"
    ),
    "a bad reply code": Scenario(
        answer_mail_with(b"2x0 what\r\n"), verdict="protocol error, closed"
    ),
}


Face = Callable[[int, Scenario, dict[str, bool]], Any]


def through_compat(port: int, scenario: Scenario, seen: dict[str, bool]) -> Any:
    s = compat.SMTP(HOST, port, local_hostname="client.test", timeout=10)
    try:
        return s.sendmail(scenario.sender, [scenario.recipient], scenario.body)
    finally:
        seen["closed"] = s.sock is None
        s.close()


def through_session(port: int, scenario: Scenario, seen: dict[str, bool]) -> Any:
    session = Session.connect(
        HOST, port, tls=TLSMode.NONE, timeouts=10, local_hostname="client.test"
    )
    try:
        return session.sendmail(scenario.sender, [scenario.recipient], scenario.body)
    finally:
        seen["closed"] = not session.usable
        session.close()


FACES: dict[str, Face] = {"compat": through_compat, "Session": through_session}


def verdict(face: Face, scenario: Scenario) -> str:
    """What happened, in words both faces share; judged from the outcome and the wire."""
    seen: dict[str, bool] = {}
    with ScriptedServer(scenario.handler) as server:
        try:
            face(server.port, scenario, seen)
            outcome = "sent"
        except (ValueError, smtplib.SMTPNotSupportedError):
            # The caller's input (compat: a ValueError or UnicodeEncodeError;
            # Session: that, or ExtensionNotSupported for a missing extension).
            outcome = "refused before MAIL"
        except ProtocolError:
            outcome = "protocol error, " + ("closed" if seen["closed"] else "still open")
    sent = b"".join(bytes(conn.received) for conn in server.conns)
    if outcome == "refused before MAIL" and b"MAIL" in sent.upper():
        outcome = "refused after MAIL"
    return outcome


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("name", SCENARIOS)
def test_same_verdict_through_both_faces(name: str, face: str) -> None:
    scenario = SCENARIOS[name]
    assert verdict(FACES[face], scenario) == scenario.verdict
