"""protocol/state.py's tables, and the Channel that enforces them.

``ANSWERING`` is the one rule "can this reply answer that command" that the
general path, the channel's pipelined reads and the fast path all use;
``TRANSITIONS`` is the only way a session's state changes, and an event the
table does not allow poisons the session (as h11 does).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from smtpclient.errors import IllegalTransition, ProtocolError, SessionClosedError
from smtpclient.protocol.state import (
    ANSWERING,
    TRANSITIONS,
    Event,
    SessionState,
    Stage,
    answers,
    next_state,
)
from smtpclient.session.channel import Channel
from smtpclient.timeouts import Timeouts
from smtpclient.transport import Transport


@pytest.mark.parametrize(
    ("stage", "code", "expected"),
    [
        (Stage.MAIL, 250, True),
        (Stage.MAIL, 451, True),
        (Stage.MAIL, 550, True),
        (Stage.MAIL, 354, False),  # only DATA is answered by 3xx
        (Stage.RCPT, 354, False),
        (Stage.RCPT, 251, True),
        (Stage.DATA_INIT, 354, True),
        (Stage.DATA_INIT, 250, False),  # a 2xx to DATA: a reply out of step
        (Stage.DATA_INIT, 554, True),
        (Stage.DATA_DONE, 250, True),
        (Stage.DATA_DONE, 354, False),
    ],
)
def test_which_replies_answer_which_command(stage: Stage, code: int, expected: bool) -> None:
    assert answers(stage, code) is expected
    assert (code in ANSWERING[stage]) is expected


def test_every_stage_has_an_answer_rule() -> None:
    assert set(ANSWERING) == set(Stage)


def test_final_states_stay_final() -> None:
    for event, table in TRANSITIONS.items():
        if event in (Event.BROKEN, Event.CLOSED):
            continue
        assert SessionState.CLOSED not in table
        assert SessionState.BROKEN not in table
    assert next_state(SessionState.CLOSED, Event.BROKEN) is SessionState.CLOSED
    assert next_state(SessionState.READY, Event.MAIL) is SessionState.IN_TRANSACTION
    assert next_state(SessionState.NEW, Event.MAIL) is None


@pytest.fixture
def channel() -> Iterator[tuple[Channel, socket.socket]]:
    ours, theirs = socket.socketpair()
    chan = Channel(Transport(ours, "peer.test"), host="peer.test", timeouts=Timeouts.uniform(2))
    try:
        yield chan, theirs
    finally:
        chan.close()
        theirs.close()


def test_an_illegal_transition_raises_and_poisons_the_session(
    channel: tuple[Channel, socket.socket],
) -> None:
    chan, _ = channel
    assert chan.state is SessionState.NEW
    with pytest.raises(IllegalTransition, match="mail"):
        chan.transition(Event.MAIL)  # no greeting, no EHLO
    assert chan.state is SessionState.BROKEN
    assert chan.transport.closed
    with pytest.raises(SessionClosedError):
        chan.start_mail(None)


def test_the_transitions_of_a_conversation(channel: tuple[Channel, socket.socket]) -> None:
    chan, _ = channel
    for event, state in [
        (Event.GREETING, SessionState.GREETED),
        (Event.HELLO, SessionState.READY),
        (Event.MAIL, SessionState.IN_TRANSACTION),
        (Event.PIPELINED_MAIL, SessionState.IN_TRANSACTION),
        (Event.EARLIER_DONE, SessionState.IN_TRANSACTION),
        (Event.TRANSACTION_DONE, SessionState.READY),
        (Event.RESET, SessionState.READY),
    ]:
        chan.transition(event)
        assert chan.state is state
    chan.close()
    assert chan.state is SessionState.CLOSED
    chan.abort()  # closed stays closed
    assert chan.state is SessionState.CLOSED


def test_a_pipelined_reply_that_cannot_answer_its_command_closes_the_channel(
    channel: tuple[Channel, socket.socket],
) -> None:
    chan, server = channel
    chan.transition(Event.GREETING)
    chan.transition(Event.HELLO)
    server.sendall(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 not 354\r\n")
    with pytest.raises(ProtocolError, match="cannot answer") as caught:
        chan.read_replies([Stage.MAIL, Stage.RCPT, Stage.DATA_INIT])
    assert caught.value.stage is Stage.DATA_INIT
    assert chan.state is SessionState.BROKEN
    assert chan.transport.closed
