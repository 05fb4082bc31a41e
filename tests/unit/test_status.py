"""(stage, reply) -> exception class."""

from __future__ import annotations

import pytest

from smtpclient import errors
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.protocol.status import error_for


@pytest.mark.parametrize(
    ("stage", "code", "expected"),
    [
        (Stage.GREETING, 554, errors.PermanentGreetingRefused),
        (Stage.GREETING, 450, errors.TransientGreetingRefused),
        (Stage.EHLO, 550, errors.PermanentHeloRefused),
        (Stage.STARTTLS, 454, errors.StartTLSError),
        (Stage.AUTH, 535, errors.AuthenticationFailed),
        (Stage.AUTH, 534, errors.PermanentAuthError),
        (Stage.AUTH, 454, errors.TransientAuthError),
        (Stage.MAIL, 451, errors.TransientSenderRefused),
        (Stage.MAIL, 553, errors.PermanentSenderRefused),
        (Stage.RCPT, 550, errors.PermanentRecipientsRefused),
        (Stage.RCPT, 450, errors.TransientRecipientsRefused),
        (Stage.RCPT, 552, errors.TransientRecipientsRefused),  # RFC 5321 §4.5.3.1.10
        (Stage.DATA_INIT, 554, errors.PermanentDataRefused),
        (Stage.DATA_DONE, 452, errors.TransientDataRefused),
        (Stage.DATA_DONE, 552, errors.PermanentDataRefused),
        (Stage.DATA_BLOCK, 554, errors.PermanentDataRefused),
        (Stage.RSET, 500, errors.PermanentCommandRefused),
        (Stage.COMMAND, 450, errors.TransientCommandRefused),
        (Stage.MAIL, 421, errors.ServiceClosing),
        (Stage.DATA_DONE, 421, errors.ServiceClosing),
        (Stage.MAIL, 250, errors.ProtocolError),
        (Stage.RCPT, 354, errors.ProtocolError),
    ],
)
def test_table(stage: Stage, code: int, expected: type) -> None:
    assert error_for(stage, Reply(code)) is expected
