"""One round trip per message against a real Postfix (PIPELINING and
CHUNKING on by default): MAIL, every RCPT and ``BDAT <n> LAST`` with the
content in one write, the message delivered to the Maildir byte for byte,
and Postfix reading the chunk when it refused every recipient (its 554 to
the BDAT read in order, the session still in step).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from servers._proc import wait_until
from servers.maildir import new_messages
from servers.postfix import REJECTED_RECIPIENT, PostfixServer, strip_added_headers

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import PermanentRecipientsRefused
from smtpclient.protocol.data import canonicalise
from smtpclient.session import fastpath
from smtpclient.transport import Transport

pytestmark = pytest.mark.postfix

TIMEOUTS = dataclasses.replace(Timeouts.uniform(20.0), total=None)
# Leading dots, a lone dot line, bare LF and CR: BDAT sends them unstuffed.
TRICKY = b".leading dot\r\n.\r\nbare LF\nbare CR\rend\r\n..two dots\n.\nno final line end"
REAL_SENDALL = Transport.sendall


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    recorded: list[bytes] = []

    def recording(transport: Transport, data: bytes | memoryview, deadline: Any) -> None:
        recorded.append(bytes(data))
        REAL_SENDALL(transport, data, deadline)

    monkeypatch.setattr(Transport, "sendall", recording)
    return recorded


@pytest.fixture(params=["fast", "general"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "general":
        monkeypatch.setattr(fastpath, "sendmail", lambda *_args: None)
    return str(request.param)


def _connect(server: PostfixServer) -> Session:
    return Session.connect(server.host, server.port, tls=TLSMode.NONE, timeouts=TIMEOUTS)


def _stored(server: PostfixServer, marker: str, count: int = 1) -> list[bytes]:
    """The stored copies holding *marker* (one per delivered recipient)."""

    def found() -> list[bytes]:
        contents = (p.read_bytes() for p in new_messages(server.inbox_new))
        return [data for data in contents if marker.encode() in data]

    if not wait_until(lambda: len(found()) >= count, 20.0):
        raise AssertionError(f"{marker} not delivered; mail log:\n{server.maillog()[-3000:]}")
    return found()


def test_delivered_byte_for_byte_in_one_write(
    postfix: PostfixServer, path: str, writes: list[bytes]
) -> None:
    marker = uuid.uuid4().hex
    sent = f"From: s@example.test\r\nSubject: {marker}\r\n\r\n".encode() + TRICKY
    recipients = ["r@example.test", REJECTED_RECIPIENT, "other@example.test"]
    with _connect(postfix) as session:
        assert session.extensions.chunking and session.extensions.pipelining
        result = session.sendmail("s@example.test", recipients, sent)
        assert session.noop().code == 250
    assert list(result.accepted) == ["r@example.test", "other@example.test"]
    assert list(result.refused) == [REJECTED_RECIPIENT]
    assert result.queue_id is not None
    wire = canonicalise(sent)
    wire = wire if wire.endswith(b"\r\n") else wire + b"\r\n"
    # One write: the envelope, then the chunk.
    (group,) = [w for w in writes if w.startswith(b"MAIL FROM:")]
    assert group.endswith(f"BDAT {len(wire)} LAST\r\n".encode() + wire)
    assert group.count(b"RCPT TO:") == len(recipients)
    # Both accepted recipients share the one Maildir of the fixture.
    for stored in _stored(postfix, marker, 2):
        assert strip_added_headers(stored) == wire


def test_every_recipient_refused_postfix_reads_the_chunk(
    postfix: PostfixServer, path: str, writes: list[bytes]
) -> None:
    # The content holds command lines: were the chunk not read, Postfix
    # would run them and the replies would fall out of step.
    body = b"Subject: refused\r\n\r\nRSET\r\nMAIL FROM:<x@example.test>\r\nNOOP\r\n"
    with _connect(postfix) as session:
        with pytest.raises(PermanentRecipientsRefused) as caught:
            session.sendmail("s@example.test", [REJECTED_RECIPIENT], body)
        assert session.noop().code == 250
        assert session.usable
        # And the session goes on: the next message is delivered.
        marker = uuid.uuid4().hex
        after = f"Subject: {marker}\r\n\r\nafter\r\n".encode()
        result = session.sendmail("s@example.test", "r@example.test", after)
    assert not caught.value.outcome_unknown
    assert caught.value.result is not None
    assert list(caught.value.result.refused) == [REJECTED_RECIPIENT]
    assert caught.value.result.refused[REJECTED_RECIPIENT].code == 550
    assert sum(w.startswith(b"MAIL FROM:") and b" LAST\r\n" in w for w in writes) == 2
    assert result.queue_id is not None
    assert [strip_added_headers(s) for s in _stored(postfix, marker)] == [after]
