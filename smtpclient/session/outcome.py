"""One message's outcome, assembled from its transactions into a SendResult."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smtpclient.errors import (
    DataRefused,
    PermanentRecipientsRefused,
    SenderRefused,
    SMTPClientError,
    TransientRecipientsRefused,
)
from smtpclient.plan import Plan
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.protocol.status import is_transient_refusal
from smtpclient.results import SendResult

if TYPE_CHECKING:
    from smtpclient.session.config import SendConfig
    from smtpclient.session.transaction import Transaction

__all__ = ["MessageOutcome"]


class MessageOutcome:
    """Collects the transactions of one message into its SendResult."""

    def __init__(self, config: SendConfig, plan: Plan) -> None:
        self.config = config
        self.plan = plan
        self.accepted: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.final: dict[str, Reply] = {}
        self.data_replies: list[Reply] = []
        self.failure: SMTPClientError | None = None

    def add(self, tx: Transaction) -> None:
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
        config = self.config
        return SendResult(
            sender=self.plan.envelope.sender,
            recipients=tuple(self.plan.addresses),
            accepted=dict(self.accepted),
            refused=dict(self.refused),
            data_replies=tuple(self.data_replies),
            recipient_data_replies=dict(self.final),
            host=config.host,
            address=config.address,
            tls=config.tls,
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
            host=self.config.host,
            recipients=self.refused,
            result=result,
        )
