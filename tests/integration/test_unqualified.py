"""Unqualified addresses (a bare local part: ``tester``, ``root``) go out as
given through every face, for the submission server to qualify; direct
delivery refuses them per recipient (no domain to route to)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from servers._proc import wait_until
from servers.maildir import new_messages
from servers.postfix import HOSTNAME, PostfixServer
from servers.smtpd import AiosmtpdServer

import smtpclient
import smtpclient.compat as smtplib_compat
from smtpclient import Mailer, Resolver, Session, TLSMode
from smtpclient.errors import InvalidAddressError
from smtpclient.report import Status


@pytest.fixture
def server() -> Iterator[AiosmtpdServer]:
    with AiosmtpdServer() as smtpd:
        yield smtpd


def message(sender: str = "tester", to: str = "django") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "unqualified"
    msg.set_content("body\n")
    return msg


def envelopes(server: AiosmtpdServer) -> list[tuple[str, list[str]]]:
    return [(m.mail_from, m.rcpt_tos) for m in server.messages]


def test_session_sends_a_bare_local_part_as_given(server: AiosmtpdServer) -> None:
    with Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE) as session:
        result = session.sendmail(
            "tester", ["django", "root@example.test"], b"Subject: x\r\n\r\nx\r\n"
        )
    assert set(result.accepted) == {"django", "root@example.test"}
    assert envelopes(server) == [("tester", ["django", "root@example.test"])]


def test_send_mailer_and_compat_take_them_from_headers_and_arguments(
    server: AiosmtpdServer,
) -> None:
    smtpclient.send(message(), host="127.0.0.1", port=server.port, tls=TLSMode.NONE)
    with Mailer("127.0.0.1", server.port, tls=TLSMode.NONE) as mailer:
        mailer.send(message("root", "webmaster"))
    with smtplib_compat.SMTP("127.0.0.1", server.port) as client:
        refused = client.sendmail("root", ["postmaster"], b"Subject: x\r\n\r\nx\r\n")
    assert refused == {}
    assert envelopes(server) == [
        ("tester", ["django"]),
        ("root", ["webmaster"]),
        ("root", ["postmaster"]),
    ]


@pytest.mark.parametrize(
    "address", ["te\r\nster", "bad local", "a(b)", "tes\x00ter", '"open quote']
)
def test_malformed_local_parts_are_still_refused_before_sending(
    server: AiosmtpdServer, address: str
) -> None:
    with Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE) as session:
        with pytest.raises(InvalidAddressError):
            session.sendmail(address, ["django"], b"x\r\n")
        with pytest.raises(InvalidAddressError):
            session.sendmail("tester", [address], b"x\r\n")
    assert server.messages == []


def test_deliver_reports_a_bare_recipient_as_permanently_failed() -> None:
    # No DNS is needed to refuse it: the resolver points nowhere.
    resolver = Resolver(nameservers=["127.0.0.1"], port=9, lifetime=2)
    report = smtpclient.deliver(message("a@example.test", "root"), resolver=resolver)
    (outcome,) = report.outcomes
    assert outcome.recipient == "root"
    assert outcome.status is Status.FAILED
    assert outcome.reply is not None and outcome.reply.code == 553
    assert outcome.reply.enhanced == "5.1.3"
    assert "no domain" in outcome.reason


@pytest.mark.postfix
def test_postfix_qualifies_a_bare_sender_with_myorigin(postfix: PostfixServer) -> None:
    marker = uuid.uuid4().hex
    with Session.connect("127.0.0.1", postfix.port, tls=TLSMode.NONE) as session:
        session.sendmail("tester", ["r@example.test"], f"Subject: {marker}\r\n\r\nx\r\n")

    def stored() -> list[bytes]:
        return [
            data
            for data in (path.read_bytes() for path in new_messages(postfix.inbox_new))
            if marker.encode() in data
        ]

    assert wait_until(lambda: bool(stored()), 20), postfix.maillog()
    (data,) = stored()
    assert f"Return-Path: <tester@{HOSTNAME}>".encode() in data
