"""LMTP (RFC 2033) against Dovecot's real LMTP server, over its Unix socket
and over TCP: LHLO, then after the data one reply per accepted recipient,
each recorded on that recipient.  A user over quota is refused after the
data (552 5.2.2) while the others in the same transaction are delivered."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from servers.dovecot import DovecotServer, strip_added_headers

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import PermanentDataRefused, PermanentRecipientsRefused
from smtpclient.protocol.data import canonicalise

pytestmark = pytest.mark.dovecot

TIMEOUTS = dataclasses.replace(Timeouts.uniform(20.0), total=None)
TRICKY = b".leading dot\r\n.\r\nbare LF\nbare CR\rend\r\n..two dots\n.\n"
QUOTA = """
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=50K
  quota_grace = 10%%
}
"""
FILLER = 48_000  # octets: carol has 2 KB of her 50 KB left (plus the 10% quota_grace)


def lmtp(server: DovecotServer, over: str, **kwargs: object) -> Session:
    if over == "unix":
        return Session.connect(str(server.lmtp_socket), lmtp=True, timeouts=TIMEOUTS, **kwargs)  # type: ignore[arg-type]
    return Session.connect(
        server.lmtp_host,
        server.lmtp_port,
        lmtp=True,
        tls=TLSMode.NONE,
        timeouts=TIMEOUTS,
        **kwargs,  # type: ignore[arg-type]
    )


def message(marker: str, body: bytes = TRICKY, size: int = 0) -> bytes:
    head = f"From: s@example.test\r\nTo: alice@example.test\r\nSubject: {marker}\r\n\r\n"
    return head.encode() + body + (b"z" * 76 + b"\r\n") * (size // 78)


def stored_with(server: DovecotServer, user: str, marker: str) -> bytes:
    (found,) = [m for m in server.messages(user, count=1) if marker.encode() in m]
    return found


@pytest.fixture(scope="module")
def dovecot_quota() -> Iterator[DovecotServer]:
    """Dovecot with a 50 KB quota per user; carol's mailbox is almost full."""
    server = DovecotServer(extra_config=QUOTA)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        with lmtp(server, "unix") as session:
            session.sendmail("s@example.test", ["carol@example.test"], message("fill", size=FILLER))
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@pytest.mark.parametrize("over", ["unix", "tcp"])
def test_one_reply_per_accepted_recipient(
    dovecot: DovecotServer, over: str, chunking: bool
) -> None:
    marker = uuid.uuid4().hex
    sent = message(marker)
    with lmtp(dovecot, over, use_chunking=chunking) as session:
        assert session.lmtp
        assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING"} <= set(
            session.extensions
        )
        result = session.sendmail(
            "s@example.test",
            ["alice@example.test", "nobody@example.test", "bob@example.test"],
            sent,
        )
    assert list(result.accepted) == ["alice@example.test", "bob@example.test"]
    refusal = result.refused["nobody@example.test"]  # at RCPT: unknown user
    assert (refusal.code, refusal.enhanced) == (550, "5.1.1")
    for user in ("alice@example.test", "bob@example.test"):
        own = result.recipient_data_replies[user]
        assert own.code == 250 and own.enhanced == "2.0.0"
        assert f"<{user}>" in own.text  # Dovecot names the recipient in its reply
        expected = canonicalise(sent)
        assert strip_added_headers(stored_with(dovecot, user, marker)) == expected
    assert len(result.data_replies) == 1


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_recipient_over_quota_is_refused_after_the_data(
    dovecot_quota: DovecotServer, chunking: bool
) -> None:
    marker = uuid.uuid4().hex
    sent = message(marker, size=10_000)
    with lmtp(dovecot_quota, "tcp", use_chunking=chunking) as session:
        result = session.sendmail(
            "s@example.test", ["alice@example.test", "carol@example.test"], sent
        )
        # The session stays usable after a per-recipient refusal.
        assert session.noop().code == 250
    # Both were accepted at RCPT; carol's own final reply refused her.
    assert list(result.accepted) == ["alice@example.test"]
    refusal = result.refused["carol@example.test"]
    assert (refusal.code, refusal.enhanced) == (552, "5.2.2")
    assert "<carol@example.test>" in refusal.text and "Quota" in refusal.text
    assert list(result.recipient_data_replies) == ["alice@example.test"]
    assert "<alice@example.test>" in result.recipient_data_replies["alice@example.test"].text
    stored = stored_with(dovecot_quota, "alice@example.test", marker)
    assert strip_added_headers(stored) == canonicalise(sent)
    carol = dovecot_quota.messages("carol@example.test", count=1)
    assert not any(marker.encode() in m for m in carol)


def test_every_accepted_recipient_refused_after_the_data_raises(
    dovecot_quota: DovecotServer,
) -> None:
    with lmtp(dovecot_quota, "unix") as session:
        with pytest.raises(PermanentDataRefused) as info:
            session.sendmail(
                "s@example.test",
                ["carol@example.test", "ghost@example.test"],
                message(uuid.uuid4().hex, size=10_000),
            )
    error = info.value
    assert error.reply is not None and error.reply.enhanced == "5.2.2"
    assert error.result is not None and error.result.accepted == {}
    assert error.result.refused["carol@example.test"].code == 552
    assert error.result.refused["ghost@example.test"].code == 550


def test_send_many_over_lmtp_keeps_each_messages_replies(dovecot: DovecotServer) -> None:
    markers = [uuid.uuid4().hex for _ in range(3)]
    items = [
        ("s@example.test", ["alice@example.test", "bob@example.test"], message(markers[0])),
        ("s@example.test", ["ghost@example.test"], message(markers[1])),
        ("s@example.test", ["bob@example.test"], message(markers[2])),
    ]
    with lmtp(dovecot, "unix") as session:
        first, second, third = session.send_many(items)
    assert not isinstance(first, Exception) and not isinstance(third, Exception)
    assert set(first.recipient_data_replies) == {"alice@example.test", "bob@example.test"}
    assert isinstance(second, PermanentRecipientsRefused)
    assert list(third.recipient_data_replies) == ["bob@example.test"]
    assert "<bob@example.test>" in third.recipient_data_replies["bob@example.test"].text
    for index, user in ((0, "alice@example.test"), (2, "bob@example.test")):
        stored = stored_with(dovecot, user, markers[index])
        assert strip_added_headers(stored) == canonicalise(items[index][2])
