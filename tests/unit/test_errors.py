"""The error tree: branches, builtins, smtplib classes, pickling, safe printing."""

from __future__ import annotations

import inspect
import pickle
import smtplib
import ssl

import pytest

from smtpclient import errors
from smtpclient.errors import (
    PermanentError,
    SMTPClientError,
    TransientError,
)
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult

ALL_CLASSES = [
    obj
    for _, obj in inspect.getmembers(errors, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
]


def make(cls: type[BaseException]) -> BaseException:
    reply = Reply.build(550, "no such user", "5.1.1")
    if issubclass(cls, errors.RecipientsRefused):
        return cls("all refused", reply=reply, recipients={"a@x.example": reply}, stage=Stage.RCPT)
    if issubclass(cls, errors.SenderRefused):
        return cls(reply=reply, sender="s@x.example", stage=Stage.MAIL, host="mx.example")
    if issubclass(cls, errors.ExtensionNotSupported):
        return cls("no SMTPUTF8", extension="SMTPUTF8")
    if issubclass(cls, SMTPClientError):
        return cls(
            "something", reply=reply, stage=Stage.DATA_DONE, host="mx.example", outcome_unknown=True
        )
    return cls("bad input")


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_every_class_pickles_with_its_evidence(cls: type[BaseException]) -> None:
    exc = make(cls)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is cls
    assert str(copy) == str(exc)
    assert copy.args == exc.args
    for name in (
        "reply",
        "stage",
        "host",
        "outcome_unknown",
        "sender",
        "recipients",
        "extension",
        "smtp_code",
        "smtp_error",
    ):
        assert getattr(copy, name, None) == getattr(exc, name, None)
    if isinstance(exc, OSError):
        # OSError(code, text) would set errno; ours never does.
        assert copy.errno is None


def test_root_is_an_smtplib_exception() -> None:
    assert issubclass(SMTPClientError, smtplib.SMTPException)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (errors.SMTPTimeoutError, (TimeoutError, TransientError)),
        (errors.ConnectError, (ConnectionError, TransientError)),
        (errors.ServerDisconnected, (ConnectionError, smtplib.SMTPServerDisconnected)),
        (errors.TLSError, (ssl.SSLError, TransientError)),
        (errors.CertificateVerifyError, (ssl.SSLError,)),
        (errors.TransientSenderRefused, (smtplib.SMTPSenderRefused, TransientError)),
        (errors.PermanentSenderRefused, (smtplib.SMTPSenderRefused, PermanentError)),
        (errors.PermanentRecipientsRefused, (smtplib.SMTPRecipientsRefused, PermanentError)),
        (errors.TransientDataRefused, (smtplib.SMTPDataError, TransientError)),
        (errors.PermanentGreetingRefused, (smtplib.SMTPConnectError, PermanentError)),
        (errors.PermanentHeloRefused, (smtplib.SMTPHeloError,)),
        (errors.AuthenticationFailed, (smtplib.SMTPAuthenticationError, PermanentError)),
        (errors.ExtensionNotSupported, (smtplib.SMTPNotSupportedError, PermanentError)),
        (errors.ServiceClosing, (TransientError,)),
        (errors.ProtocolError, (SMTPClientError,)),
    ],
)
def test_builtin_and_smtplib_bases(cls: type[BaseException], bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(cls, base)


@pytest.mark.parametrize(
    "cls",
    [
        errors.InvalidAddressError,
        errors.SessionClosedError,
        errors.MessageContentError,
        errors.SessionBusyError,
    ],
)
def test_caller_mistakes_are_not_os_errors(cls: type[BaseException]) -> None:
    assert not issubclass(cls, OSError)
    assert issubclass(cls, (ValueError, TypeError, RuntimeError))


def test_smtplib_attributes() -> None:
    exc = make(errors.PermanentSenderRefused)
    assert exc.smtp_code == 550  # type: ignore[attr-defined]
    assert exc.smtp_error == b"5.1.1 no such user"  # type: ignore[attr-defined]
    assert exc.sender == "s@x.example"  # type: ignore[attr-defined]


def test_str_shows_the_evidence_and_escapes_control_characters() -> None:
    reply = Reply(554, ("bad \x1b[31mred\x07 text",))
    exc = errors.PermanentDataRefused(reply=reply, stage=Stage.DATA_DONE, host="mx.example")
    text = str(exc)
    assert "554" in text and "stage=data_done" in text and "host=mx.example" in text
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text


def test_outcome_unknown_is_said() -> None:
    exc = errors.SMTPTimeoutError("timed out", stage=Stage.DATA_DONE, outcome_unknown=True)
    assert "may have been delivered" in str(exc)
    assert exc.is_transient


def test_partial_result_travels_with_the_exception() -> None:
    result = SendResult("s@x.example", ("a@x.example",), refused={"a@x.example": Reply(550)})
    exc = errors.PermanentRecipientsRefused("all refused", recipients=result.refused, result=result)
    assert pickle.loads(pickle.dumps(exc)).result == result
