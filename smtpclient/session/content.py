"""Streaming a message's content: DATA with dot-stuffing, or BDAT chunks.

Small in-memory messages are encoded in one step and written at once; the
rest is read in blocks and written as it is encoded, so memory stays
bounded whatever the size.  If the caller's content fails mid-stream (a
read error, an iterator that raises, Ctrl-C) the connection is closed
instead of sending the end marker of half a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smtpclient.body import BLOCK_SIZE
from smtpclient.errors import MessageContentError, SMTPClientError
from smtpclient.plan import Plan
from smtpclient.protocol import commands
from smtpclient.protocol.data import BodyScanner, DataEncoder, Framing
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.session.transcript import bdat_shown, content_shown

if TYPE_CHECKING:
    from smtpclient.session.channel import Channel
    from smtpclient.session.config import SendConfig

__all__ = ["BDAT_WINDOW", "ContentSender"]

BDAT_WINDOW = 4  # BDAT chunks in flight before a reply is read


def _block_shown(data: bytes) -> str:
    return f"<{len(data)} octets of message content>"


class ContentSender:
    """The content half of a transaction (mixed into ``transaction.Transaction``)."""

    channel: Channel
    config: SendConfig
    plan: Plan
    failure: SMTPClientError | None
    _outstanding: int  # BDAT replies not read yet

    def _move_accepted_to_refused(self, reply: Reply) -> None:
        raise NotImplementedError

    def send_content(self, hold: bool = False) -> bytes | None:
        """Stream the content.  With *hold*, the last piece (with the end
        marker, or the BDAT LAST chunk) is returned instead of written.
        Returns None when a BDAT chunk was refused (``failure`` says why)."""
        plan = self.plan
        guard = BodyScanner() if (plan.check_eight_bit or plan.check_lines) else None
        encoder = DataEncoder(plan.framing)
        channel = self.channel
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
            channel.write(
                tail, Stage.DATA_BLOCK, shown=content_shown if data_framing else bdat_shown
            )
            return b""
        try:
            return self._stream(encoder, guard, hold)
        except BaseException as exc:
            if not isinstance(exc, SMTPClientError):
                # The caller's content failed mid-stream (a read error, an
                # iterator that raised, Ctrl-C): never send the end marker
                # of a half message.  Hanging up makes the server drop it.
                channel.abort()
            raise

    def _stream(self, encoder: DataEncoder, guard: BodyScanner | None, hold: bool) -> bytes | None:
        plan = self.plan
        channel = self.channel
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
                channel.write(joined, Stage.DATA_BLOCK, shown=_block_shown)
            else:
                if ready is not None and not self._bdat(ready):
                    return None
                ready = joined
        tail = (ready or b"") + b"".join(pieces) + encoder.finish()
        if not data_framing:
            tail = commands.bdat(len(tail), last=True) + tail
        if hold:
            return tail
        channel.write(tail, Stage.DATA_BLOCK, shown=content_shown if data_framing else bdat_shown)
        return b""

    def _guard(self, scanner: BodyScanner) -> None:
        problem = None
        if self.plan.check_eight_bit and scanner.eight_bit:
            problem = "it has 8-bit bytes and the server does not offer 8BITMIME"
        elif self.plan.check_lines and scanner.long_lines:
            problem = "it has a line over 998 octets"
        if problem:
            # Closing without the end marker makes the server drop the message.
            self.channel.abort()
            raise MessageContentError(
                f"stopped sending the message: {problem}; nothing was delivered"
            )

    def _bdat(self, chunk: bytes) -> bool:
        """Send one non-final BDAT chunk; False if a chunk was refused."""
        channel = self.channel
        channel.write(commands.bdat(len(chunk)) + chunk, Stage.DATA_BLOCK, shown=bdat_shown)
        self._outstanding += 1
        while self._outstanding >= (BDAT_WINDOW if self.config.pipelined else 1):
            self._outstanding -= 1
            reply = channel.read(Stage.DATA_BLOCK)
            if not reply.is_positive:
                # RFC 3030 §3: after a failed chunk, stop, collect what is
                # in flight, and reset.
                while self._outstanding:
                    self._outstanding -= 1
                    channel.read(Stage.DATA_BLOCK)
                self.failure = channel.error(Stage.DATA_BLOCK, reply)
                self._move_accepted_to_refused(reply)
                channel.reset_after_failure()
                return False
        return True
