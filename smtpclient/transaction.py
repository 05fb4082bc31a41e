"""Mail transactions on the wire: MAIL, RCPT, DATA or BDAT, with pipelining.

With PIPELINING (RFC 2920) the envelope goes out as one group -- MAIL, every
RCPT and, for DATA framing, DATA -- and the replies are read back in order,
each checked against the command it answers (a reply that cannot belong to
its command is a ``ProtocolError``, never a shifted result).  Groups are
bounded (``PIPELINE_WINDOW`` commands) so that a server that stops reading
while its replies pile up cannot deadlock us: the replies to one window
always fit in the socket buffers.

More than ``Session.max_recipients`` recipients (default ``MAX_RECIPIENTS``),
or a 452 "too many recipients" (RFC 5321 §4.5.3.1.10), start a further
transaction for the rest.

``send_batch`` pipelines across messages: the end of one message's content
travels in the same write as the next message's envelope, and each message
still gets its own outcome.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from email.message import Message
from typing import TYPE_CHECKING

from smtpclient.body import BLOCK_SIZE, Body
from smtpclient.envelope import Envelope
from smtpclient.errors import (
    DataRefused,
    MessageContentError,
    NotSentError,
    PermanentRecipientsRefused,
    ProtocolError,
    SenderRefused,
    ServerDisconnected,
    ServiceClosing,
    SMTPClientError,
    TransientRecipientsRefused,
)
from smtpclient.message import prepare_message
from smtpclient.plan import Plan, build_plan
from smtpclient.protocol import commands
from smtpclient.protocol.data import BodyScanner, DataEncoder, Framing
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import SessionState, Stage
from smtpclient.protocol.status import is_transient_refusal
from smtpclient.results import SendResult

if TYPE_CHECKING:
    from smtpclient.body import BodySource
    from smtpclient.session import Session

__all__ = ["MAX_RECIPIENTS", "PIPELINE_WINDOW", "send_batch", "send_one"]

PIPELINE_WINDOW = 100  # commands in flight before their replies are read
MAX_RECIPIENTS = 100  # default per transaction (RFC 5321 §4.5.3.1.8)
BDAT_WINDOW = 4  # BDAT chunks in flight before a reply is read


def _content_shown(data: bytes) -> str:
    return f"<{len(data)} octets of message content, end>"


def _block_shown(data: bytes) -> str:
    return f"<{len(data)} octets of message content>"


def _shown(prefix: int, data: bytes) -> str:
    """A command group for the transcript; the first *prefix* octets are the
    end of the previous message's content."""
    text = data[prefix:].decode("utf-8", "replace").rstrip("\r\n")
    return f"<{prefix} octets of message content>\r\n{text}" if prefix else text


_group_shown = functools.partial(_shown, 0)


class _Tx:
    """One MAIL transaction for a batch of recipients."""

    def __init__(self, session: Session, plan: Plan, batch: list[tuple[str, bytes]]) -> None:
        self.session = session
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
        code = reply.code  # 200-599: the parser accepts nothing else
        if (code < 400 and code != 354) if stage is Stage.DATA_INIT else (300 <= code < 400):
            self.session._abort()
            raise ProtocolError(
                f"reply {reply.code} cannot answer the command of stage {stage}",
                reply=reply,
                stage=stage,
                host=self.session.host,
            )
        return reply

    def open(self, prefix: bytes = b"", after_write: Callable[[], None] | None = None) -> bool:
        """Send MAIL, the RCPTs and (DATA framing) DATA; return True if content may follow."""
        session = self.session
        with_data = self.plan.framing is Framing.DATA
        pipelined = session.use_pipelining and session.extensions.pipelining
        if pipelined and len(self.batch) + 2 <= PIPELINE_WINDOW:
            # The usual case: the whole envelope is one group, one write.
            return self._open_one_group(prefix, after_write, with_data)
        lines = [self.plan.mail_line] + [line for _, line in self.batch]
        stages = [Stage.MAIL] + [Stage.RCPT] * len(self.batch)
        if with_data:
            lines.append(commands.data())
            stages.append(Stage.DATA_INIT)
        session._state = SessionState.IN_TRANSACTION
        replies: list[Reply] = []
        if pipelined:
            start = 0
            while start < len(lines):
                window = lines[start : start + PIPELINE_WINDOW]
                head = prefix if start == 0 else b""
                session._write(
                    head + b"".join(window),
                    stages[start],
                    shown=functools.partial(_shown, len(head)) if head else _group_shown,
                )
                if start == 0 and after_write is not None:
                    after_write()
                read, check = session._read, self._check
                for stage in stages[start : start + len(window)]:
                    replies.append(check(read(stage), stage))
                start += len(window)
                if not 200 <= replies[0].code < 300:
                    break
            self._expect_silence(stages[len(replies) - 1])
        else:
            if prefix or after_write is not None:
                raise RuntimeError("cross-message pipelining needs PIPELINING")
            replies.append(self._ask(lines[0], Stage.MAIL))
            if replies[0].is_positive:
                for line in lines[1 : 1 + len(self.batch)]:
                    reply = self._ask(line, Stage.RCPT)
                    replies.append(reply)
                    if (
                        reply.code == 452
                        and self.plan.body.reusable
                        and any(r.is_positive for r in replies[1:])
                    ):
                        break  # "too many recipients": the rest go in the next transaction
                if with_data and any(r.is_positive for r in replies[1:]):
                    # The DATA reply is always the last; pad the unasked RCPTs.
                    asked = len(replies)
                    replies += [Reply(0)] * (1 + len(self.batch) - asked)
                    replies.append(self._ask(lines[-1], Stage.DATA_INIT))
            self._expect_silence(stages[len(replies) - 1])
        return self._judge(replies, with_data)

    def _open_one_group(
        self, prefix: bytes, after_write: Callable[[], None] | None, with_data: bool
    ) -> bool:
        """``open`` when MAIL, every RCPT and DATA fit in one pipelined group."""
        session = self.session
        batch = self.batch
        group = [prefix, self.plan.mail_line, *[line for _, line in batch]]
        if with_data:
            group.append(b"DATA\r\n")
        session._state = SessionState.IN_TRANSACTION
        session._write(
            b"".join(group),
            Stage.MAIL,
            shown=functools.partial(_shown, len(prefix)) if prefix else _group_shown,
        )
        if after_write is not None:
            after_write()
        stages = [Stage.MAIL, *([Stage.RCPT] * len(batch))]
        if with_data:
            stages.append(Stage.DATA_INIT)
        replies = session._read_replies(stages, self._check)
        self._expect_silence(stages[-1])
        return self._judge(replies, with_data)

    def _ask(self, line: bytes, stage: Stage) -> Reply:
        self._expect_silence(stage)
        self.session._write(line, stage)
        return self._check(self.session._read(stage), stage)

    def _expect_silence(self, stage: Stage) -> None:
        """Every reply asked for has been read: anything more is a reply out
        of step (an extra or shifted one), and reading it as the answer to
        the content would report a message delivered that was not.  Raises
        ``ProtocolError`` (``ServiceClosing`` for a 421, ``ServerDisconnected``
        for a hang-up); the session is closed and nothing more is sent."""
        self.session._check_unsolicited(stage)

    def _judge(self, replies: list[Reply], with_data: bool) -> bool:
        session = self.session
        count = len(self.batch)
        if (
            count
            and len(replies) == count + 1 + with_data
            and all(200 <= r.code < 300 for r in replies[: count + 1])
            and (not with_data or replies[-1].code == 354)
        ):
            # Everything accepted (the usual case).
            self.accepted = {
                address: reply for (address, _), reply in zip(self.batch, replies[1:], strict=False)
            }
            return True
        data_reply = replies[-1] if with_data and len(replies) == count + 2 else None
        mail = replies[0]
        if not 200 <= mail.code < 300:
            self.failure = session._error(Stage.MAIL, mail, sender=self.plan.envelope.sender)
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
            self.failure = session._error(Stage.DATA_INIT, data_reply)
            self._move_accepted_to_refused(data_reply)
            session._reset_after_failure()
            return False
        return True

    def _end_without_content(self, data_reply: Reply | None) -> None:
        if data_reply is not None and data_reply.code == 354:
            # RFC 2920 §3.1: DATA was accepted although no recipient was;
            # end the (empty) content at once and deliver nothing.  Nothing
            # can be delivered either way: a failure here only closes the
            # session, and the refusals stay the outcome.
            try:
                self.session._write(b".\r\n", Stage.DATA_BLOCK)
                self.session._read(Stage.DATA_DONE)
            except SMTPClientError:
                return
        self.session._reset_after_failure()

    def _move_accepted_to_refused(self, reply: Reply) -> None:
        for address in self.accepted:
            self.refused[address] = reply
        self.accepted = {}

    # --- content ---------------------------------------------------------------------

    def send_content(self, hold: bool = False) -> bytes | None:
        """Stream the content.  With *hold*, the last piece (with the end
        marker, or the BDAT LAST chunk) is returned instead of written.
        Returns None when a BDAT chunk was refused (``failure`` says why)."""
        plan = self.plan
        guard = BodyScanner() if (plan.check_eight_bit or plan.check_lines) else None
        encoder = DataEncoder(plan.framing)
        session = self.session
        data_framing = plan.framing is Framing.DATA
        # BINARYMIME content goes out exactly as given, never canonicalised.
        canonical = plan.body.canonical if plan.framing is not Framing.BINARY else None
        if canonical is not None and len(canonical) <= BLOCK_SIZE:
            # A small in-memory message: one encoding step, one write.
            tail = encoder.encode_complete(canonical)
            if not data_framing:
                tail = commands.bdat(len(tail), last=True) + tail
            if hold:
                return tail
            session._write(tail, Stage.DATA_BLOCK, shown=_content_shown)
            return b""
        try:
            return self._stream(encoder, guard, hold)
        except BaseException as exc:
            if not isinstance(exc, SMTPClientError):
                # The caller's content failed mid-stream (a read error, an
                # iterator that raised, Ctrl-C): never send the end marker
                # of a half message.  Hanging up makes the server drop it.
                session._abort()
            raise

    def _stream(self, encoder: DataEncoder, guard: BodyScanner | None, hold: bool) -> bytes | None:
        plan = self.plan
        session = self.session
        data_framing = plan.framing is Framing.DATA
        pieces: list[bytes] = []
        pending = 0
        ready: bytes | None = None  # a full BDAT chunk kept back until we know it is not the last
        for block in plan.body.blocks():
            if guard is not None:
                guard.feed(block)
                self._guard(guard)
            out = encoder.feed(block)
            pieces.append(out)
            pending += len(out)
            if pending < BLOCK_SIZE:
                continue
            joined = b"".join(pieces)
            pieces, pending = [], 0
            if data_framing:
                session._write(joined, Stage.DATA_BLOCK, shown=_block_shown)
            else:
                if ready is not None and not self._bdat(ready):
                    return None
                ready = joined
        tail = (ready or b"") + b"".join(pieces) + encoder.finish()
        if not data_framing:
            tail = commands.bdat(len(tail), last=True) + tail
        if hold:
            return tail
        session._write(tail, Stage.DATA_BLOCK, shown=_content_shown)
        return b""

    def _guard(self, scanner: BodyScanner) -> None:
        problem = None
        if self.plan.check_eight_bit and scanner.eight_bit:
            problem = "it has 8-bit bytes and the server does not offer 8BITMIME"
        elif self.plan.check_lines and scanner.long_lines:
            problem = "it has a line over 998 octets"
        if problem:
            # Closing without the end marker makes the server drop the message.
            self.session._abort()
            raise MessageContentError(
                f"stopped sending the message: {problem}; nothing was delivered"
            )

    def _bdat(self, chunk: bytes) -> bool:
        """Send one non-final BDAT chunk; False if a chunk was refused."""
        session = self.session
        session._write(
            commands.bdat(len(chunk)) + chunk,
            Stage.DATA_BLOCK,
            shown=f"BDAT {len(chunk)} <{len(chunk)} octets>",
        )
        self._outstanding += 1
        pipelined = session.use_pipelining and session.extensions.pipelining
        while self._outstanding >= (BDAT_WINDOW if pipelined else 1):
            self._outstanding -= 1
            reply = session._read(Stage.DATA_BLOCK)
            if not reply.is_positive:
                # RFC 3030 §3: after a failed chunk, stop, collect what is
                # in flight, and reset.
                while self._outstanding:
                    self._outstanding -= 1
                    session._read(Stage.DATA_BLOCK)
                self.failure = session._error(Stage.DATA_BLOCK, reply)
                self._move_accepted_to_refused(reply)
                session._reset_after_failure()
                return False
        return True

    def read_finals(self) -> None:
        """Read the reply to the end of the content (one per recipient under LMTP)."""
        session = self.session
        try:
            chunk_failure = None
            while self._outstanding:
                self._outstanding -= 1
                reply = session._read(Stage.DATA_BLOCK)
                if not reply.is_positive and chunk_failure is None:
                    chunk_failure = reply
            count = len(self.accepted) if session.lmtp else 1
            finals = [session._read(Stage.DATA_DONE) for _ in range(count)]
        except ServiceClosing:
            raise  # a 421 is an answer: the message was not taken
        except SMTPClientError as exc:
            exc.outcome_unknown = True
            raise
        session._state = SessionState.READY
        session.messages_sent += 1
        if session.lmtp:
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
            self.failure = session._error(Stage.DATA_DONE, self.data_reply)


class _Outcome:
    """Collects the transactions of one message into its SendResult."""

    def __init__(self, session: Session, plan: Plan) -> None:
        self.session = session
        self.plan = plan
        self.accepted: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.final: dict[str, Reply] = {}
        self.data_replies: list[Reply] = []
        self.failure: SMTPClientError | None = None

    def add(self, tx: _Tx) -> None:
        self.accepted.update(tx.accepted)
        self.refused.update(tx.refused)
        self.final.update(tx.final)
        if tx.data_reply is not None and tx.final:
            self.data_replies.append(tx.data_reply)
        if tx.failure is not None:
            self.failure = tx.failure
            for address, _ in tx.batch:
                if address not in tx.accepted and address not in tx.refused and tx.failure.reply:
                    self.refused[address] = tx.failure.reply

    def result(self) -> SendResult:
        session = self.session
        return SendResult(
            sender=self.plan.envelope.sender,
            recipients=tuple(self.plan.addresses),
            accepted=dict(self.accepted),
            refused=dict(self.refused),
            data_replies=tuple(self.data_replies),
            recipient_data_replies=dict(self.final),
            host=session.host,
            address=session._transport.peer,
            tls=session.tls,
        )

    def finish(self) -> SendResult:
        """Return the result, or raise when nothing was delivered."""
        result = self.result()
        if self.accepted:
            return result
        failure = self.failure
        if isinstance(failure, (SenderRefused, DataRefused)) or (
            failure is not None and not self.refused
        ):
            failure.result = result
            raise failure
        transient = any(is_transient_refusal(Stage.RCPT, r) for r in self.refused.values())
        cls = TransientRecipientsRefused if transient else PermanentRecipientsRefused
        first = next(iter(self.refused.values()), None)
        raise cls(
            "every recipient was refused",
            reply=first,
            stage=Stage.RCPT,
            host=self.session.host,
            recipients=self.refused,
            result=result,
        )


def _transactions(session: Session, plan: Plan, outcome: _Outcome) -> None:
    lines = plan.rcpt_lines
    limit = session.max_recipients if plan.body.reusable else max(len(lines), 1)
    if len(lines) <= limit:
        batches = deque((lines,))
    else:
        batches = deque(lines[i : i + limit] for i in range(0, len(lines), limit))
    while batches:
        tx = _Tx(session, plan, batches.popleft())
        try:
            if tx.open() and tx.send_content() is not None:
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
    session: Session, envelope: Envelope, body: Body, *, binary: bool = False
) -> SendResult:
    """Send one message on *session*; see ``Session.sendmail``."""
    plan = build_plan(
        envelope,
        body,
        session.extensions,
        session.tls,
        use_chunking=session.use_chunking,
        binary=binary,
    )
    session._check_unsolicited(Stage.MAIL)
    outcome = _Outcome(session, plan)
    _transactions(session, plan, outcome)
    return outcome.finish()


def _plan_item(
    session: Session, item: Message | tuple[str, Sequence[str] | str, BodySource]
) -> Plan:
    if isinstance(item, Message):
        envelope, body = prepare_message(item, session.extensions)
    elif isinstance(item, tuple) and len(item) == 3:
        sender, recipients, data = item
        envelope, body = Envelope.build(sender, recipients), Body(data)
    else:
        raise TypeError("send_many() items are Messages or (sender, recipients, data) tuples")
    return build_plan(
        envelope, body, session.extensions, session.tls, use_chunking=session.use_chunking
    )


class _Held:
    """A message whose last piece of content waits to ride with the next envelope."""

    def __init__(self, index: int, tx: _Tx, outcome: _Outcome, tail: bytes) -> None:
        self.index, self.tx, self.outcome, self.tail = index, tx, outcome, tail


def send_batch(
    session: Session, items: list[Message | tuple[str, Sequence[str] | str, BodySource]]
) -> list[SendResult | Exception]:
    """Send *items* in order on *session*; one outcome per item."""
    outcomes: list[SendResult | Exception | None] = [None] * len(items)
    held: _Held | None = None
    lost: Exception | None = None
    pipelined = session.use_pipelining and session.extensions.pipelining
    ahead: tuple[int, Plan | Exception] | None = None  # the next item, planned early
    concluding: _Held | None = None  # final reply read, result not built yet

    def plan_for(index: int) -> Plan:
        nonlocal ahead
        if ahead is not None and ahead[0] == index:
            planned, ahead = ahead[1], None
            if isinstance(planned, Exception):
                raise planned
            return planned
        return _plan_item(session, items[index])

    def settle_and_plan(index: int) -> None:
        """Right after a group is written, while the server works on it
        (neither needs anything from it): build the previous message's
        result and plan the next item; then read the held message's final
        reply."""
        nonlocal ahead
        conclude()
        if index < len(items) and lost is None:
            try:
                ahead = (index, _plan_item(session, items[index]))
            except (ValueError, TypeError, SMTPClientError) as exc:
                ahead = (index, exc)
        settle(defer=True)

    def settle(defer: bool = False) -> None:
        """Read the final reply of the held message (its tail is on the
        wire); with *defer*, its result is built after the next write."""
        nonlocal held, concluding
        current, held = held, None
        if current is None:
            return
        try:
            current.tx.read_finals()
        except SMTPClientError as exc:
            outcomes[current.index] = exc
            if not session.usable:
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
            session._write(
                held.tail,
                Stage.DATA_BLOCK,
                shown=f"<{len(held.tail)} octets of message content, end>",
            )
            settle()

    for index in range(len(items)):
        if lost is not None:
            outcomes[index] = _not_sent(session, lost)
            continue
        try:
            plan = plan_for(index)
        except (ValueError, TypeError, SMTPClientError) as exc:
            outcomes[index] = exc
            continue
        try:
            one_group = min(session.max_recipients, PIPELINE_WINDOW - 2)
            if not pipelined or len(plan.rcpt_lines) > one_group:
                flush()
                outcome = _Outcome(session, plan)
                _transactions(session, plan, outcome)
                outcomes[index] = outcome.finish()
                continue
            if held is None:
                session._check_unsolicited(Stage.MAIL)
            outcome = _Outcome(session, plan)
            tx = _Tx(session, plan, plan.rcpt_lines)
            prefix = held.tail if held is not None else b""
            if tx.open(prefix, functools.partial(settle_and_plan, index + 1)):
                tail = tx.send_content(hold=True)
                if tail is not None:
                    held = _Held(index, tx, outcome, tail)
                    continue
            outcome.add(tx)
            outcomes[index] = outcome.finish()
        except SMTPClientError as exc:
            if held is not None and outcomes[held.index] is None:
                # The held tail went out with a write that failed part-way:
                # the server may or may not have the end of that message.
                outcomes[held.index] = ServerDisconnected(
                    f"connection lost after the end of the message was sent ({exc})",
                    host=session.host,
                    outcome_unknown=True,
                )
                held = None
            if outcomes[index] is None:
                # Not the error of an earlier message that surfaced here.
                mine = all(other is not exc for other in outcomes)
                outcomes[index] = exc if mine else _not_sent(session, exc)
            if not session.usable:
                lost = exc
        except (ValueError, TypeError, OSError) as exc:
            # The caller's content failed while it was being sent (an
            # iterator yielding str, a file read error): the session was
            # closed rather than finish a half message.
            if held is not None and outcomes[held.index] is None:
                outcomes[held.index] = ServerDisconnected(
                    "connection closed after the end of the message was sent "
                    f"(the next message's content failed: {exc})",
                    host=session.host,
                    outcome_unknown=True,
                )
                held = None
            outcomes[index] = exc
            if not session.usable:
                lost = exc
    if lost is None and held is not None:
        try:
            flush()
        except SMTPClientError as exc:
            if held is not None and outcomes[held.index] is None:
                outcomes[held.index] = exc
    conclude()
    return [o if o is not None else _not_sent(session, lost) for o in outcomes]


def _not_sent(session: Session, cause: Exception | None) -> SMTPClientError:
    reason = f" ({cause})" if cause is not None else ""
    return NotSentError(
        f"not sent: the connection failed before this message{reason}", host=session.host
    )
