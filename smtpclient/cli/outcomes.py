"""One outcome line per recipient, from a ``SendResult``, an exception or a delivery report.

The words are the same everywhere in the CLI:

* ``accepted`` -- the server took responsibility for the message (relay).
* ``delivered`` -- the recipient's own MX host took it (``--direct``).
* ``refused`` -- a permanent refusal (5xx): do not retry as it is.
* ``deferred`` -- a transient failure (4xx, timeout, no connection): retry later.
* ``unknown`` -- the connection failed after the final ".": it may have arrived.
* ``invalid`` -- the input for this recipient was wrong; nothing was sent.
* ``not sent`` -- never attempted: AUTH was refused before sending (the
  connection is not verified TLS) or failed, or ``--bulk`` was interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from smtpclient.cli.common import (
    EX_DATAERR,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    combine,
    exit_code_for,
)
from smtpclient.errors import (
    AuthenticationFailed,
    InsecureAuthError,
    RecipientsRefused,
    SMTPClientError,
)
from smtpclient.errors import safe_text as _safe
from smtpclient.protocol.reply import Reply
from smtpclient.report import Status
from smtpclient.results import SendResult

if TYPE_CHECKING:
    from smtpclient.report import DeliveryReport

__all__ = [
    "STATUSES",
    "Outcome",
    "exit_code",
    "from_error",
    "from_report",
    "from_result",
    "print_outcomes",
]

STATUSES = ("accepted", "delivered", "refused", "deferred", "unknown", "invalid", "not sent")


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient; ``code`` is its exit-code share."""

    recipient: str
    status: str
    detail: str
    code: int

    @property
    def ok(self) -> bool:
        """True for accepted or delivered."""
        return self.code == EX_OK


def describe(reply: Reply) -> str:
    """``"550 5.1.1 No such user"`` on one line, safe to print."""
    return _safe(f"{reply.code} {reply.text}".replace("\n", " / "), 300)


def _from_reply(recipient: str, reply: Reply) -> Outcome:
    if reply.is_positive:
        return Outcome(recipient, "accepted", describe(reply), EX_OK)
    if reply.is_transient:
        return Outcome(recipient, "deferred", describe(reply), EX_TEMPFAIL)
    return Outcome(recipient, "refused", describe(reply), EX_UNAVAILABLE)


def from_result(result: SendResult) -> list[Outcome]:
    """One outcome per envelope recipient of a send that returned."""
    outcomes = []
    final = result.data_reply
    for recipient in dict.fromkeys(result.recipients):
        if recipient in result.refused:
            outcomes.append(_from_reply(recipient, result.refused[recipient]))
        elif recipient in result.accepted:
            reply = result.recipient_data_replies.get(recipient, final)
            outcomes.append(_from_reply(recipient, reply or result.accepted[recipient]))
        else:
            outcomes.append(Outcome(recipient, "unknown", "no reply recorded", EX_TEMPFAIL))
    return outcomes


def _from_exception(recipient: str, exc: BaseException) -> Outcome:
    text = _safe(str(exc), 300)
    code = exit_code_for(exc)
    if isinstance(exc, InsecureAuthError):
        # Nothing reached the server: we declined to send the password.
        return Outcome(recipient, "not sent", f"login not attempted: {text}", code)
    if isinstance(exc, AuthenticationFailed):
        return Outcome(recipient, "not sent", f"login failed: {text}", code)
    if isinstance(exc, SMTPClientError) and exc.outcome_unknown:
        return Outcome(recipient, "unknown", text, EX_TEMPFAIL)
    if code == EX_TEMPFAIL:
        return Outcome(recipient, "deferred", text, code)
    if code == EX_DATAERR:
        return Outcome(recipient, "invalid", text, code)
    return Outcome(recipient, "refused", text, code)


def from_error(exc: BaseException, recipients: Sequence[str]) -> list[Outcome]:
    """One outcome per recipient of a send that raised *exc*.

    Recipients refused at RCPT keep their own reply; the others share the
    exception (the data was refused, the connection failed, ...).
    """
    refused: dict[str, Reply] = {}
    if isinstance(exc, SMTPClientError) and exc.result is not None:
        refused.update(exc.result.refused)
    if isinstance(exc, RecipientsRefused):
        refused.update(exc.replies)
    return [
        _from_reply(r, refused[r]) if r in refused else _from_exception(r, exc)
        for r in dict.fromkeys(recipients)
    ]


def from_report(report: DeliveryReport) -> list[Outcome]:
    """Outcomes from direct delivery's ``DeliveryReport``, one per recipient."""
    codes = {
        Status.DELIVERED: ("delivered", EX_OK),
        Status.DEFERRED: ("deferred", EX_TEMPFAIL),
        Status.FAILED: ("refused", EX_UNAVAILABLE),
        Status.UNKNOWN: ("unknown", EX_TEMPFAIL),
    }
    outcomes = []
    for item in report:
        word, code = codes[item.status]
        detail = describe(item.reply) if item.reply is not None else _safe(item.reason, 300)
        if item.host and item.status is Status.DELIVERED:
            detail = f"{detail} (by {item.host})"
        outcomes.append(Outcome(item.recipient, word, detail, code))
    return outcomes


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """The command's exit code for these outcomes (see ``common.combine``)."""
    return combine([outcome.code for outcome in outcomes])


def print_outcomes(outcomes: Iterable[Outcome], stream: TextIO) -> None:
    """``status  recipient  detail``, aligned, one line each."""
    rows = list(outcomes)
    width = max((len(o.recipient) for o in rows), default=0)
    for outcome in rows:
        print(f"{outcome.status:<9} {outcome.recipient:<{width}}  {outcome.detail}", file=stream)
