"""The error tree: branches, builtins, smtplib classes, pickling, safe printing."""

from __future__ import annotations

import ast
import importlib
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
from smtpclient.errors import base as errors_base
from smtpclient.errors import replies as errors_replies
from smtpclient.errors import usage as errors_usage
from smtpclient.protocol.reply import Reply
from smtpclient.protocol.state import Stage
from smtpclient.results import SendResult

from .test_import_graph import ROOT as PACKAGE
from .test_import_graph import import_graph

ERROR_MODULES = (errors_base, errors_replies, errors_usage)
ALL_CLASSES = [
    obj
    for module in ERROR_MODULES
    for _, obj in inspect.getmembers(module, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == module.__name__
]


def make(cls: type[BaseException]) -> BaseException:
    reply = Reply.build(550, "no such user", "5.1.1")
    if issubclass(cls, errors.ReplyLimitExceeded):
        return cls("reply has more than 5 lines", limit="max_lines", value=5)  # type: ignore[call-arg]
    if issubclass(cls, errors.ServiceClosing):
        return cls(reply=Reply.build(421, "bye", "4.3.2"), stage=Stage.RSET)  # type: ignore[call-arg]
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
    assert len(ALL_CLASSES) > 60  # the collection above found the tree
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
        "replies",
        "extension",
        "smtp_code",
        "smtp_error",
        "limit",
        "value",
        "code",
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


# --- one home for every exception class ------------------------------------------------

OLD_HOMES = [
    ("smtpclient.dnslookup", "DNSError"),
    ("smtpclient.dnslookup", "TransientDNSError"),
    ("smtpclient.dnslookup", "DNSTimeoutError"),
    ("smtpclient.dnslookup", "PermanentDNSError"),
    ("smtpclient.dnslookup", "DomainNotFound"),
    ("smtpclient.dnslookup", "NullMXError"),
    ("smtpclient.dnslookup", "NoMailHostError"),
    ("smtpclient.dnslookup", "MailLoopError"),
    ("smtpclient.resolver", "DNSError"),
    ("smtpclient.resolver", "NullMXError"),
    ("smtpclient.delivery", "RequireTLSUnavailable"),
    ("smtpclient.saslprep", "SASLError"),
    ("smtpclient.mechanisms", "SASLError"),
    ("smtpclient.compat", "ReplyTimeoutError"),
    ("smtpclient.compat", "ReplyTooLargeError"),
    ("smtpclient.demo", "DemoUnavailable"),
    ("smtpclient.cli.common", "CommandError"),
    ("smtpclient", "SMTPClientError"),
    ("smtpclient", "ProtocolError"),
]


@pytest.mark.parametrize(("module", "name"), OLD_HOMES, ids=[f"{m}.{n}" for m, n in OLD_HOMES])
def test_old_import_paths_give_the_same_class(module: str, name: str) -> None:
    old = getattr(importlib.import_module(module), name)
    assert old is getattr(errors, name)
    assert old.__module__.startswith("smtpclient.errors.")


def test_every_exception_class_of_the_package_is_defined_in_errors() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "errors" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name != "_Malformed":
                bases = [ast.unparse(base) for base in node.bases]
                if any(word in base for base in bases for word in ("Error", "Exception")):
                    found.append(f"{path.relative_to(PACKAGE)}: {node.name}({', '.join(bases)})")
    # certinfo's _Malformed is a private signal caught inside its own parser.
    assert found == []


def test_errors_is_a_leaf() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        if module == "smtpclient.errors" or module.startswith("smtpclient.errors."):
            assert all(name.startswith("smtpclient.errors") for name in imported), (
                module,
                imported,
            )


# --- smtplib's attribute shapes -----------------------------------------------------------


def test_response_errors_have_smtplib_args() -> None:
    reply = Reply(550, ("5.7.1 no", "really no"), raw=(b"5.7.1 no", b"really no"))
    exc = errors.PermanentDataRefused(reply=reply, stage=Stage.DATA_DONE)
    mirror = smtplib.SMTPDataError(550, b"5.7.1 no\nreally no")
    assert exc.args == mirror.args
    assert (exc.smtp_code, exc.smtp_error) == (mirror.smtp_code, mirror.smtp_error)
    sender = errors.TransientSenderRefused(reply=Reply(451), sender="s@x.example")
    assert sender.args == smtplib.SMTPSenderRefused(451, b"", "s@x.example").args
    assert sender.sender == "s@x.example"


def test_a_response_error_without_a_reply_has_code_minus_one() -> None:
    exc = errors.PermanentAuthError("no common mechanism", stage=Stage.AUTH)
    assert (exc.smtp_code, exc.smtp_error, exc.args) == (
        -1,
        b"no common mechanism",
        (-1, b"no common mechanism"),
    )
    plain = errors.ServerDisconnected("gone")
    assert plain.args == ("gone",)
    assert not hasattr(plain, "smtp_code")


def test_refused_recipients_unpack_as_smtplib_pairs_and_keep_the_reply() -> None:
    first = Reply.build(550, "no such user", "5.1.1")
    second = Reply(450, ("mailbox busy",))
    exc = errors.PermanentRecipientsRefused(
        recipients={"a@x.example": first, "b@x.example": second}
    )
    assert exc.args == (exc.recipients,)
    unpacked = {rcpt: (code, msg) for rcpt, (code, msg) in exc.recipients.items()}
    assert unpacked == {
        "a@x.example": (550, b"5.1.1 no such user"),
        "b@x.example": (450, b"mailbox busy"),
    }
    assert exc.recipients["a@x.example"] == (550, b"5.1.1 no such user")
    assert exc.recipients["a@x.example"][0] == 550
    pair = exc.recipients["a@x.example"]
    assert isinstance(pair, errors.ReplyPair)
    assert (pair.reply, pair.code, pair.enhanced, pair.lines, pair.text) == (
        first,
        550,
        "5.1.1",
        ("5.1.1 no such user",),
        "5.1.1 no such user",
    )
    assert exc.replies == {"a@x.example": first, "b@x.example": second}
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.recipients == exc.recipients
    assert copy.replies == exc.replies
    assert copy.recipients["a@x.example"].reply == first
    assert copy.args == exc.args


@pytest.mark.parametrize(
    ("stage", "smtplib_class"),
    [
        (Stage.GREETING, smtplib.SMTPConnectError),
        (Stage.EHLO, smtplib.SMTPHeloError),
        (Stage.AUTH, smtplib.SMTPAuthenticationError),
        (Stage.DATA_INIT, smtplib.SMTPDataError),
        (Stage.DATA_BLOCK, smtplib.SMTPDataError),
        (Stage.DATA_DONE, smtplib.SMTPDataError),
    ],
)
def test_a_421_is_the_smtplib_class_of_its_stage(
    stage: Stage, smtplib_class: type[smtplib.SMTPException]
) -> None:
    reply = Reply.build(421, "closing", "4.3.2")
    exc = errors.ServiceClosing(reply=reply, stage=stage, host="mx.example")
    assert isinstance(exc, errors.ServiceClosing) and isinstance(exc, smtplib_class)
    assert exc.args == (421, b"4.3.2 closing")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc) and copy.stage is stage and copy.args == exc.args


@pytest.mark.parametrize("stage", [None, Stage.MAIL, Stage.RCPT, Stage.RSET, Stage.COMMAND])
def test_a_421_elsewhere_is_a_plain_service_closing(stage: Stage | None) -> None:
    exc = errors.ServiceClosing(reply=Reply(421), stage=stage)
    assert type(exc) is errors.ServiceClosing
    assert not isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError))
