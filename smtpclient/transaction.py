"""Mail transactions: moved to ``smtpclient.session.transaction``; these
names stay importable here."""

from smtpclient.session.transaction import (
    MAX_RECIPIENTS,
    PIPELINE_WINDOW,
    Transaction,
    send_one,
    transactions,
)

__all__ = ["MAX_RECIPIENTS", "PIPELINE_WINDOW", "Transaction", "send_one", "transactions"]
