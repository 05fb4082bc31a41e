"""From (stage, reply) to the exception class that says what to do next.

One table decides it, so every layer maps replies the same way:

* 421 at any stage: the server is closing the connection (``ServiceClosing``).
* 4xx: the transient class of the stage, 5xx: the permanent one.
* 552 to RCPT counts as transient (RFC 5321 §4.5.3.1.10: "too much mail
  data" there is an old way of saying "too many recipients").
* 535 to AUTH is ``AuthenticationFailed``: bad credentials, never retried
  with another mechanism.
* A success or intermediate code where a failure is being classified is a
  protocol error (the reply does not belong to the command).
"""

from __future__ import annotations

from smtpclient import errors
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage

__all__ = ["error_for", "is_transient_refusal"]

_BY_STAGE: dict[Stage, tuple[type[errors.SMTPClientError], type[errors.SMTPClientError]]] = {
    Stage.GREETING: (errors.TransientGreetingRefused, errors.PermanentGreetingRefused),
    Stage.EHLO: (errors.TransientHeloRefused, errors.PermanentHeloRefused),
    Stage.STARTTLS: (errors.StartTLSError, errors.StartTLSError),
    Stage.AUTH: (errors.TransientAuthError, errors.PermanentAuthError),
    Stage.MAIL: (errors.TransientSenderRefused, errors.PermanentSenderRefused),
    Stage.RCPT: (errors.TransientRecipientsRefused, errors.PermanentRecipientsRefused),
    Stage.DATA_INIT: (errors.TransientDataRefused, errors.PermanentDataRefused),
    Stage.DATA_BLOCK: (errors.TransientDataRefused, errors.PermanentDataRefused),
    Stage.DATA_DONE: (errors.TransientDataRefused, errors.PermanentDataRefused),
}
_DEFAULT = (errors.TransientCommandRefused, errors.PermanentCommandRefused)


def is_transient_refusal(stage: Stage, reply: Reply) -> bool:
    """True when a refusal at *stage* is worth retrying later."""
    if stage is Stage.RCPT and reply.code == 552:
        return True
    return reply.is_transient


def error_for(stage: Stage, reply: Reply) -> type[errors.SMTPClientError]:
    """The exception class for a failure *reply* at *stage*."""
    if reply.code == 421:
        return errors.ServiceClosing
    if not (reply.is_transient or reply.is_permanent):
        return errors.ProtocolError
    if stage is Stage.AUTH and reply.code == 535:
        return errors.AuthenticationFailed
    transient, permanent = _BY_STAGE.get(stage, _DEFAULT)
    return transient if is_transient_refusal(stage, reply) else permanent
