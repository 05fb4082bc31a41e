"""``send_many`` on one session: one outcome per message, pipelined across messages.

With PIPELINING the end of one message's content travels in the same write
as the next message's envelope, so a batch costs about one round trip per
message; each message still gets its own outcome.  Once the connection
fails, the messages it never reached get ``NotSentError`` (safe to send
again), and a message whose end was on the wire when it failed is marked
outcome-unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from email.message import Message
from typing import TYPE_CHECKING

from smtpclient.body import Body
from smtpclient.envelope import Envelope
from smtpclient.errors import NotSentError, ServerDisconnected, SMTPClientError
from smtpclient.message import prepare_message
from smtpclient.plan import Plan, build_plan
from smtpclient.protocol.data import Framing
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult
from smtpclient.session.config import SendConfig
from smtpclient.session.outcome import MessageOutcome
from smtpclient.session.plain import plain_plan
from smtpclient.session.transaction import PIPELINE_WINDOW, Transaction, transactions
from smtpclient.session.transcript import bdat_shown, content_shown

if TYPE_CHECKING:
    from smtpclient.body import BodySource
    from smtpclient.session.channel import Channel

__all__ = ["send_batch"]


def _plan_item(
    config: SendConfig, item: Message | tuple[str, Sequence[str] | str, BodySource]
) -> Plan:
    if isinstance(item, Message):
        envelope, body = prepare_message(item, config.extensions)
    elif isinstance(item, tuple) and len(item) == 3:
        sender, recipients, data = item
        # The plain message (no options, small bytes): the fast path's rules.
        plain = plain_plan(config, sender, recipients, data)
        if plain is not None:
            return plain
        envelope, body = Envelope.build(sender, recipients), Body(data)
    else:
        raise TypeError("send_many() items are Messages or (sender, recipients, data) tuples")
    return build_plan(
        envelope, body, config.extensions, config.tls, use_chunking=config.use_chunking
    )


class _Held:
    """A message whose last piece of content waits to ride with the next envelope."""

    def __init__(
        self, index: int, tx: Transaction, outcome: MessageOutcome, tail: bytes, data: bool
    ) -> None:
        self.index, self.tx, self.outcome, self.tail = index, tx, outcome, tail
        self.shown = content_shown if data else bdat_shown  # for the transcript


def send_batch(
    channel: Channel,
    config: SendConfig,
    items: list[Message | tuple[str, Sequence[str] | str, BodySource]],
) -> list[SendResult | Exception]:
    """Send *items* in order on *channel*; one outcome per item."""
    outcomes: list[SendResult | Exception | None] = [None] * len(items)
    held: _Held | None = None
    lost: Exception | None = None
    pipelined = config.pipelined
    ahead: tuple[int, Plan | Exception] | None = None  # the next item, planned early
    concluding: _Held | None = None  # final reply read, result not built yet

    def plan_for(index: int) -> Plan:
        nonlocal ahead
        if ahead is not None and ahead[0] == index:
            planned, ahead = ahead[1], None
            if isinstance(planned, Exception):
                raise planned
            return planned
        return _plan_item(config, items[index])

    def settle_and_plan(index: int) -> None:
        """Right after a group is written, while the server works on it
        (neither needs anything from it): build the previous message's
        result and plan the next item; then read the held message's final
        reply."""
        nonlocal ahead
        conclude()
        if index < len(items) and lost is None:
            try:
                ahead = (index, _plan_item(config, items[index]))
            except (ValueError, TypeError, SMTPClientError) as exc:
                ahead = (index, exc)
        settle(defer=True, overtaken=True)

    def settle(defer: bool = False, overtaken: bool = False) -> None:
        """Read the final reply of the held message (its tail is on the
        wire); with *defer*, its result is built after the next write;
        *overtaken*: the next envelope went out with that tail."""
        nonlocal held, concluding
        current, held = held, None
        if current is None:
            return
        try:
            current.tx.read_finals(overtaken=overtaken)
        except SMTPClientError as exc:
            outcomes[current.index] = exc
            if not channel.usable:
                raise
            return
        conclude()
        concluding = current
        if not defer:
            conclude()

    def conclude() -> None:
        """Build the result of the message whose final reply was read last."""
        nonlocal concluding
        current, concluding = concluding, None
        if current is None:
            return
        try:
            current.outcome.add(current.tx)
            outcomes[current.index] = current.outcome.finish()
        except SMTPClientError as exc:  # a refusal: the session is unaffected
            outcomes[current.index] = exc

    def flush() -> None:
        if held is not None:
            channel.write(held.tail, Stage.DATA_BLOCK, shown=held.shown)
            settle()

    for index in range(len(items)):
        if lost is not None:
            outcomes[index] = _not_sent(channel, lost)
            continue
        try:
            plan = plan_for(index)
        except (ValueError, TypeError, SMTPClientError) as exc:
            outcomes[index] = exc
            continue
        try:
            one_group = min(config.max_recipients, PIPELINE_WINDOW - 2)
            if not pipelined or len(plan.rcpt_lines) > one_group:
                flush()
                outcome = MessageOutcome(config, plan)
                transactions(channel, config, plan, outcome)
                outcomes[index] = outcome.finish()
                continue
            if held is None:
                channel.check_unsolicited(Stage.MAIL)
            outcome = MessageOutcome(config, plan)
            tx = Transaction(channel, config, plan, plan.rcpt_lines)
            prefix = held.tail if held is not None else b""
            if tx.open(prefix, functools.partial(settle_and_plan, index + 1)):
                tail = tx.send_content(hold=True)
                if tail is not None:
                    held = _Held(index, tx, outcome, tail, plan.framing is Framing.DATA)
                    continue
            outcome.add(tx)
            outcomes[index] = outcome.finish()
        except SMTPClientError as exc:
            if held is not None and outcomes[held.index] is None:
                # The held tail went out with a write that failed part-way:
                # the server may or may not have the end of that message.
                outcomes[held.index] = ServerDisconnected(
                    f"connection lost after the end of the message was sent ({exc})",
                    host=channel.host,
                    outcome_unknown=True,
                )
                held = None
            if outcomes[index] is None:
                # Not the error of an earlier message that surfaced here.
                mine = all(other is not exc for other in outcomes)
                outcomes[index] = exc if mine else _not_sent(channel, exc)
            if not channel.usable:
                lost = exc
        except (ValueError, TypeError, OSError) as exc:
            # The caller's content failed while it was being sent (an
            # iterator yielding str, a file read error): the session was
            # closed rather than finish a half message.
            if held is not None and outcomes[held.index] is None:
                outcomes[held.index] = ServerDisconnected(
                    "connection closed after the end of the message was sent "
                    f"(the next message's content failed: {exc})",
                    host=channel.host,
                    outcome_unknown=True,
                )
                held = None
            outcomes[index] = exc
            if not channel.usable:
                lost = exc
    if lost is None and held is not None:
        try:
            flush()
        except SMTPClientError as exc:
            if held is not None and outcomes[held.index] is None:
                outcomes[held.index] = exc
    conclude()
    return [o if o is not None else _not_sent(channel, lost) for o in outcomes]


def _not_sent(channel: Channel, cause: Exception | None) -> SMTPClientError:
    reason = f" ({cause})" if cause is not None else ""
    return NotSentError(
        f"not sent: the connection failed before this message{reason}", host=channel.host
    )
