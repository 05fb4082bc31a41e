"""The wire under a session: writes and reads with stage deadlines, the
transcript, and what a broken connection does.

``Wire`` is the base class of ``Session``.  Every write and every reply
read has its stage's deadline (capped by the send's total, but never below
the floor after the final "."); any lost connection, timeout or protocol
error closes the connection at once, so a late reply can never be paired
with a later command; a 421 at any stage closes it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from smtpclient.errors import ProtocolError, ServiceClosing, SMTPClientError
from smtpclient.protocol import commands
from smtpclient.protocol.reply import Reply, ReplyLimits, ReplyParser
from smtpclient.protocol.state import SessionState, Stage
from smtpclient.protocol.status import error_for
from smtpclient.timeouts import DATA_DONE_FLOOR, Deadline, Timeouts
from smtpclient.transport import Transport

__all__ = ["Wire"]

transcript = logging.getLogger("smtpclient.transcript")


def _printable(text: str) -> str:
    """Server text made safe for a log line: control characters escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


class Wire:
    """Commands out, replies in, each within its stage's deadline."""

    def __init__(
        self,
        transport: Transport,
        *,
        host: str,
        timeouts: Timeouts,
        reply_limits: ReplyLimits | None = None,
    ) -> None:
        self._transport = transport
        self._parser = ReplyParser(reply_limits)
        self._state = SessionState.NEW
        self._total: Deadline | None = None  # the current operation's overall deadline
        self.host = host
        self.timeouts = timeouts

    def _deadline(self, stage: Stage) -> Deadline:
        cap = self._total
        if stage is Stage.DATA_DONE and cap is not None:
            # Once the final dot is out, giving up early makes duplicates: the
            # overall deadline never cuts this wait below the floor.
            floor = Deadline(DATA_DONE_FLOOR, stage)
            if cap.expires < floor.expires:
                cap = floor
        return Deadline(self.timeouts.for_stage(stage), stage, cap)

    def _write(
        self, data: bytes, stage: Stage, *, shown: str | Callable[[bytes], str] | None = None
    ) -> None:
        """Send *data*; *shown* (or what it returns for *data*) replaces it in
        the transcript (secrets, message content).  A callable costs nothing
        while the transcript is off."""
        if transcript.isEnabledFor(logging.DEBUG):
            if callable(shown):
                shown = shown(data)
            text = shown if shown is not None else data.decode("utf-8", "replace").rstrip("\r\n")
            for line in text.split("\r\n"):
                transcript.debug("%s C: %s", self.host, line)
        try:
            self._transport.sendall(data, self._deadline(stage))
        except SMTPClientError as exc:
            raise self._broken(exc, stage) from exc.__cause__

    def _read(self, stage: Stage, deadline: Deadline | None = None) -> Reply:
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
                    deadline = self._deadline(stage)
                while reply is None:
                    self._parser.feed(self._transport.recv(deadline))
                    reply = self._parser.next_reply()
        except SMTPClientError as exc:
            raise self._broken(exc, stage) from exc.__cause__
        if transcript.isEnabledFor(logging.DEBUG):
            self._show(reply)
        if reply.code == 421 and stage is not Stage.QUIT:
            self._abort()
            raise ServiceClosing(reply=reply, stage=stage, host=self.host)
        return reply

    def _show(self, reply: Reply) -> None:
        last = len(reply.lines) - 1
        for index, line in enumerate(reply.lines):
            sep = " " if index == last else "-"
            transcript.debug("%s S: %d%s%s", self.host, reply.code, sep, _printable(line))

    def _read_replies(
        self, stages: Sequence[Stage], check: Callable[[Reply, Stage], object]
    ) -> list[Reply]:
        """Read one reply per stage, in order (the replies to a pipelined
        group), each within its own stage's deadline when it must be waited
        for; those already received are parsed in one pass.  *check* sees
        each reply before the next one is waited for (it raises when a reply
        cannot answer its command: waiting on would only time out).

        Raises: as ``_read``, and what *check* raises.
        """
        parser = self._parser
        count = len(stages)
        replies: list[Reply] = []
        while True:
            done = len(replies)
            try:
                # Never a 421: take() leaves one for _read, which acts on it.
                ready = parser.take(count - done) if parser.buffered else []
            except SMTPClientError as exc:
                raise self._broken(exc, stages[done]) from exc.__cause__
            if ready:
                logged = transcript.isEnabledFor(logging.DEBUG)
                for reply, stage in zip(ready, stages[done:], strict=False):
                    if logged:
                        self._show(reply)
                    check(reply, stage)
                replies += ready
                done = len(replies)
            if done == count:
                return replies
            reply = self._read(stages[done])
            check(reply, stages[done])
            replies.append(reply)
            if done + 1 == count:
                return replies

    def _command(self, line: bytes, stage: Stage, *, shown: str | None = None) -> Reply:
        self._write(line, stage, shown=shown)
        return self._read(stage)

    def _server_spoke(self, stage: Stage) -> bool:
        """True when the server sent data nobody asked for; never waits.

        Under TLS 1.3 a readable socket may hold only a session ticket or a
        key update: that is read and is not "data".

        Raises:
            ServerDisconnected: the server hung up (the session is closed).
        """
        if self._parser.buffered:
            return True
        if not self._transport.readable():
            return False
        try:
            data = self._transport.read_now(stage)
        except SMTPClientError as exc:
            raise self._broken(exc, stage) from exc.__cause__
        if data is None:
            return False
        self._parser.feed(data)
        return True

    def _check_unsolicited(self, stage: Stage) -> None:
        """Before a new command: bytes nobody asked for mean the reply stream
        is out of step, and pairing them with our next command would shift
        every result after it."""
        if self._server_spoke(stage):
            try:
                early = self._parser.next_reply()
            except ProtocolError:
                early = None
            self._abort()
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

    def _broken(self, exc: SMTPClientError, stage: Stage) -> SMTPClientError:
        self._abort()
        if exc.host is None:
            exc.host = self.host
        if exc.stage is None:
            exc.stage = stage
        return exc

    def _error(
        self, stage: Stage, reply: Reply, message: str | None = None, **context: Any
    ) -> SMTPClientError:
        """The exception for a refusal *reply* at *stage*."""
        cls = error_for(stage, reply)
        if cls is ProtocolError:
            self._abort()
            message = f"unexpected reply {reply.code} at stage {stage}"
        return cls(message, reply=reply, stage=stage, host=self.host, **context)

    def _abort(self) -> None:
        """Close at once, no QUIT: after an error the stream cannot be trusted."""
        self._transport.close()
        if self._state is not SessionState.CLOSED:
            self._state = SessionState.BROKEN

    def _drop(self) -> None:
        # After fork: close our copy of the descriptor only (no shutdown(),
        # no TLS close_notify), so the parent's connection is untouched.
        self._transport.close()
        self._state = SessionState.CLOSED

    def _close_politely(self) -> None:
        try:
            self._write(commands.quit_(), Stage.QUIT)
            self._read(Stage.QUIT)
        except SMTPClientError:
            pass
        self._abort()
