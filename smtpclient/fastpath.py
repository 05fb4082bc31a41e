"""``Session.sendmail``'s fast path for the common message: no options, a
small in-memory body, plain ASCII addresses.

The general path builds an ``Envelope``, a ``Body``, a ``Plan``, a
``Transaction`` and a ``MessageOutcome`` before it builds the
``SendResult``; for a message without options that is most of the Python
work of a send.  Here the same checks are made and the same bytes written
straight from the arguments, and while every reply is the usual one
(2xx to MAIL and RCPT, 354 to DATA, 2xx to the end of the content) the
result is built directly.  Anything else is handed to the general path:

* before anything is written, ``sendmail`` returns None for a message it
  does not take (options, a file or iterable, more than one transaction,
  LMTP, non-ASCII or malformed addresses, content that needs a refusal or
  more than one write, the transcript switched on) and the general path
  sends it -- or raises its error, with nothing sent;
* once the envelope is on the wire, the first unusual reply makes the
  general objects from the same arguments and the general code carries on
  from the replies read (``Transaction.resume``, ``Transaction.take_finals``).

The wire is the same either way: the same groups in the same writes, each
reply checked against its command, every wait bounded by its stage's
deadline over the whole reply (and by the send's total, with the floor
after the final "."), the unsolicited-data check before each command group.
``tests/hostile/test_fast_path.py`` compares both paths byte for byte.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from smtpclient.body import BLOCK_SIZE, Body, check_content
from smtpclient.envelope import Envelope
from smtpclient.errors import InvalidAddressError, ServiceClosing, SMTPClientError
from smtpclient.outcome import MessageOutcome
from smtpclient.plan import build_plan
from smtpclient.protocol import commands
from smtpclient.protocol.data import (
    MAX_LINE_LENGTH,
    Framing,
    canonical_and_longest,
    encode_complete,
)
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import SessionState, Stage, check_allowed
from smtpclient.results import SendResult
from smtpclient.timeouts import Deadline
from smtpclient.transaction import PIPELINE_WINDOW, Transaction, mismatch, transactions

if TYPE_CHECKING:
    from smtpclient.session import Session

__all__ = ["Features", "sendmail"]

transcript = logging.getLogger("smtpclient.transcript")

_READY = SessionState.READY
_MAIL, _RCPT, _DATA_INIT = Stage.MAIL, Stage.RCPT, Stage.DATA_INIT
_DATA_BLOCK, _DATA_DONE = Stage.DATA_BLOCK, Stage.DATA_DONE


class Features:
    """What the fast path asks of one ``Extensions`` (typed properties are
    calls): worked out once per EHLO and kept on the session."""

    __slots__ = ("chunking", "eightbitmime", "extensions", "max_size", "pipelining", "size")

    def __init__(self, extensions: Extensions) -> None:
        self.extensions = extensions
        self.pipelining = extensions.pipelining
        self.chunking = extensions.chunking
        self.eightbitmime = extensions.eightbitmime
        self.size = "SIZE" in extensions
        self.max_size = extensions.max_size


def sendmail(session: Session, sender: str, recipients: object, data: bytes) -> SendResult | None:
    """Send a message without options (see the module docstring), or return
    None, having written nothing, when the general path must send it.

    Raises: as ``Session.sendmail``.
    """
    # --- what the general path's Envelope.build and build_plan would check
    if type(sender) is not str or not sender.isascii():
        return None
    if type(recipients) is str:
        addresses: list[str] = [recipients]
    elif type(recipients) is list or type(recipients) is tuple:
        addresses = list(recipients)
    else:
        return None
    count = len(addresses)
    if not count or count > session.max_recipients or session.lmtp:
        return None
    features = session._fast_features
    if features is None or features.extensions is not session.extensions:
        features = session._fast_features = Features(session.extensions)
    pipelined = session.use_pipelining and features.pipelining
    if (pipelined and count + 2 > PIPELINE_WINDOW) or transcript.isEnabledFor(logging.DEBUG):
        return None
    if len(data) > BLOCK_SIZE:
        return None
    check_content(data)  # NUL, header line ends: refused before anything is written
    canonical, longest = canonical_and_longest(data)
    if longest > MAX_LINE_LENGTH or len(canonical) > BLOCK_SIZE:
        return None
    eight_bit = not canonical.isascii()
    if eight_bit and not features.eightbitmime:
        return None
    size = len(canonical) + (0 if not canonical or canonical.endswith(b"\r\n") else 2)
    if features.max_size is not None and size > features.max_size:
        return None
    try:
        # The cached encoders of the general path: the same checks, the same bytes.
        mail = commands._plain_mail(sender, False)
        rcpts = []
        for address in addresses:
            if type(address) is not str or not address.isascii():
                return None
            rcpts.append(commands._plain_rcpt(address, False))
    except InvalidAddressError:
        return None
    if eight_bit or features.size:
        # build_plan's parameters, in its order: BODY, then SIZE.
        mail = b"".join(
            (
                mail[:-2],
                b" BODY=8BITMIME" if eight_bit else b"",
                b" SIZE=%d" % size if features.size else b"",
                b"\r\n",
            )
        )
    with_data = not (session.use_chunking and features.chunking)
    if with_data:
        content = encode_complete(canonical, Framing.DATA)
    else:
        content = encode_complete(canonical, Framing.BDAT)
        content = commands.bdat(len(content), last=True) + content
    # --- Session._run's part
    if session._state is not _READY:
        check_allowed("mail", session._state)
    total = session.timeouts.total
    session._total = Deadline(total, _MAIL) if total else None
    try:
        return _send(session, sender, addresses, data, mail, rcpts, content, pipelined, with_data)
    finally:
        session._total = None
        session.last_used = time.monotonic()


def _send(
    session: Session,
    sender: str,
    addresses: list[str],
    data: bytes,
    mail: bytes,
    rcpts: list[bytes],
    content: bytes,
    pipelined: bool,
    with_data: bool,
) -> SendResult:
    if session._parser.buffered or session._transport.readable():
        session._check_unsolicited(_MAIL)  # raises: the reply stream is out of step
    session._state = SessionState.IN_TRANSACTION
    replies: list[Reply] = []
    try:
        if pipelined:
            usual = _open_group(session, mail, rcpts, replies, with_data)
        else:
            usual = _open_stepwise(session, mail, rcpts, replies, with_data)
        if usual:
            # Every recipient accepted: the content, then its final reply.
            timeouts = session.timeouts
            _write(session, content, Deadline(timeouts.data_block, _DATA_BLOCK, session._total))
            try:
                final = _next(session, session._deadline(_DATA_DONE))
            except ServiceClosing:
                raise  # a 421 is an answer: the message was not taken
            except SMTPClientError as exc:
                exc.outcome_unknown = True
                raise
    except SMTPClientError as exc:
        # As the general path reports it: no recipient's outcome known yet.
        exc.result = _result(session, sender, addresses, {}, (), {})
        raise
    if not usual:
        return _hand_over(session, sender, addresses, data, replies)
    if not 200 <= final.code < 300:
        return _hand_over(session, sender, addresses, data, replies, final)
    session._state = _READY
    session.messages_sent += 1
    accepted = dict(zip(addresses, replies[1:], strict=False))
    return _result(session, sender, addresses, accepted, (final,), dict.fromkeys(accepted, final))


def _open_group(
    session: Session, mail: bytes, rcpts: list[bytes], replies: list[Reply], with_data: bool
) -> bool:
    """MAIL, every RCPT and DATA as one group in one write; the replies are
    read into *replies* as they come, each checked against its command.
    True when all are the usual ones."""
    parser, timeouts, total = session._parser, session.timeouts, session._total
    count = len(rcpts)
    rcpts.insert(0, mail)
    if with_data:
        rcpts.append(b"DATA\r\n")
    _write(session, b"".join(rcpts), Deadline(timeouts.mail, _MAIL, total))
    wanted = count + 1 + with_data
    deadline = None  # the wait for the next reply, once it has started
    while len(replies) < wanted:
        index = len(replies)
        stage = _MAIL if index == 0 else _RCPT if index <= count else _DATA_INIT
        if parser.buffered:
            ready = parser.take(wanted - index)
            if not ready:
                # Something take() leaves to the careful reader: an
                # unfinished line, a multi-line reply, a 421.
                ready = [session._read(stage, deadline)]
            deadline = None
            for reply in ready:
                code = reply.code
                if index > count:
                    if code < 400 and code != 354:
                        raise mismatch(session, reply, _DATA_INIT)
                elif 300 <= code < 400:
                    raise mismatch(session, reply, _MAIL if index == 0 else _RCPT)
                index += 1
            replies += ready
            continue
        if deadline is None:
            seconds = (
                timeouts.mail
                if index == 0
                else timeouts.rcpt
                if index <= count
                else timeouts.data_init
            )
            deadline = Deadline(seconds, stage, total)
        _receive(session, deadline)
    for reply in replies[: count + 1]:
        if not 200 <= reply.code < 300:
            return False
    if with_data and replies[-1].code != 354:
        return False
    _expect_silence(session, _DATA_INIT if with_data else _RCPT)
    return True


def _open_stepwise(
    session: Session, mail: bytes, rcpts: list[bytes], replies: list[Reply], with_data: bool
) -> bool:
    """MAIL, each RCPT and DATA one at a time (no PIPELINING), each after
    the unsolicited-data check (the caller made the first), until a reply
    is not the usual one.  True when none was."""
    timeouts, total = session.timeouts, session._total
    _write(session, mail, Deadline(timeouts.mail, _MAIL, total))
    reply = _next(session, Deadline(timeouts.mail, _MAIL, total))
    if 300 <= reply.code < 400:
        raise mismatch(session, reply, _MAIL)
    replies.append(reply)
    if not 200 <= reply.code < 300:
        return False
    for line in rcpts:
        _expect_silence(session, _RCPT)
        _write(session, line, Deadline(timeouts.rcpt, _RCPT, total))
        reply = _next(session, Deadline(timeouts.rcpt, _RCPT, total))
        if 300 <= reply.code < 400:
            raise mismatch(session, reply, _RCPT)
        replies.append(reply)
        if not 200 <= reply.code < 300:
            return False
    if with_data:
        _expect_silence(session, _DATA_INIT)
        _write(session, b"DATA\r\n", Deadline(timeouts.data_init, _DATA_INIT, total))
        reply = _next(session, Deadline(timeouts.data_init, _DATA_INIT, total))
        if reply.code < 400 and reply.code != 354:
            raise mismatch(session, reply, _DATA_INIT)
        replies.append(reply)
        if reply.code != 354:
            return False
    _expect_silence(session, _DATA_INIT if with_data else _RCPT)
    return True


def _expect_silence(session: Session, stage: Stage) -> None:
    """``Wire._check_unsolicited`` at the cost of one poll when all is quiet."""
    if session._parser.buffered or session._transport.readable():
        session._check_unsolicited(stage)


def _write(session: Session, data: bytes, deadline: Deadline) -> None:
    """``Wire._write`` with the transcript off (the fast path runs only then)."""
    try:
        session._transport.sendall(data, deadline)
    except SMTPClientError as exc:
        raise session._broken(exc, deadline.stage) from exc.__cause__


def _receive(session: Session, deadline: Deadline) -> None:
    """One read into the reply parser, within *deadline* (``Wire._read``'s wait)."""
    try:
        session._parser.feed(session._transport.recv(deadline))
    except SMTPClientError as exc:
        raise session._broken(exc, deadline.stage) from exc.__cause__


def _next(session: Session, deadline: Deadline) -> Reply:
    """The next reply within *deadline*: a one-line reply at the cost of one
    read; anything else (a 421 included) through ``Wire._read``."""
    parser = session._parser
    if not parser.buffered:
        _receive(session, deadline)
    ready = parser.take(1)
    return ready[0] if ready else session._read(deadline.stage, deadline)


def _result(
    session: Session,
    sender: str,
    addresses: list[str],
    accepted: dict[str, Reply],
    data_replies: tuple[Reply, ...],
    final: dict[str, Reply],
) -> SendResult:
    return SendResult(
        sender,
        tuple(addresses),
        accepted,
        {},
        data_replies,
        final,
        session.host,
        session._transport.peer,
        session.tls,
    )


def _hand_over(
    session: Session,
    sender: str,
    addresses: list[str],
    data: bytes,
    replies: list[Reply],
    final: Reply | None = None,
) -> SendResult:
    """Carry on with the general path's objects from where the fast path
    stands: after the envelope *replies* read so far, or (with *final*)
    after every recipient was accepted and the content got *final*."""
    envelope = Envelope.build(sender, addresses)
    plan = build_plan(
        envelope, Body(data), session.extensions, session.tls, use_chunking=session.use_chunking
    )
    outcome = MessageOutcome(session, plan)
    if final is None:
        transactions(session, plan, outcome, replies)
    else:
        tx = Transaction(session, plan, plan.rcpt_lines)
        tx.accepted = dict(zip(addresses, replies[1:], strict=False))
        tx.take_finals([final])
        outcome.add(tx)
    return outcome.finish()
