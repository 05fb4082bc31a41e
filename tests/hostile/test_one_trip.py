"""One round trip per message: with PIPELINING and CHUNKING, MAIL, every
RCPT and ``BDAT <n> LAST`` with the content go out in one write, and every
reply is read back in order (RFC 3030 lets BDAT be pipelined).

Against a scripted server that, like Postfix, reads a BDAT chunk even when
it refused MAIL or every recipient.  The grouping is judged by the client's
``Transport.sendall`` calls, never by how the server's reads split them.
Both the fast path (plain messages) and the general path are exercised;
``test_fast_path.py`` compares them byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo

from hostile.faultkit import FAST
from smtpclient import Session, TLSMode
from smtpclient.errors import (
    PermanentRecipientsRefused,
    PermanentSenderRefused,
    ProtocolError,
    ServerDisconnected,
    ServiceClosing,
    SMTPClientError,
)
from smtpclient.session import fastpath
from smtpclient.session.transaction import ONE_TRIP_LIMIT
from smtpclient.transport import Transport

SENDER = "sender@example.test"
THREE = ["a@example.test", "b@example.test", "c@example.test"]
BODY = b"Subject: one trip\r\n\r\n" + b"line of text\r\n" * 140
QUEUED = "250 2.0.0 Ok: queued as ONE"
REAL_SENDALL = Transport.sendall


def _server(
    *,
    mail: str = "250 2.1.0 Ok",
    rcpt: Callable[[bytes], str] = lambda _line: "250 2.1.5 Ok",
    final: str = QUEUED,
    extensions: tuple[str, ...] = ("PIPELINING", "CHUNKING", "8BITMIME"),
) -> Callable[[Conn], None]:
    """A server that reads every BDAT chunk, as RFC 3030 requires; an entry
    "HANGUP" closes the connection instead of answering."""

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, extensions)
        mail_ok = rcpt_ok = False
        while True:
            line = conn.line()
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"MAIL":
                entry = mail
                mail_ok = entry.startswith("2")
            elif verb == b"RCPT":
                entry = rcpt(line)
                rcpt_ok = rcpt_ok or entry.startswith("2")
            elif verb == b"BDAT":
                conn.read_exact(int(line.split()[1]))
                if not mail_ok:
                    entry = "503 5.5.1 Error: need MAIL command"
                elif not rcpt_ok:
                    entry = "554 5.5.1 Error: no valid recipients"
                else:
                    entry = final
                mail_ok = rcpt_ok = False
            elif verb == b"QUIT":
                conn.reply("221 2.0.0 Bye")
                return
            else:  # RSET, NOOP
                entry = "250 2.0.0 Ok"
                if verb == b"RSET":
                    mail_ok = rcpt_ok = False
            if entry == "HANGUP":
                conn.close()
                return
            conn.reply(entry)
            if entry.startswith("421"):
                conn.close()
                return

    return handler


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ``Transport.sendall`` call of the client, in order."""
    recorded: list[bytes] = []

    def recording(transport: Transport, data: bytes | memoryview, deadline: Any) -> None:
        recorded.append(bytes(data))
        REAL_SENDALL(transport, data, deadline)

    monkeypatch.setattr(Transport, "sendall", recording)
    return recorded


@pytest.fixture(params=["fast", "general"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the fast path and with the general path."""
    if request.param == "general":
        monkeypatch.setattr(fastpath, "sendmail", lambda *_args: None)
    return str(request.param)


def _connect(server: ScriptedServer, **options: Any) -> Session:
    return Session.connect("127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=FAST, **options)


def _mail_writes(writes: list[bytes]) -> list[bytes]:
    """The writes from MAIL up to (not including) the next NOOP or QUIT."""
    start = next(i for i, w in enumerate(writes) if w.startswith(b"MAIL FROM:"))
    out = []
    for data in writes[start:]:
        if data in (b"NOOP\r\n", b"QUIT\r\n", b"RSET\r\n"):
            break
        out.append(data)
    return out


def test_envelope_and_content_go_in_one_write(path: str, writes: list[bytes]) -> None:
    with ScriptedServer(_server()) as server, _connect(server) as session:
        result = session.sendmail(SENDER, THREE, BODY)
        session.noop()  # the replies are in step
    assert sorted(result.accepted) == sorted(THREE)
    assert result.data_reply is not None and result.data_reply.code == 250
    expected = (
        f"MAIL FROM:<{SENDER}>\r\n".encode()
        + b"".join(f"RCPT TO:<{a}>\r\n".encode() for a in THREE)
        + f"BDAT {len(BODY)} LAST\r\n".encode()
        + BODY
    )
    assert _mail_writes(writes) == [expected]


def test_a_message_over_the_limit_waits_for_the_envelope_replies(
    path: str, writes: list[bytes]
) -> None:
    body = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 900
    assert ONE_TRIP_LIMIT < len(body) <= 128 * 1024
    with ScriptedServer(_server()) as server, _connect(server) as session:
        session.sendmail(SENDER, THREE, body)
    groups = _mail_writes(writes)
    assert len(groups) == 2
    assert groups[0].endswith(f"RCPT TO:<{THREE[-1]}>\r\n".encode())
    assert groups[1] == f"BDAT {len(body)} LAST\r\n".encode() + body


def test_without_pipelining_each_command_waits(path: str, writes: list[bytes]) -> None:
    with (
        ScriptedServer(_server(extensions=("CHUNKING",))) as server,
        _connect(server) as session,
    ):
        session.sendmail(SENDER, THREE, BODY)
    assert len(_mail_writes(writes)) == 1 + len(THREE) + 1


def test_every_recipient_refused_the_chunk_was_read(path: str, writes: list[bytes]) -> None:
    refused = "550 5.1.1 no such user"
    with (
        ScriptedServer(_server(rcpt=lambda _line: refused)) as server,
        _connect(server) as session,
    ):
        with pytest.raises(PermanentRecipientsRefused) as caught:
            session.sendmail(SENDER, THREE, BODY)
        # The 554 to the chunk was read in order: the session goes on in step.
        assert session.noop().code == 250
        assert session.usable
    error = caught.value
    assert not error.outcome_unknown
    assert error.result is not None
    assert sorted(error.result.refused) == sorted(THREE)
    assert {reply.code for reply in error.result.refused.values()} == {550}
    assert not error.result.accepted


def test_one_recipient_refused_the_others_get_the_message(path: str) -> None:
    def rcpt(line: bytes) -> str:
        return "550 5.1.1 no such user" if THREE[1].encode() in line else "250 2.1.5 Ok"

    with ScriptedServer(_server(rcpt=rcpt)) as server, _connect(server) as session:
        result = session.sendmail(SENDER, THREE, BODY)
    assert list(result.refused) == [THREE[1]]
    assert list(result.accepted) == [THREE[0], THREE[2]]
    assert {reply.text for reply in result.recipient_data_replies.values()} == {
        "2.0.0 Ok: queued as ONE"
    }


def test_mail_refused_the_chunk_was_read(path: str) -> None:
    with (
        ScriptedServer(_server(mail="550 5.7.1 sender refused")) as server,
        _connect(server) as session,
    ):
        with pytest.raises(PermanentSenderRefused) as caught:
            session.sendmail(SENDER, THREE, BODY)
        assert session.noop().code == 250
    assert not caught.value.outcome_unknown
    assert caught.value.result is not None
    assert not caught.value.result.accepted


def test_final_refusal_refuses_every_accepted_recipient(path: str) -> None:
    with (
        ScriptedServer(_server(final="554 5.7.1 spam")) as server,
        _connect(server) as session,
    ):
        with pytest.raises(SMTPClientError) as caught:
            session.sendmail(SENDER, THREE, BODY)
        assert session.noop().code == 250
    assert caught.value.result is not None
    assert sorted(caught.value.result.refused) == sorted(THREE)
    assert not caught.value.outcome_unknown


def test_421_in_the_middle_of_the_group_is_an_answer(path: str) -> None:
    def rcpt(line: bytes) -> str:
        return "421 4.3.2 shutting down" if THREE[1].encode() in line else "250 2.1.5 Ok"

    with ScriptedServer(_server(rcpt=rcpt)) as server, _connect(server) as session:
        with pytest.raises(ServiceClosing) as caught:
            session.sendmail(SENDER, THREE, BODY)
        assert not session.usable
    # The server closed before it read the chunk: nothing was taken.
    assert not caught.value.outcome_unknown
    assert caught.value.result is not None
    assert not caught.value.result.accepted


@pytest.mark.parametrize("where", ["after-chunk", "at-rcpt"])
def test_a_lost_connection_after_the_write_is_outcome_unknown(path: str, where: str) -> None:
    if where == "after-chunk":
        handler = _server(final="HANGUP")
    else:
        handler = _server(rcpt=lambda line: "HANGUP" if THREE[2].encode() in line else "250 Ok")
    with ScriptedServer(handler) as server, _connect(server) as session:
        with pytest.raises(ServerDisconnected) as caught:
            session.sendmail(SENDER, THREE, BODY)
        assert not session.usable
    # The content went out with the envelope: the server may have it.
    assert caught.value.outcome_unknown


def test_a_reply_out_of_step_is_never_a_delivery(path: str) -> None:
    # One reply too many (sent with the last one): the stream is out of step,
    # so the "final" reply read may belong to a recipient; the content is
    # out, so the outcome is unknown rather than delivered.
    extra = QUEUED + "\r\n250 2.0.0 extra"
    with ScriptedServer(_server(final=extra)) as server, _connect(server) as session:
        with pytest.raises(ProtocolError) as caught:
            session.sendmail(SENDER, THREE, BODY)
        assert not session.usable
    assert caught.value.outcome_unknown
