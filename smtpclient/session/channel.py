"""The Channel: one connection's commands out and replies in, each within its
stage's deadline, the session state, and the transcript.

Everything that talks to a server -- ``Session``'s methods, the opening
procedure, AUTH, transactions, ``send_many`` and the fast path -- does so
through a ``Channel``, so the rules below hold whichever path sends:

* every write and every reply read has its stage's deadline (capped by the
  operation's ``total``, but never below the floor after the final ".");
* any lost connection, timeout or protocol error closes the connection at
  once, so a late reply can never be paired with a later command; a 421 at
  any stage closes it too;
* each reply of a pipelined group is checked against the command it
  answers (``protocol.state.answers``);
* state changes go through ``protocol.state.TRANSITIONS``: an illegal one
  raises ``IllegalTransition`` and closes the connection;
* the transcript (logger ``smtpclient.transcript`` at DEBUG) shows every
  command as sent and every reply as read; secrets and message content are
  replaced by a description.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from smtpclient.errors import IllegalTransition, ProtocolError, ServiceClosing, SMTPClientError
from smtpclient.protocol import commands
from smtpclient.protocol.reply import Reply, ReplyLimits, ReplyParser
from smtpclient.protocol.state import (
    ANSWERING,
    TRANSITIONS,
    Event,
    SessionState,
    Stage,
    check_allowed,
)
from smtpclient.protocol.status import error_for
from smtpclient.session.budget import CALL_DEADLINE
from smtpclient.session.transcript import Shown, printable, transcript
from smtpclient.timeouts import DATA_DONE_FLOOR, Deadline, Timeouts
from smtpclient.transport import Transport

__all__ = ["Channel"]

_log = logging.getLogger("smtpclient.session")
_AFTER_MAIL = TRANSITIONS[Event.MAIL]
_AFTER_DONE = TRANSITIONS[Event.TRANSACTION_DONE]


class Channel:
    """Commands out, replies in, each within its stage's deadline.

    Attributes:
        host: the server's name (for errors and the transcript).
        timeouts: the ``Timeouts`` in force.
        transport: the connection (``Transport``).
        total: the current operation's overall deadline, or None.
        messages_sent: transactions completed on this connection.
        last_used: ``time.monotonic()`` at the end of the last send.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        host: str,
        timeouts: Timeouts,
        reply_limits: ReplyLimits | None = None,
    ) -> None:
        self.transport = transport
        self._parser = ReplyParser(reply_limits)
        self._state = SessionState.NEW
        self.total: Deadline | None = None
        self.tracing = False  # the transcript's state when the operation began
        self.host = host
        self.timeouts = timeouts
        self.messages_sent = 0
        self.last_used = time.monotonic()
        # Seconds per stage, looked up on every wait.
        self._seconds = {stage: timeouts.for_stage(stage) for stage in Stage}

    @property
    def state(self) -> SessionState:
        """Where the session stands (changed only by ``transition``)."""
        return self._state

    @property
    def usable(self) -> bool:
        """True while commands may be sent (greeted or ready, connection open)."""
        return (
            self._state is SessionState.READY or self._state is SessionState.GREETED
        ) and not self.transport.closed

    def transition(self, event: Event) -> None:
        """Move to the state *event* leads to.

        Raises:
            IllegalTransition: *event* may not happen in this state (a bug);
                the connection is closed and the session is broken.
        """
        state = TRANSITIONS[event].get(self._state)
        if state is None:
            before = self._state
            self.transport.close()
            self._state = SessionState.BROKEN
            raise IllegalTransition(f"{event.value} cannot happen while {before.value}")
        self._state = state

    def transaction_done(self, *, overtaken: bool = False) -> None:
        """The final reply (or replies) to a message's content were read;
        *overtaken*: the next message's MAIL was already sent (``send_many``)."""
        self.transition(Event.EARLIER_DONE if overtaken else Event.TRANSACTION_DONE)
        self.messages_sent += 1

    def start(self, total: float | None, stage: Stage = Stage.MAIL) -> None:
        """An operation begins: its overall deadline (*total* seconds) starts
        now, and the transcript's level is read once for all of it."""
        cap = CALL_DEADLINE.get()  # the whole call's budget, if a face opened one
        self.total = Deadline(total, stage, cap) if total else cap
        self.tracing = transcript.isEnabledFor(logging.DEBUG)

    def start_mail(self, total: float | None, *, expect_silence: bool = False) -> None:
        """``start`` for sending mail; first checks that the session is ready
        and, with *expect_silence*, that the server sent nothing unasked.

        Raises:
            SessionClosedError: the session is closed or broken.
            RuntimeError: a transaction is open (a bug in the caller).
            ProtocolError, ServiceClosing, ServerDisconnected: as
                ``check_unsolicited`` (the session is closed).
        """
        if self._state is not SessionState.READY:
            check_allowed("mail", self._state)
        if expect_silence and (self._parser.buffered or self.transport.readable()):
            self.check_unsolicited(Stage.MAIL)
        cap = CALL_DEADLINE.get()  # the whole call's budget, if a face opened one
        self.total = Deadline(total, Stage.MAIL, cap) if total else cap
        self.tracing = transcript.isEnabledFor(logging.DEBUG)

    def finish(self) -> None:
        """The operation ``start`` began is over."""
        self.total = None
        self.last_used = time.monotonic()

    def deadline(self, stage: Stage) -> Deadline:
        """A deadline for one wait at *stage*, capped by ``total`` (never
        below the floor after the final dot)."""
        cap = self.total
        if stage is Stage.DATA_DONE and cap is not None:
            # Once the final dot is out, giving up early makes duplicates: the
            # overall deadline never cuts this wait below the floor.
            floor = Deadline(DATA_DONE_FLOOR, stage)
            if cap.expires < floor.expires:
                cap = floor
        return Deadline(self._seconds[stage], stage, cap)

    def write(self, data: bytes, stage: Stage, *, shown: Shown = None) -> None:
        """Send *data* within *stage*'s deadline; *shown* (or what it returns
        for *data*) replaces it in the transcript.

        Raises:
            SMTPTimeoutError, ServerDisconnected: the connection is closed.
        """
        if transcript.isEnabledFor(logging.DEBUG):
            self._log_sent(data, shown)
        deadline = self.deadline(stage)
        try:
            self.transport.sendall(data, deadline)
        except SMTPClientError as exc:
            raise self.broken(exc, deadline.stage) from exc.__cause__

    def send(self, data: bytes, deadline: Deadline, shown: Shown = None) -> None:
        """``write`` with a deadline made by the caller, for the fast path:
        the transcript as read by ``start``."""
        if self.tracing:
            self._log_sent(data, shown)
        try:
            self.transport.sendall(data, deadline)
        except SMTPClientError as exc:
            raise self.broken(exc, deadline.stage) from exc.__cause__

    def open_transaction(self, data: bytes, deadline: Deadline, shown: Shown = None) -> None:
        """For the fast path: the transaction opens (``Event.MAIL``) and
        *data* (MAIL, perhaps with the rest of the envelope) goes out as
        ``send`` sends it.

        Raises: as ``write``; ``IllegalTransition``.
        """
        # transition(Event.MAIL), without a call on the fast path
        state = _AFTER_MAIL.get(self._state)
        if state is None:
            self.transition(Event.MAIL)  # raises
        else:
            self._state = state
        if self.tracing:
            self._log_sent(data, shown)
        try:
            self.transport.sendall(data, deadline)
        except SMTPClientError as exc:
            raise self.broken(exc, deadline.stage) from exc.__cause__

    def _log_sent(self, data: bytes, shown: Shown) -> None:
        if callable(shown):
            shown = shown(data)
        text = shown if shown is not None else data.decode("utf-8", "replace").rstrip("\r\n")
        for line in text.split("\r\n"):
            transcript.debug("%s C: %s", self.host, line)

    def read(self, stage: Stage, deadline: Deadline | None = None) -> Reply:
        """Read one complete reply within the stage's deadline (*deadline*:
        the one this reply is already being waited for under).

        Raises:
            ServiceClosing: the reply was 421 (the session is closed).
            ProtocolError, SMTPTimeoutError, ServerDisconnected: the session
                is closed.
        """
        try:
            reply = self._parser.next_reply()
            if reply is None:
                if deadline is None:
                    deadline = self.deadline(stage)
                while reply is None:
                    self._parser.feed(self.transport.recv(deadline))
                    reply = self._parser.next_reply()
        except SMTPClientError as exc:
            raise self.broken(exc, stage) from exc.__cause__
        if transcript.isEnabledFor(logging.DEBUG):
            self._show(reply)
        if reply.code == 421 and stage is not Stage.QUIT:
            self.abort()
            raise ServiceClosing(reply=reply, stage=stage, host=self.host)
        return reply

    def command(self, line: bytes, stage: Stage, *, shown: Shown = None) -> Reply:
        """Write *line* and read its reply (see ``write`` and ``read``)."""
        self.write(line, stage, shown=shown)
        return self.read(stage)

    def next_reply(self, deadline: Deadline) -> Reply:
        """The next reply within *deadline*, for the fast path: a one-line
        reply at the cost of one read; anything else (a 421 included)
        through ``read``."""
        parser = self._parser
        if not parser.buffered:
            try:
                parser.feed(self.transport.recv(deadline))
            except SMTPClientError as exc:
                raise self.broken(exc, deadline.stage) from exc.__cause__
        try:
            ready = parser.take(1)
        except SMTPClientError as exc:
            raise self.broken(exc, deadline.stage) from exc.__cause__
        if not ready:
            return self.read(deadline.stage, deadline)
        if self.tracing:
            self._show(ready[0])
        return ready[0]

    def read_final(self) -> Reply:
        """For the fast path: the one reply to the end of the content (under
        ``DATA_DONE``'s deadline, with its floor); the transaction is over.

        Raises: as ``read``.
        """
        reply = self.next_reply(self.deadline(Stage.DATA_DONE))
        # transaction_done(), without calls on the fast path
        state = _AFTER_DONE.get(self._state)
        if state is None:
            self.transition(Event.TRANSACTION_DONE)  # raises
        else:
            self._state = state
        self.messages_sent += 1
        return reply

    def read_replies(self, stages: Sequence[Stage]) -> list[Reply]:
        """Read one reply per stage, in order (the replies to a pipelined
        group), each within its own stage's deadline when it must be waited
        for; those already received are parsed in one pass.  A reply that
        cannot answer its command (``protocol.state.answers``) is a
        ``ProtocolError`` at once: the stream is out of step.

        Raises: as ``read``, and ``ProtocolError`` (the session is closed).
        """
        parser = self._parser
        wanted = len(stages)
        replies: list[Reply] = []
        deadline = None  # the wait for the next reply, once it has started
        while len(replies) < wanted:
            index = len(replies)
            if not parser.buffered:
                if deadline is None:
                    stage = stages[index]
                    deadline = (
                        Deadline(self._seconds[stage], stage, self.total)
                        if stage is not Stage.DATA_DONE
                        else self.deadline(stage)
                    )
                try:
                    parser.feed(self.transport.recv(deadline))
                except SMTPClientError as exc:
                    raise self.broken(exc, deadline.stage) from exc.__cause__
                continue
            try:
                # Never a 421: take() leaves one for read(), which acts on it.
                ready = parser.take(wanted - index)
            except SMTPClientError as exc:
                raise self.broken(exc, stages[index]) from exc.__cause__
            if ready:
                if self.tracing:
                    for reply in ready:
                        self._show(reply)
            else:
                # An unfinished line, a multi-line reply, a 421: the careful reader.
                ready = [self.read(stages[index], deadline)]
            deadline = None
            for reply in ready:
                stage = stages[index]
                if reply.code not in ANSWERING[stage]:
                    raise self.mismatch(reply, stage)
                index += 1
            replies += ready
        return replies

    def _show(self, reply: Reply) -> None:
        last = len(reply.lines) - 1
        for index, line in enumerate(reply.lines):
            sep = " " if index == last else "-"
            transcript.debug("%s S: %d%s%s", self.host, reply.code, sep, printable(line))

    def discard_received(self) -> int:
        """Drop every reply octet received and not yet read; return how many."""
        return self._parser.discard()

    def server_spoke(self, stage: Stage) -> bool:
        """True when the server sent data nobody asked for; never waits.

        Under TLS 1.3 a readable socket may hold only a session ticket or a
        key update: that is read and is not "data".

        Raises:
            ServerDisconnected: the server hung up (the session is closed).
        """
        if self._parser.buffered:
            return True
        if not self.transport.readable():
            return False
        try:
            data = self.transport.read_now(stage)
        except SMTPClientError as exc:
            raise self.broken(exc, stage) from exc.__cause__
        if data is None:
            return False
        self._parser.feed(data)
        return True

    def idle_check(self) -> bool:
        """True when the server sent nothing since the last reply; else the
        connection is closed (a 421, a hang-up, a stray reply).  Never waits."""
        try:
            spoke = self.server_spoke(Stage.COMMAND)
        except SMTPClientError:
            return False
        if spoke:
            self.abort()
        return not spoke

    def has_buffered(self) -> bool:
        """True when received octets wait to be read as replies (never waits)."""
        return bool(self._parser.buffered)

    def expect_silence(self, stage: Stage) -> None:
        """``check_unsolicited`` at the cost of one poll when all is quiet."""
        if self._parser.buffered or self.transport.readable():
            self.check_unsolicited(stage)

    def check_unsolicited(self, stage: Stage) -> None:
        """Before a new command: bytes nobody asked for mean the reply stream
        is out of step, and pairing them with our next command would shift
        every result after it.

        Raises:
            ProtocolError: data nobody asked for (the session is closed).
            ServiceClosing: an unasked-for 421 (the session is closed).
            ServerDisconnected: the server hung up.
        """
        if self.server_spoke(stage):
            try:
                early = self._parser.next_reply()
            except ProtocolError:
                early = None
            self.abort()
            if early is not None and early.code == 421:
                # RFC 5321 §3.8: a server may say 421 and hang up at any time
                # (Postfix does on an idle timeout): a closed connection, which
                # a pool retries elsewhere, not a protocol violation.
                raise ServiceClosing(reply=early, stage=stage, host=self.host)
            raise ProtocolError(
                "the server sent data nobody asked for (a reply out of step)",
                stage=stage,
                host=self.host,
            )

    def broken(self, exc: SMTPClientError, stage: Stage) -> SMTPClientError:
        """Close the connection and return *exc* with host and stage filled in."""
        self.abort()
        if exc.host is None:
            exc.host = self.host
        if exc.stage is None:
            exc.stage = stage
        return exc

    def error(
        self, stage: Stage, reply: Reply, message: str | None = None, **context: Any
    ) -> SMTPClientError:
        """The exception for a refusal *reply* at *stage* (a reply that is no
        refusal at all is a ``ProtocolError``, and the connection is closed)."""
        cls = error_for(stage, reply)
        if cls is ProtocolError:
            self.abort()
            message = f"unexpected reply {reply.code} at stage {stage}"
        return cls(message, reply=reply, stage=stage, host=self.host, **context)

    def mismatch(self, reply: Reply, stage: Stage) -> ProtocolError:
        """The error for a reply that cannot answer *stage*'s command (the
        stream is out of step); the connection is closed."""
        self.abort()
        return ProtocolError(
            f"reply {reply.code} cannot answer the command of stage {stage}",
            reply=reply,
            stage=stage,
            host=self.host,
        )

    def abort(self) -> None:
        """Close at once, no QUIT: after an error the stream cannot be trusted."""
        self.transport.close()
        self.transition(Event.BROKEN)

    def close(self) -> None:
        """Close without QUIT (also after fork: our copy of the descriptor
        only, so the parent's connection is untouched)."""
        self.transport.close()
        self.transition(Event.CLOSED)

    def close_politely(self) -> None:
        """QUIT, a short wait for its reply, then close; never raises."""
        try:
            self.write(commands.quit_(), Stage.QUIT)
            self.read(Stage.QUIT)
        except SMTPClientError:
            pass
        self.abort()

    def quit(self) -> Reply | None:
        """QUIT (unless broken or closed) and close; the reply if one came in time."""
        reply = None
        if self._state is not SessionState.CLOSED and self._state is not SessionState.BROKEN:
            try:
                self.write(commands.quit_(), Stage.QUIT)
                reply = self.read(Stage.QUIT)
            except SMTPClientError:
                pass
        self.close()
        return reply

    def reset_after_failure(self) -> None:
        """RSET after a failed transaction, so the session stays usable.

        Never raises: if RSET fails the connection is closed and the refusal
        being handled stays the outcome.
        """
        if self._state is not SessionState.READY and self._state is not SessionState.IN_TRANSACTION:
            return
        try:
            reply = self.command(commands.rset(), Stage.RSET)
        except SMTPClientError as exc:
            # The refusal that led here is the message's outcome; the lost
            # RSET only means this connection is done (already closed).
            _log.debug("%s: RSET after a refusal failed (%s); connection closed", self.host, exc)
            return
        if not reply.is_positive:
            self.abort()
            _log.debug("%s: RSET after a refusal got %d; connection closed", self.host, reply.code)
            return
        self.transition(Event.RESET)
