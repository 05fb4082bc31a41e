"""What a send produced: every recipient's own reply, the data reply, TLS details."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smtpclient.protocol.reply import Reply
from smtpclient.tls import TLSInfo

__all__ = ["SendResult"]

# "250 2.0.0 Ok: queued as 4Xyz12" (Postfix), "250 OK id=1abc-00" (Exim),
# "250 2.0.0 <id> Message accepted" and similar.
_QUEUE_ID = re.compile(r"(?:queued as|id=|Queued as|queued with id)\s*<?([A-Za-z0-9._@-]+)>?")


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message.

    A ``SendResult`` is returned only when the server gave a final 2xx reply
    to the message data (for at least one recipient).  Partial success is
    reported here, not raised: check ``refused``.

    Attributes:
        sender: the envelope sender as given.
        recipients: every envelope recipient, in the order given.
        accepted: recipient -> its RCPT reply, for recipients the server took
            responsibility for.
        refused: recipient -> the reply that refused it (at RCPT, or, under
            LMTP, after the data).
        data_replies: the final reply of each transaction (more than one when
            the recipients were split into several transactions).
        recipient_data_replies: accepted recipient -> the final data reply
            that covers it (its own reply under LMTP).
        host: the server's name; ``address`` the address connected to.
        tls: TLS details, or None for a plaintext session.
    """

    sender: str
    recipients: tuple[str, ...]
    accepted: dict[str, Reply] = field(default_factory=dict)
    refused: dict[str, Reply] = field(default_factory=dict)
    data_replies: tuple[Reply, ...] = ()
    recipient_data_replies: dict[str, Reply] = field(default_factory=dict)
    host: str = ""
    address: str = ""
    tls: TLSInfo | None = None

    @property
    def data_reply(self) -> Reply | None:
        """The final reply to the message data (the last one, if split)."""
        return self.data_replies[-1] if self.data_replies else None

    @property
    def queue_id(self) -> str | None:
        """The server's queue id, if its final reply names one."""
        reply = self.data_reply
        if reply is None:
            return None
        match = _QUEUE_ID.search(reply.text)
        return match.group(1) if match else None

    @property
    def unknown(self) -> tuple[str, ...]:
        """Recipients with no known outcome (neither accepted nor refused)."""
        return tuple(r for r in self.recipients if r not in self.accepted and r not in self.refused)

    @property
    def all_accepted(self) -> bool:
        """True when every recipient was accepted."""
        return len(self.accepted) == len(set(self.recipients))

    def __bool__(self) -> bool:
        return bool(self.accepted)
