"""Error handling written for smtplib runs unchanged against our native errors.

One real aiosmtpd server refuses a sender, every recipient, the data, or
says 421 after the data.  The same handler code -- the kind found in
applications written against smtplib, unpacking ``e.recipients`` values as
``(code, msg)`` pairs and reading ``smtp_code``, ``smtp_error``, ``sender``
and ``args`` -- runs once around stdlib ``smtplib`` and once around each
native face (``Session``, ``smtpclient.send``, ``Mailer``); what it
extracted must be identical.
"""

from __future__ import annotations

import pickle
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from servers.smtpd import AiosmtpdServer, Recorder

import smtpclient
from smtpclient import Mailer, Session, TLSMode
from smtpclient.errors import RecipientsRefused, ReplyPair, SMTPClientError

SENDER = "sender@example.test"
BODY = b"From: sender@example.test\r\nSubject: handled\r\n\r\nhello\r\n"


@dataclass
class Refusing(Recorder):
    """Refuses by address or content: the scenarios below choose by name."""

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if address.startswith("refused-sender"):
            return "553 5.7.1 sender rejected by policy"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.mail_from.startswith("refused-data"):
            # Multi-line: smtplib joins the lines' text with b"\n".
            return "554-5.6.0 message content rejected\r\n554 5.6.0 see the policy page"
        if envelope.mail_from.startswith("closing"):
            return "421 4.3.2 service shutting down"
        return await super().handle_DATA(server, session, envelope)


SCENARIOS = {
    # name: (sender, recipients)
    "recipients refused": (
        SENDER,
        ["nobody@example.test", "busy@example.test"],
    ),
    "sender refused": ("refused-sender@example.test", ["to@example.test"]),
    "data refused": ("refused-data@example.test", ["to@example.test"]),
    "421 after the data": ("closing@example.test", ["to@example.test"]),
}


def smtplib_style_handler(send: Callable[[], object]) -> tuple[Any, ...]:
    """Application code written for smtplib, copied as such: do not adapt it."""
    try:
        send()
    except smtplib.SMTPRecipientsRefused as e:
        failures = {}
        for rcpt, (code, msg) in e.recipients.items():
            failures[rcpt] = (code, msg.decode("utf-8", "replace"), isinstance(msg, bytes))
        first = e.recipients[sorted(e.recipients)[0]]
        return ("recipients", failures, first[0], first[1], e.args)
    except smtplib.SMTPSenderRefused as e:
        return ("sender", e.smtp_code, e.smtp_error, e.sender, e.args)
    except smtplib.SMTPDataError as e:
        return ("data", e.smtp_code, e.smtp_error, e.args)
    except smtplib.SMTPResponseException as e:
        return ("response", e.smtp_code, e.smtp_error, e.args)
    except smtplib.SMTPServerDisconnected:
        return ("disconnected",)
    except smtplib.SMTPException as e:
        return ("other", type(e).__name__)
    return ("sent",)


@pytest.fixture
def server() -> Iterator[AiosmtpdServer]:
    recorder = Refusing(
        refuse={
            "nobody@example.test": "550 5.1.1 no such user",
            "busy@example.test": "450 4.2.1 mailbox busy, try later",
        }
    )
    with AiosmtpdServer(recorder=recorder) as running:
        yield running


def _stdlib(port: int, sender: str, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, recipients, BODY)


def _session(port: int, sender: str, recipients: list[str]) -> None:
    with Session.connect("127.0.0.1", port, tls=TLSMode.NONE, timeouts=10) as session:
        session.sendmail(sender, recipients, BODY)


def _send(port: int, sender: str, recipients: list[str]) -> None:
    smtpclient.send(
        BODY,
        host="127.0.0.1",
        port=port,
        tls=TLSMode.NONE,
        timeouts=10,
        sender=sender,
        recipients=recipients,
    )


def _mailer(port: int, sender: str, recipients: list[str]) -> None:
    with Mailer("127.0.0.1", port, tls=TLSMode.NONE, timeouts=10) as mailer:
        mailer.sendmail(sender, recipients, BODY)


NATIVE = {"Session": _session, "smtpclient.send": _send, "Mailer": _mailer}


@pytest.mark.parametrize("face", list(NATIVE))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_smtplib_handler_code_extracts_the_same_from_native_errors(
    server: AiosmtpdServer, scenario: str, face: str
) -> None:
    sender, recipients = SCENARIOS[scenario]
    theirs = smtplib_style_handler(lambda: _stdlib(server.port, sender, recipients))
    ours = smtplib_style_handler(lambda: NATIVE[face](server.port, sender, recipients))
    assert theirs[0] != "sent"  # every scenario is a refusal
    assert ours == theirs
    assert server.messages == []  # nothing was accepted by either


def test_what_the_handler_sees_is_what_the_server_said(server: AiosmtpdServer) -> None:
    sender, recipients = SCENARIOS["recipients refused"]
    outcome = smtplib_style_handler(lambda: _session(server.port, sender, recipients))
    assert outcome[0] == "recipients"
    assert outcome[1] == {
        "nobody@example.test": (550, "5.1.1 no such user", True),
        "busy@example.test": (450, "4.2.1 mailbox busy, try later", True),
    }
    sender, recipients = SCENARIOS["sender refused"]
    outcome = smtplib_style_handler(lambda: _session(server.port, sender, recipients))
    assert outcome == (
        "sender",
        553,
        b"5.7.1 sender rejected by policy",
        "refused-sender@example.test",
        (553, b"5.7.1 sender rejected by policy", "refused-sender@example.test"),
    )


def test_the_native_error_still_has_the_full_reply_and_pickles(server: AiosmtpdServer) -> None:
    sender, recipients = SCENARIOS["recipients refused"]
    with pytest.raises(RecipientsRefused) as info:
        _session(server.port, sender, recipients)
    exc = info.value
    pair = exc.recipients["nobody@example.test"]
    assert isinstance(pair, ReplyPair)
    assert (pair.code, pair.enhanced, pair.text) == (550, "5.1.1", "5.1.1 no such user")
    assert exc.replies["busy@example.test"].is_transient
    assert exc.is_transient  # one refusal was temporary: the whole refusal is
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.args == exc.args
    assert copy.recipients["nobody@example.test"].reply == pair.reply
    assert isinstance(copy, SMTPClientError)
    assert isinstance(copy, smtplib.SMTPRecipientsRefused)
