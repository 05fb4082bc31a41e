"""``Session.sendmail``'s fast path for the common message: no options, a
small in-memory body, plain ASCII addresses.

The general path builds an ``Envelope``, a ``Body``, a ``Plan``, a
``Transaction`` and a ``MessageOutcome`` before it builds the
``SendResult``; for a message without options that is most of the Python
work of a send.  Here the same bytes are written straight from the
arguments, by the same rules: the MAIL and RCPT lines from the public
encoders of ``protocol.commands`` (``plain_mail``/``plain_rcpt``, or
``mail`` with ``plan.content_params``), the size rule of
``plan.size_parameter``, each reply checked against its command by the
table of ``protocol.state.answers``, every write, wait and transcript line
through the same ``Channel``; with PIPELINING and CHUNKING the envelope and
the content share one write when ``transaction.one_trip_fits`` says so (the
general path's rule).  While every reply is the usual one (2xx to
MAIL and RCPT, 354 to DATA, 2xx to the end of the content) the result is
built directly.  Anything else is handed to the general path:

* before anything is written, ``sendmail`` returns None for a message it
  does not take (options, a file or iterable, more than one transaction,
  LMTP, non-ASCII or malformed addresses, content that needs a refusal or
  more than one write) and the general path sends it -- or raises its
  error, with nothing sent;
* once the envelope is on the wire, the first unusual reply makes the
  general objects from the same arguments and the general code carries on
  from the replies read (``Transaction.resume``, ``Transaction.take_finals``).

The transcript does not change the path: with ``smtpclient.transcript`` at
DEBUG the same code sends and the channel logs what it writes and reads.
``tests/hostile/test_fast_path.py`` compares both paths byte for byte.
"""

from __future__ import annotations

import functools
import time

from smtpclient.body import BLOCK_SIZE, Body, check_content
from smtpclient.envelope import Envelope
from smtpclient.errors import ServiceClosing, SMTPClientError
from smtpclient.plan import Plan, build_plan
from smtpclient.protocol import commands
from smtpclient.protocol.data import (
    Framing,
    canonical_and_longest,
    encode_complete,
)
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import ANSWERING, Stage
from smtpclient.results import SendResult
from smtpclient.session.channel import Channel
from smtpclient.session.config import SendConfig
from smtpclient.session.outcome import MessageOutcome
from smtpclient.session.plain import plain_addresses, plain_lines
from smtpclient.session.transaction import (
    PIPELINE_WINDOW,
    Transaction,
    one_trip_fits,
    transactions,
)
from smtpclient.session.transcript import bdat_shown, content_shown, group_shown, one_trip_shown
from smtpclient.timeouts import Deadline

__all__ = ["sendmail"]

_MAIL, _RCPT, _DATA_INIT = Stage.MAIL, Stage.RCPT, Stage.DATA_INIT
_DATA_BLOCK, _DATA_DONE = Stage.DATA_BLOCK, Stage.DATA_DONE
_ANSWERS_MAIL, _ANSWERS_RCPT = ANSWERING[_MAIL], ANSWERING[_RCPT]
_ANSWERS_DATA = ANSWERING[_DATA_INIT]
_GROUP_SHOWN = functools.partial(group_shown, 0)


def sendmail(
    channel: Channel, config: SendConfig, sender: str, recipients: object, data: bytes
) -> SendResult | None:
    """Send a message without options (see the module docstring), or return
    None, having written nothing, when the general path must send it.

    Raises: as ``Session.sendmail``.
    """
    # --- what the general path's Envelope.build and build_plan would check
    addresses = plain_addresses(sender, recipients)
    if addresses is None:
        return None
    count = len(addresses)
    if count > config.max_recipients or config.lmtp:
        return None
    pipelined = config.pipelined
    if pipelined and count + 2 > PIPELINE_WINDOW:
        return None
    if len(data) > BLOCK_SIZE:
        return None
    check_content(data)  # NUL, header line ends: refused before anything is written
    canonical, longest = canonical_and_longest(data)
    if len(canonical) > BLOCK_SIZE:
        return None
    lines = plain_lines(config, sender, addresses, canonical, longest)
    if lines is None:
        return None
    mail, rcpts = lines
    with_data = not config.chunked
    if with_data:
        content = encode_complete(canonical, Framing.DATA)
    else:
        content = encode_complete(canonical, Framing.BDAT)
        if one_trip_fits(config, count, len(content)):
            content = commands.bdat(len(content), last=True) + content
            channel.start_mail(channel.timeouts.total)
            try:
                return _send_in_one_trip(
                    channel, config, sender, addresses, data, mail, rcpts, content
                )
            finally:
                channel.total = None
                channel.last_used = time.monotonic()
        content = commands.bdat(len(content), last=True) + content
    # The unsolicited-data check raises here, before the result is known.
    channel.start_mail(channel.timeouts.total, expect_silence=True)
    try:
        return _send(
            channel, config, sender, addresses, data, mail, rcpts, content, pipelined, with_data
        )
    finally:
        channel.total = None
        channel.last_used = time.monotonic()


def _send(
    channel: Channel,
    config: SendConfig,
    sender: str,
    addresses: list[str],
    data: bytes,
    mail: bytes,
    rcpts: list[bytes],
    content: bytes,
    pipelined: bool,
    with_data: bool,
) -> SendResult:
    replies: list[Reply] = []
    try:
        if pipelined:
            # MAIL, every RCPT and DATA as one group in one write.
            count = len(rcpts)
            rcpts.insert(0, mail)
            stages = [_MAIL, *([_RCPT] * count)]
            if with_data:
                rcpts.append(b"DATA\r\n")
                stages.append(_DATA_INIT)
            total = channel.total
            channel.open_transaction(
                b"".join(rcpts), Deadline(channel.timeouts.mail, _MAIL, total), _GROUP_SHOWN
            )
            replies = channel.read_replies(stages)
            usual = True
            for reply in replies[: count + 1]:  # a loop, not all(): no call
                if not 200 <= reply.code < 300:
                    usual = False
                    break
            if with_data and replies[-1].code != 354:
                usual = False
            if usual:
                channel.expect_silence(_DATA_INIT if with_data else _RCPT)
        else:
            usual = _open_stepwise(channel, mail, rcpts, replies, with_data)
        if usual:
            # Every recipient accepted: the content, then its final reply.
            timeouts = channel.timeouts
            channel.send(
                content,
                Deadline(timeouts.data_block, _DATA_BLOCK, channel.total),
                content_shown if with_data else bdat_shown,
            )
            try:
                final = channel.read_final()
            except ServiceClosing:
                raise  # a 421 is an answer: the message was not taken
            except SMTPClientError as exc:
                exc.outcome_unknown = True
                raise
    except SMTPClientError as exc:
        # As the general path reports it: no recipient's outcome known yet.
        exc.result = _result(config, sender, addresses, {}, (), {})
        raise
    if not usual:
        return _hand_over(channel, config, sender, addresses, data, replies)
    if not 200 <= final.code < 300:
        return _hand_over(channel, config, sender, addresses, data, replies, final)
    accepted = dict(zip(addresses, replies[1:], strict=False))
    return _result(config, sender, addresses, accepted, (final,), dict.fromkeys(accepted, final))


def _send_in_one_trip(
    channel: Channel,
    config: SendConfig,
    sender: str,
    addresses: list[str],
    data: bytes,
    mail: bytes,
    rcpts: list[bytes],
    content: bytes,
) -> SendResult:
    """``Transaction.send_in_one_trip`` for the plain message: MAIL, every
    RCPT and ``BDAT <n> LAST`` with the content in one write."""
    channel.expect_silence(_MAIL)  # raises: the reply stream is out of step
    count = len(rcpts)
    rcpts.insert(0, mail)
    envelope = b"".join(rcpts)
    stages = [_MAIL, *([_RCPT] * count), _DATA_DONE]
    try:
        channel.open_transaction(
            envelope + content,
            Deadline(channel.timeouts.mail, _MAIL, channel.total),
            functools.partial(one_trip_shown, len(envelope)),
        )
        replies = channel.read_replies(stages)
        channel.expect_silence(_DATA_DONE)  # a reply out of step: outcome unknown
    except SMTPClientError as exc:
        if not isinstance(exc, ServiceClosing):  # a 421 is an answer: nothing taken
            exc.outcome_unknown = True
        exc.result = _result(config, sender, addresses, {}, (), {})
        raise
    final = replies[-1]
    usual = 200 <= final.code < 300
    for reply in replies[:-1]:  # a loop, not all(): no call
        if not 200 <= reply.code < 300:
            usual = False
            break
    if not usual:
        plan, outcome = _general(config, sender, addresses, data)
        transactions(channel, config, plan, outcome, read_one_trip=replies)
        return outcome.finish()
    channel.transaction_done()
    accepted = dict(zip(addresses, replies[1:-1], strict=False))
    return _result(config, sender, addresses, accepted, (final,), dict.fromkeys(accepted, final))


def _open_stepwise(
    channel: Channel, mail: bytes, rcpts: list[bytes], replies: list[Reply], with_data: bool
) -> bool:
    """MAIL, each RCPT and DATA one at a time (no PIPELINING), each after
    the unsolicited-data check, until a reply is not the usual one.  True
    when none was."""
    timeouts, total = channel.timeouts, channel.total
    channel.open_transaction(mail, Deadline(timeouts.mail, _MAIL, total))
    reply = channel.next_reply(Deadline(timeouts.mail, _MAIL, total))
    if reply.code not in _ANSWERS_MAIL:
        raise channel.mismatch(reply, _MAIL)
    replies.append(reply)
    if not 200 <= reply.code < 300:
        return False
    for line in rcpts:
        channel.expect_silence(_RCPT)
        channel.send(line, Deadline(timeouts.rcpt, _RCPT, total))
        reply = channel.next_reply(Deadline(timeouts.rcpt, _RCPT, total))
        if reply.code not in _ANSWERS_RCPT:
            raise channel.mismatch(reply, _RCPT)
        replies.append(reply)
        if not 200 <= reply.code < 300:
            return False
    if with_data:
        channel.expect_silence(_DATA_INIT)
        channel.send(b"DATA\r\n", Deadline(timeouts.data_init, _DATA_INIT, total))
        reply = channel.next_reply(Deadline(timeouts.data_init, _DATA_INIT, total))
        if reply.code not in _ANSWERS_DATA:
            raise channel.mismatch(reply, _DATA_INIT)
        replies.append(reply)
        if reply.code != 354:
            return False
    channel.expect_silence(_DATA_INIT if with_data else _RCPT)
    return True


def _result(
    config: SendConfig,
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
        config.host,
        config.address,
        config.tls,
    )


def _general(
    config: SendConfig, sender: str, addresses: list[str], data: bytes
) -> tuple[Plan, MessageOutcome]:
    """The general path's plan and outcome for the same arguments."""
    envelope = Envelope.build(sender, addresses)
    plan = build_plan(
        envelope, Body(data), config.extensions, config.tls, use_chunking=config.use_chunking
    )
    return plan, MessageOutcome(config, plan)


def _hand_over(
    channel: Channel,
    config: SendConfig,
    sender: str,
    addresses: list[str],
    data: bytes,
    replies: list[Reply],
    final: Reply | None = None,
) -> SendResult:
    """Carry on with the general path's objects from where the fast path
    stands: after the envelope *replies* read so far, or (with *final*)
    after every recipient was accepted and the content got *final*."""
    plan, outcome = _general(config, sender, addresses, data)
    if final is None:
        transactions(channel, config, plan, outcome, replies)
    else:
        tx = Transaction(channel, config, plan, plan.rcpt_lines)
        tx.accepted = dict(zip(addresses, replies[1:], strict=False))
        tx.take_finals([final])
        outcome.add(tx)
    return outcome.finish()
