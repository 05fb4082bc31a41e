"""What the ``smtpclient.send_message`` task carries and returns, without
Celery: the JSON-safe payload, the retry schedule, and the verdict on each
attempt.  (``smtpclient.contrib.celery`` wires these to Celery.)

A payload is a dict of JSON types only -- the message travels as base64
bytes next to its envelope, never pickled::

    {"v": 1, "sender": "a@example.com", "recipients": ["b@example.net"],
     "data": "<base64>", "message_id": "<...>", "smtputf8": false,
     "attempt": 1, "accepted": [], "refused": {}}

``attempt``, ``accepted`` and ``refused`` carry what earlier attempts
achieved, so a retry sends only to the recipients still to do and the final
result reports every recipient.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import Any

from smtpclient.errors import (
    CertificateVerifyError,
    PermanentError,
    SMTPClientError,
    TLSRequiredError,
    TransientError,
)
from smtpclient.message import envelope_addresses, serialise
from smtpclient.protocol.reply import Reply
from smtpclient.results import SendResult

__all__ = ["Job", "RetrySchedule", "Verdict", "encode", "judge_error", "judge_result"]

PAYLOAD_VERSION = 1
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
# Waiting cannot fix these: a certificate that does not verify, TLS not offered.
_HOPELESS = (CertificateVerifyError, TLSRequiredError)


@dataclass(frozen=True)
class Job:
    """One message's payload, decoded; *attempt* counts from 1."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str | None = None
    smtputf8: bool = False
    attempt: int = 1
    accepted: tuple[str, ...] = ()
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe dict the task takes."""
        return {
            "v": PAYLOAD_VERSION,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "data": base64.b64encode(self.data).decode("ascii"),
            "message_id": self.message_id,
            "smtputf8": self.smtputf8,
            "attempt": self.attempt,
            "accepted": list(self.accepted),
            "refused": {rcpt: [code, text] for rcpt, (code, text) in self.refused.items()},
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Job:
        """Decode a payload made by ``to_payload``.

        Raises:
            ValueError: not a payload of this version, or a field of the
                wrong type (the message cannot be sent as it is).
        """
        try:
            if payload.get("v") != PAYLOAD_VERSION:
                raise ValueError(f"unknown payload version {payload.get('v')!r}")
            recipients = tuple(_strings(payload["recipients"]))
            refused = {
                str(rcpt): (int(reply[0]), str(reply[1]))
                for rcpt, reply in dict(payload.get("refused") or {}).items()
            }
            job = cls(
                sender=_string(payload["sender"]),
                recipients=recipients,
                data=base64.b64decode(_string(payload["data"]), validate=True),
                message_id=_optional_string(payload.get("message_id")),
                smtputf8=bool(payload.get("smtputf8", False)),
                attempt=int(payload.get("attempt", 1)),
                accepted=tuple(_strings(payload.get("accepted") or [])),
                refused=refused,
            )
        except (KeyError, TypeError, IndexError, binascii.Error, AttributeError) as exc:
            raise ValueError(f"malformed smtpclient.send_message payload: {exc!r}") from exc
        if not job.recipients or job.attempt < 1:
            raise ValueError("malformed smtpclient.send_message payload: no recipients")
        return job


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _optional_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _strings(values: Any) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"expected a list of strings, not {type(values).__name__}")
    return [_string(v) for v in values]


def encode(message: Message | tuple[str, Sequence[str] | str, bytes]) -> Job:
    """A ``Job`` for an ``email.message.Message`` (envelope from its headers,
    Bcc removed) or a ``(sender, recipients, bytes)`` tuple.

    A message without a Message-ID gets one, so that the receiving side can
    recognise the duplicate that at-least-once delivery may produce.

    Raises:
        TypeError: neither form, or data that is not bytes.
        ValueError: no sender or recipients; a non-ASCII local part in a
            header address (see ``smtpclient.message.serialise``).
    """
    if isinstance(message, Message):
        sender, recipients = envelope_addresses(message)
        international = not all(a.isascii() for a in [sender, *recipients])
        extra: list[tuple[str, str]] = []
        message_id = message.get("Message-ID")
        if message_id is None:
            message_id = email.utils.make_msgid(domain=_domain(sender))
            extra.append(("Message-ID", message_id))
        data = serialise(message, utf8=international, extra_headers=extra)
        return Job(sender, tuple(recipients), data, str(message_id).strip(), international)
    if not (isinstance(message, tuple) and len(message) == 3):
        raise TypeError(
            "enqueue() takes an email.message.Message or a (sender, recipients, bytes) tuple, "
            f"not {type(message).__name__}"
        )
    sender, rcpts, data = message
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"the message data must be bytes, not {type(data).__name__}")
    recipients = [rcpts] if isinstance(rcpts, str) else list(rcpts)
    if not isinstance(sender, str) or not recipients:
        raise ValueError("a (sender, recipients, bytes) tuple needs a sender and recipients")
    data = bytes(data)
    header_end = data.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(data, 0, header_end if header_end >= 0 else len(data))
    if found:
        message_id = found.group(1).decode("ascii", "replace")
    else:
        message_id = email.utils.make_msgid(domain=_domain(sender))
        data = b"Message-ID: " + message_id.encode("ascii") + b"\r\n" + data
    international = not all(a.isascii() for a in [sender, *recipients])
    return Job(sender, tuple(str(r) for r in recipients), data, message_id, international)


def _domain(address: str) -> str | None:
    domain = address.rpartition("@")[2]
    return domain if domain and domain.isascii() else None


@dataclass(frozen=True)
class RetrySchedule:
    """When the task tries again: ``attempts`` in all (the first included);
    the wait before attempt n+1 is ``first_delay * multiplier ** (n - 1)``,
    at most ``max_delay`` and at most half the broker's visibility timeout
    (a message held longer would be handed to another worker as well),
    then spread by up to ``jitter`` (a fraction) either way.

    Celery config key ``smtpclient_retry``: a dict of these fields.

    Raises:
        ValueError: an impossible setting.
    """

    attempts: int = 8
    first_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, not {self.attempts!r}")
        if self.first_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, visibility_timeout: float) -> float:
        """Seconds to wait after failed attempt *attempt* (1-based)."""
        base = self.first_delay * self.multiplier ** max(attempt - 1, 0)
        cap = min(self.max_delay, visibility_timeout / 2)
        base = min(base, cap)
        spread = base * self.jitter
        return min(cap, max(0.0, base + random.uniform(-spread, spread)))  # noqa: S311


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt: ``retry`` holds the recipients to try
    again (empty: done); ``result`` is the task's result if done."""

    retry: tuple[str, ...]
    job: Job  # the job with this attempt's accepted/refused merged in
    result: dict[str, Any]


def _reply(reply: Reply | None) -> list[Any] | None:
    return None if reply is None else [reply.code, reply.text]


def _result(
    job: Job, status: str, *, final: SendResult | None = None, error: BaseException | None = None
) -> dict[str, Any]:
    reply = final.data_reply if final is not None else getattr(error, "reply", None)
    return {
        "status": status,
        "message_id": job.message_id,
        "sender": job.sender,
        "accepted": list(job.accepted),
        "refused": {rcpt: [code, text] for rcpt, (code, text) in job.refused.items()},
        "reply": _reply(reply),
        "queue_id": final.queue_id if final is not None else None,
        "host": (final.host if final is not None else getattr(error, "host", None)) or None,
        "attempts": job.attempt,
        "error": None if error is None else str(error),
    }


def _split(job: Job, result: SendResult | None, attempts_left: bool) -> tuple[Job, tuple[str, ...]]:
    """Merge one attempt's per-recipient outcome into *job*; return it and
    the recipients refused with a 4xx that may be tried again."""
    if result is None:
        return job, ()
    accepted = list(job.accepted) + [r for r in job.recipients if r in result.accepted]
    refused = dict(job.refused)
    again: list[str] = []
    for rcpt in job.recipients:
        reply = result.refused.get(rcpt)
        if reply is None:
            continue
        if 400 <= reply.code < 500 and attempts_left:
            again.append(rcpt)
        else:
            refused[rcpt] = (reply.code, reply.text)
    return replace(job, accepted=tuple(accepted), refused=refused), tuple(again)


def judge_result(job: Job, result: SendResult, schedule: RetrySchedule) -> Verdict:
    """The message was accepted for some recipients: retry only the ones
    refused with a 4xx (while attempts are left)."""
    merged, again = _split(job, result, job.attempt < schedule.attempts)
    return Verdict(again, merged, _result(merged, "sent", final=result))


def judge_error(job: Job, error: BaseException, schedule: RetrySchedule) -> Verdict:
    """The attempt raised: "unknown" if the message may have been delivered
    (never retried), a retry for a transient failure while attempts are
    left, else "failed" with the reply.  Recipients accepted by earlier
    attempts keep the status "sent"."""
    attempts_left = job.attempt < schedule.attempts
    partial = getattr(error, "result", None)
    merged, again = _split(job, partial if isinstance(partial, SendResult) else None, attempts_left)
    if isinstance(error, SMTPClientError) and error.outcome_unknown:
        return Verdict((), merged, _result(merged, "unknown", error=error))
    transient = isinstance(error, TransientError) and not isinstance(error, _HOPELESS)
    if partial is None and transient and attempts_left:
        again = merged.recipients  # nothing was accepted or refused: all again
    elif partial is None and not isinstance(error, (TransientError, PermanentError)):
        again = ()
    if not again:
        # Everyone not accepted and not refused on its own gets this error's reply.
        reply = getattr(error, "reply", None)
        refused = dict(merged.refused)
        for rcpt in merged.recipients:
            if rcpt not in merged.accepted and rcpt not in refused:
                refused[rcpt] = (reply.code, reply.text) if reply is not None else (0, str(error))
        merged = replace(merged, refused=refused)
    status = "sent" if merged.accepted else "failed"
    return Verdict(again, merged, _result(merged, status, error=error))
