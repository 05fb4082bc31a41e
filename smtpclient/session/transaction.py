"""Mail transactions on the wire: MAIL, RCPT, DATA or BDAT, with pipelining.

With PIPELINING (RFC 2920) the envelope goes out as one group -- MAIL, every
RCPT and, for DATA framing, DATA -- and the replies are read back in order,
each checked against the command it answers (a reply that cannot belong to
its command is a ``ProtocolError``, never a shifted result).  Groups are
bounded (``PIPELINE_WINDOW`` commands) so that a server that stops reading
while its replies pile up cannot deadlock us: the replies to one window
always fit in the socket buffers.

With PIPELINING and CHUNKING (RFC 3030 lets BDAT be pipelined) a message of
at most ``ONE_TRIP_LIMIT`` octets goes out as MAIL, every RCPT and
``BDAT <n> LAST`` with its content in one write: one round trip per message
(``Transaction.send_in_one_trip``).  The server reads the chunk even when
it refused MAIL or every recipient (RFC 3030 §2; Postfix answers 503 or
554 5.5.1 after reading it), so the replies stay in step; once that write
is out, an error other than a 421 leaves the outcome unknown.

More than ``SendConfig.max_recipients`` recipients (default ``MAX_RECIPIENTS``),
or a 452 "too many recipients" (RFC 5321 §4.5.3.1.10), start a further
transaction for the rest.

Everything here works on a ``Channel`` and a ``SendConfig``, never on a
``Session``.  The content itself is streamed by ``content.ContentSender``;
a message's transactions add up in ``outcome.MessageOutcome``;
``batch.send_batch`` pipelines across messages.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable

from smtpclient.body import Body
from smtpclient.envelope import Envelope
from smtpclient.errors import SenderRefused, ServiceClosing, SMTPClientError
from smtpclient.options import DEFAULT_MAX_RECIPIENTS
from smtpclient.plan import Plan, build_plan
from smtpclient.protocol import commands
from smtpclient.protocol.data import Framing, encode_complete
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import ANSWERING, Event, Stage
from smtpclient.results import SendResult
from smtpclient.session.channel import Channel
from smtpclient.session.config import SendConfig
from smtpclient.session.content import ContentSender
from smtpclient.session.outcome import MessageOutcome
from smtpclient.session.transcript import group_shown, one_trip_shown

__all__ = [
    "MAX_RECIPIENTS",
    "ONE_TRIP_LIMIT",
    "PIPELINE_WINDOW",
    "Transaction",
    "one_trip_fits",
    "send_one",
    "transactions",
]

PIPELINE_WINDOW = 100  # commands in flight before their replies are read
MAX_RECIPIENTS = DEFAULT_MAX_RECIPIENTS  # default per transaction (RFC 5321 §4.5.3.1.8)

# The largest encoded content sent in the same write as its envelope.  A
# refused message costs this much wasted transfer; past it the content's own
# transfer time dwarfs the round trip saved (64 KiB take 5 ms at 100 Mbit/s).
# It also fits the receive window a Linux peer offers a new connection (64
# KiB), so the write completes without waiting for the server to read.
ONE_TRIP_LIMIT = 64 * 1024

_group_shown = functools.partial(group_shown, 0)


def one_trip_fits(config: SendConfig, recipients: int, size: int) -> bool:
    """True when a message of *size* encoded octets to *recipients* goes out
    in one write with its envelope (``Transaction.send_in_one_trip``): the
    rule the general path and the fast path share."""
    return (
        config.chunked
        and config.pipelined
        and not config.lmtp
        and recipients + 2 <= PIPELINE_WINDOW
        and size <= ONE_TRIP_LIMIT
    )


class Transaction(ContentSender):
    """One MAIL transaction for a batch of recipients."""

    def __init__(
        self, channel: Channel, config: SendConfig, plan: Plan, batch: list[tuple[str, bytes]]
    ) -> None:
        self.channel = channel
        self.config = config
        self.plan = plan
        self.batch = batch
        self.accepted: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.deferred: list[tuple[str, bytes]] = []
        self.final: dict[str, Reply] = {}
        self.data_reply: Reply | None = None
        self.failure: SMTPClientError | None = None  # MAIL or data refused
        self._outstanding = 0  # BDAT replies not read yet

    # --- envelope ------------------------------------------------------------------

    def _check(self, reply: Reply, stage: Stage) -> Reply:
        """A reply that cannot answer *stage*'s command means the stream is out of step."""
        if reply.code not in ANSWERING[stage]:
            raise self.channel.mismatch(reply, stage)
        return reply

    def open(self, prefix: bytes = b"", after_write: Callable[[], None] | None = None) -> bool:
        """Send MAIL, the RCPTs and (DATA framing) DATA; return True if content may follow."""
        channel = self.channel
        with_data = self.plan.framing is Framing.DATA
        pipelined = self.config.pipelined
        if pipelined and len(self.batch) + 2 <= PIPELINE_WINDOW:
            # The usual case: the whole envelope is one group, one write.
            return self._open_one_group(prefix, after_write, with_data)
        channel.transition(Event.PIPELINED_MAIL if prefix else Event.MAIL)
        if not pipelined:
            if prefix or after_write is not None:
                raise RuntimeError("cross-message pipelining needs PIPELINING")
            return self.resume([])
        # More commands than one window: a group per window.
        lines = [self.plan.mail_line] + [line for _, line in self.batch]
        stages = [Stage.MAIL] + [Stage.RCPT] * len(self.batch)
        if with_data:
            lines.append(commands.data())
            stages.append(Stage.DATA_INIT)
        replies: list[Reply] = []
        start = 0
        while start < len(lines):
            window = lines[start : start + PIPELINE_WINDOW]
            head = prefix if start == 0 else b""
            channel.write(
                head + b"".join(window),
                stages[start],
                shown=functools.partial(group_shown, len(head)) if head else _group_shown,
            )
            if start == 0 and after_write is not None:
                after_write()
            replies += channel.read_replies(stages[start : start + len(window)])
            start += len(window)
            if not 200 <= replies[0].code < 300:
                break
        self._expect_silence(stages[len(replies) - 1])
        return self._judge(replies, with_data)

    def one_trip_content(self) -> bytes | None:
        """``BDAT <n> LAST`` with the whole content, when this transaction
        goes out in one write with it (``one_trip_fits``); else None."""
        plan = self.plan
        if plan.framing is not Framing.BDAT:
            return None
        canonical = plan.body.canonical
        # Encoding adds at most a final CRLF: decide before encoding.
        if canonical is None or not one_trip_fits(self.config, len(self.batch), len(canonical)):
            return None
        content = encode_complete(canonical, Framing.BDAT)
        if len(content) > ONE_TRIP_LIMIT:
            return None
        return commands.bdat(len(content), last=True) + content

    def send_in_one_trip(self, content: bytes) -> None:
        """MAIL, every RCPT and *content* (``one_trip_content``) in one
        write; then every reply, in order, and the outcome (``finish_one_trip``).

        Raises: the errors of the wire; except for a 421 (an answer: the
        server took nothing) they are outcome-unknown, the content being out.
        """
        channel = self.channel
        group = [self.plan.mail_line]
        for _, line in self.batch:
            group.append(line)
        envelope = b"".join(group)
        stages = [Stage.MAIL, *([Stage.RCPT] * len(self.batch)), Stage.DATA_DONE]
        channel.transition(Event.MAIL)
        try:
            channel.write(
                envelope + content,
                Stage.MAIL,
                shown=functools.partial(one_trip_shown, len(envelope)),
            )
            replies = channel.read_replies(stages)
            # A reply out of step would pair a recipient's reply with the
            # content: whatever else arrived makes the outcome unknown.
            self._expect_silence(Stage.DATA_DONE)
        except ServiceClosing:
            raise  # a 421 is an answer: the message was not taken
        except SMTPClientError as exc:
            exc.outcome_unknown = True
            raise
        self.finish_one_trip(replies)

    def finish_one_trip(self, replies: list[Reply]) -> None:
        """Judge the replies to a ``send_in_one_trip`` group: MAIL's, one
        per RCPT and the final one (read by the general path or by the fast
        path, which hands over here on any unusual reply).  The content was
        read by the server whatever it said: nothing more is sent unless
        the transaction needs a reset."""
        final = replies.pop()
        if self._judge(replies, False):
            self.channel.transaction_done()
            self.take_finals([final])

    def resume(self, replies: list[Reply]) -> bool:
        """Ask, one command at a time, what is left of MAIL, the RCPTs and
        (DATA framing) DATA after *replies* (those already read, in order),
        then judge them all; True if content may follow.

        Without PIPELINING this is all of ``open``; the plain-message fast
        path (``fastpath``) hands over here, with the replies it read, as
        soon as one is not the usual one.
        """
        batch = self.batch
        count = len(batch)
        with_data = self.plan.framing is Framing.DATA
        if not replies:
            replies.append(self._ask(self.plan.mail_line, Stage.MAIL))
        if replies[0].is_positive:
            while len(replies) <= count:
                if (
                    len(replies) > 1
                    and replies[-1].code == 452
                    and self.plan.body.reusable
                    and any(r.is_positive for r in replies[1:])
                ):
                    break  # "too many recipients": the rest go in the next transaction
                replies.append(self._ask(batch[len(replies) - 1][1], Stage.RCPT))
            if with_data and len(replies) <= count + 1 and any(r.is_positive for r in replies[1:]):
                # The DATA reply is always the last; pad the unasked RCPTs.
                replies += [Reply(0)] * (count + 1 - len(replies))
                replies.append(self._ask(commands.data(), Stage.DATA_INIT))
        if len(replies) == count + 2:
            self._expect_silence(Stage.DATA_INIT)
        else:
            self._expect_silence(Stage.RCPT if len(replies) > 1 else Stage.MAIL)
        return self._judge(replies, with_data)

    def _open_one_group(
        self, prefix: bytes, after_write: Callable[[], None] | None, with_data: bool
    ) -> bool:
        """``open`` when MAIL, every RCPT and DATA fit in one pipelined group."""
        channel = self.channel
        batch = self.batch
        group = [prefix, self.plan.mail_line]
        for _, line in batch:
            group.append(line)
        if with_data:
            group.append(b"DATA\r\n")
        channel.transition(Event.PIPELINED_MAIL if prefix else Event.MAIL)
        channel.write(
            b"".join(group),
            Stage.MAIL,
            shown=functools.partial(group_shown, len(prefix)) if prefix else _group_shown,
        )
        if after_write is not None:
            after_write()
        stages = [Stage.MAIL, *([Stage.RCPT] * len(batch))]
        if with_data:
            stages.append(Stage.DATA_INIT)
        replies = channel.read_replies(stages)
        self._expect_silence(stages[-1])
        return self._judge(replies, with_data)

    def _ask(self, line: bytes, stage: Stage) -> Reply:
        self._expect_silence(stage)
        self.channel.write(line, stage)
        return self._check(self.channel.read(stage), stage)

    def _expect_silence(self, stage: Stage) -> None:
        """Every reply asked for has been read: anything more is a reply out
        of step (an extra or shifted one), and reading it as the answer to
        the content would report a message delivered that was not.  Raises
        ``ProtocolError`` (``ServiceClosing`` for a 421, ``ServerDisconnected``
        for a hang-up); the session is closed and nothing more is sent."""
        self.channel.check_unsolicited(stage)

    def _judge(self, replies: list[Reply], with_data: bool) -> bool:
        channel = self.channel
        count = len(self.batch)
        if (
            count
            and len(replies) == count + 1 + with_data
            and (not with_data or replies[-1].code == 354)
        ):
            # Loops, not all() or a comprehension: each of those is a call.
            for reply in replies[: count + 1]:
                if not 200 <= reply.code < 300:
                    break
            else:
                # Everything accepted (the usual case).
                accepted = self.accepted
                for (address, _), reply in zip(self.batch, replies[1:], strict=False):
                    accepted[address] = reply
                return True
        data_reply = replies[-1] if with_data and len(replies) == count + 2 else None
        mail = replies[0]
        if not 200 <= mail.code < 300:
            self.failure = channel.error(Stage.MAIL, mail, sender=self.plan.envelope.sender)
            self._end_without_content(data_reply)
            return False
        rcpt_replies = replies[1 : 1 + count]
        accepted_any = any(200 <= r.code < 300 for r in rcpt_replies)
        for index, (address, line) in enumerate(self.batch):
            reply = rcpt_replies[index] if index < len(rcpt_replies) else Reply(0)
            if reply.code == 0:
                self.deferred.append((address, line))  # not asked (after a 452)
                continue
            if 200 <= reply.code < 300:
                self.accepted[address] = reply
            elif reply.code in (452, 552) and accepted_any and self.plan.body.reusable:
                self.deferred.append((address, line))
            else:
                self.refused[address] = reply
        if not self.accepted:
            self._end_without_content(data_reply)
            return False
        if data_reply is not None and data_reply.code != 354:
            self.failure = channel.error(Stage.DATA_INIT, data_reply)
            self._move_accepted_to_refused(data_reply)
            channel.reset_after_failure()
            return False
        return True

    def _end_without_content(self, data_reply: Reply | None) -> None:
        if data_reply is not None and data_reply.code == 354:
            # RFC 2920 §3.1: DATA was accepted although no recipient was;
            # end the (empty) content at once and deliver nothing.  Nothing
            # can be delivered either way: a failure here only closes the
            # session, and the refusals stay the outcome.
            try:
                self.channel.write(b".\r\n", Stage.DATA_BLOCK)
                self.channel.read(Stage.DATA_DONE)
            except SMTPClientError:
                return
        self.channel.reset_after_failure()

    def _move_accepted_to_refused(self, reply: Reply) -> None:
        for address in self.accepted:
            self.refused[address] = reply
        self.accepted = {}

    def read_finals(self, *, overtaken: bool = False) -> None:
        """Read the reply to the end of the content (one per recipient under
        LMTP); *overtaken*: the next message's envelope is on the wire already."""
        channel = self.channel
        try:
            chunk_failure = None
            while self._outstanding:
                self._outstanding -= 1
                reply = channel.read(Stage.DATA_BLOCK)
                if not reply.is_positive and chunk_failure is None:
                    chunk_failure = reply
            count = len(self.accepted) if self.config.lmtp else 1
            finals: list[Reply] = []
            while len(finals) < count:
                finals.append(channel.read(Stage.DATA_DONE))
        except ServiceClosing:
            raise  # a 421 is an answer: the message was not taken
        except SMTPClientError as exc:
            exc.outcome_unknown = True
            raise
        channel.transaction_done(overtaken=overtaken)
        self.take_finals(finals, chunk_failure)

    def take_finals(self, finals: list[Reply], chunk_failure: Reply | None = None) -> None:
        """Judge the replies to the end of the content (``read_finals`` read
        them, or the fast path did; the transaction is over)."""
        if self.config.lmtp:
            for address, reply in zip(list(self.accepted), finals, strict=True):
                if reply.is_positive:
                    self.final[address] = reply
                else:
                    self.refused[address] = reply
                    del self.accepted[address]
            self.data_reply = finals[-1]
        else:
            reply = chunk_failure or finals[0]
            self.data_reply = finals[0]
            if reply.is_positive:
                self.final = dict.fromkeys(self.accepted, reply)
            else:
                self._move_accepted_to_refused(reply)
        if not self.accepted and self.data_reply is not None:
            self.failure = self.channel.error(Stage.DATA_DONE, self.data_reply)


def transactions(
    channel: Channel,
    config: SendConfig,
    plan: Plan,
    outcome: MessageOutcome,
    read: list[Reply] | None = None,
    read_one_trip: list[Reply] | None = None,
) -> None:
    """Send *plan* in as many transactions as its recipients need, adding
    each to *outcome*.  *read*: the first transaction's envelope is on the
    wire already and these are the replies read so far (``Transaction.resume``);
    *read_one_trip*: the first transaction went out in one write with its
    content and these are all its replies (``Transaction.finish_one_trip``).

    Raises: the errors of the wire, with ``result`` set to what is known.
    """
    lines = plan.rcpt_lines
    limit = config.max_recipients if plan.body.reusable else max(len(lines), 1)
    if len(lines) <= limit:
        batches = deque((lines,))
    else:
        batches = deque(lines[i : i + limit] for i in range(0, len(lines), limit))
    while batches:
        tx = Transaction(channel, config, plan, batches.popleft())
        try:
            if read_one_trip is not None:
                tx.finish_one_trip(read_one_trip)
                read_one_trip = None
            elif read is not None:
                if tx.resume(read) and tx.send_content() is not None:
                    tx.read_finals()
                read = None
            elif (one_trip := tx.one_trip_content()) is not None:
                tx.send_in_one_trip(one_trip)
            elif tx.open() and tx.send_content() is not None:
                tx.read_finals()
        except SMTPClientError as exc:
            # Refusals already read in this transaction are known outcomes;
            # its accepted recipients stay unknown (neither list).
            outcome.refused.update(tx.refused)
            exc.result = outcome.result()
            raise
        outcome.add(tx)
        if isinstance(tx.failure, SenderRefused):
            # The same sender would be refused again: the rest share its fate.
            for batch in batches:
                for address, _ in batch:
                    outcome.refused[address] = tx.failure.reply or Reply.build(554)
            return
        if tx.deferred:
            batches.appendleft(tx.deferred)


def send_one(
    channel: Channel, config: SendConfig, envelope: Envelope, body: Body, *, binary: bool = False
) -> SendResult:
    """Send one message on *channel*; see ``Session.sendmail``."""
    plan = build_plan(
        envelope,
        body,
        config.extensions,
        config.tls,
        use_chunking=config.use_chunking,
        binary=binary,
    )
    channel.check_unsolicited(Stage.MAIL)
    outcome = MessageOutcome(config, plan)
    transactions(channel, config, plan, outcome)
    return outcome.finish()
