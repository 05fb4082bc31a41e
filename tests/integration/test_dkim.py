"""DKIM signing (RFC 6376, RFC 8463) end to end.

Keys are made for the test session, their public halves published as TXT
records in a Knot zone written by the fixture (``dkim.test``), and every
signature is checked with dkimpy's verifier, which looks the key up through
the library's ``Resolver`` (``dns_txt_function``).  Messages go through
aiosmtpd, a scripted server without 8BITMIME, ``deliver()`` over the
zone's MX, the CLI, the Django backend and Postfix (verified again on the
copy Postfix stored in its Maildir).  Tampering with a signed message makes
verification fail, so these checks can fail.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.mime.text import MIMEText
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from servers._proc import wait_until
from servers.knot import KnotServer
from servers.maildir import new_messages
from servers.postfix import PostfixServer, strip_added_headers
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally
from servers.smtpd import AiosmtpdServer

import smtpclient
from smtpclient import DKIMSigner, Mailer, Resolver, TLSMode
from smtpclient.delivery import deliver
from smtpclient.dkim import dns_txt_function, sign_message
from smtpclient.errors import HeaderInjectionError

DOMAIN = "dkim.test"


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return {
        "rsa": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed25519": _pem(ed25519.Ed25519PrivateKey.generate()),
    }


@pytest.fixture(scope="module")
def signers(keys: dict[str, bytes]) -> dict[str, DKIMSigner]:
    return {
        "rsa": DKIMSigner(DOMAIN, "r2026", keys["rsa"]),
        "ed25519": DKIMSigner(DOMAIN, "e2026", keys["ed25519"], algorithm="ed25519-sha256"),
    }


def _txt(record: str) -> str:
    # A TXT string holds at most 255 octets: an RSA key needs several.
    return " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))


@pytest.fixture(scope="module")
def knot(signers: dict[str, DKIMSigner]) -> Iterator[KnotServer]:
    """Knot serving dkim.test: the public keys, an MX on 127.0.0.1, and a
    selector whose record is not an RSA key of ours (for the failure case)."""
    records = "\n".join(
        f"{signer.selector}._domainkey IN TXT {_txt(signer.dns_record())}"
        for signer in signers.values()
    )
    zone = f"""$ORIGIN {DOMAIN}.
$TTL 30
@   SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 60 30 600 10
@   NS  ns
ns  A   127.0.0.1
@   MX  10 mx
mx  A   127.0.0.1
{records}
"""
    server = KnotServer({DOMAIN: zone})
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def resolver(knot: KnotServer) -> Resolver:
    return Resolver(nameservers=[knot.host], port=knot.port, lifetime=5)


Verify = Callable[[bytes], list[bool]]


@pytest.fixture(scope="module")
def verify(resolver: Resolver) -> Verify:
    """Every DKIM-Signature of a message, verified against the zone."""
    dnsfunc = dns_txt_function(resolver)

    def check(message: bytes) -> list[bool]:
        count = message.split(b"\r\n\r\n", 1)[0].lower().count(b"dkim-signature:")
        outcomes = []
        for index in range(count):
            try:
                outcomes.append(bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc)))
            except dkim.ValidationError:  # a body hash mismatch is raised, not returned
                outcomes.append(False)
        return outcomes

    return check


def _message(subject: str = "DKIM test", body: str = "Hello\n.dot line\nend\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Sender <sender@{DOMAIN}>"
    message["To"] = "r@example.test"
    message["Subject"] = subject
    message.set_content(body)
    return message


CHOICES = {"rsa": ("rsa",), "ed25519": ("ed25519",), "dual": ("rsa", "ed25519")}


@pytest.mark.parametrize("choice", list(CHOICES))
def test_send_signs_and_the_signature_verifies_from_dns(
    choice: str, signers: dict[str, DKIMSigner], smtpd: AiosmtpdServer, verify: Verify
) -> None:
    chosen = [signers[name] for name in CHOICES[choice]]
    result = smtpclient.send(
        _message(), host="127.0.0.1", port=smtpd.port, tls=TLSMode.NONE, dkim=chosen
    )
    assert result.accepted
    (received,) = smtpd.messages
    assert received.content.count(b"DKIM-Signature:") == len(chosen)
    assert verify(received.content) == [True] * len(chosen)
    # The dual signatures are one RSA and one Ed25519 (RFC 8463 §3).
    algorithms = [f"a={s.algorithm};".encode() in received.content for s in chosen]
    assert all(algorithms)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Hello", b"Hello!"),
        lambda m: m.replace(b"Subject: DKIM test", b"Subject: DKIM test 2"),
        lambda m: m.replace(b"Sender <sender@", b"Mallory <sender@"),
    ],
    ids=["body", "subject", "from display name"],
)
def test_a_change_after_signing_fails_verification(
    algorithm: str,
    tamper: Callable[[bytes], bytes],
    signers: dict[str, DKIMSigner],
    verify: Verify,
) -> None:
    _, _, signed = sign_message(_message(), (signers[algorithm],))
    assert verify(signed) == [True]
    changed = tamper(signed)
    assert changed != signed
    assert verify(changed) == [False]


def test_a_key_not_in_dns_fails_verification(keys: dict[str, bytes], verify: Verify) -> None:
    other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    impostor = DKIMSigner(DOMAIN, "r2026", other)  # the published selector, another key
    _, _, signed = sign_message(_message(), (impostor,))
    assert verify(signed) == [False]


def test_postfix_stores_a_message_that_still_verifies(
    signers: dict[str, DKIMSigner], postfix: PostfixServer, verify: Verify
) -> None:
    marker = f"dkim-{os.getpid()}-{id(signers)}"
    message = _message(subject=marker, body="Grüße aus Köln\n" + "x" * 1200 + "\n.\n")
    with Mailer(
        postfix.host,
        postfix.port,
        tls=TLSMode.NONE,
        dkim=[signers["rsa"], signers["ed25519"]],
    ) as mailer:
        assert mailer.send(message).accepted
    stored = _stored(postfix, marker)
    assert stored.startswith(b"DKIM-Signature:")
    assert verify(stored) == [True, True]


def _stored(postfix: PostfixServer, marker: str) -> bytes:
    def found() -> list[bytes]:
        return [
            p.read_bytes()
            for p in new_messages(postfix.inbox_new)
            if marker.encode() in p.read_bytes()
        ]

    assert wait_until(lambda: bool(found()), 20.0), postfix.maillog()[-2000:]
    return strip_added_headers(found()[0])


def _no_8bitmime(conn: Conn) -> None:
    greet_and_ehlo(conn, ("PIPELINING",))
    serve_normally(conn)


def test_8bit_content_is_signed_7bit_safe_for_any_server(
    signers: dict[str, DKIMSigner], verify: Verify
) -> None:
    # One set of bytes for every server: a server without 8BITMIME takes
    # the signed message as it is (nothing is re-encoded after signing).
    message = _message(body="Grüße, ½ € — ünïcödé\n")
    with ScriptedServer(_no_8bitmime) as server:
        smtpclient.send(
            message, host="127.0.0.1", port=server.port, tls=TLSMode.NONE, dkim=signers["rsa"]
        )
        received = bytes(server.conns[0].received)
    content = received.split(b"DATA\r\n", 1)[1].rsplit(b"\r\n.\r\n", 1)[0] + b"\r\n"
    assert content.isascii()
    assert b"BODY=8BITMIME" not in received
    assert verify(content.replace(b"\r\n..", b"\r\n.")) == [True]


def test_deliver_signs_once_for_the_mx(
    signers: dict[str, DKIMSigner], resolver: Resolver, smtpd: AiosmtpdServer, verify: Verify
) -> None:
    extra = (
        {"target_policy": "any"} if "target_policy" in inspect.signature(deliver).parameters else {}
    )
    message = _message()
    message.replace_header("To", f"someone@{DOMAIN}")
    report = deliver(
        message,
        resolver=resolver,
        port=smtpd.port,
        tls=TLSMode.NONE,
        dkim=[signers["ed25519"], signers["rsa"]],
        **extra,  # type: ignore[arg-type]
    )
    assert [str(o.status) for o in report.outcomes] in (["delivered"], ["Status.DELIVERED"]), report
    (received,) = smtpd.messages
    assert verify(received.content) == [True, True]


def test_send_many_signs_each_message_and_reports_a_bad_one(
    signers: dict[str, DKIMSigner], smtpd: AiosmtpdServer, verify: Verify
) -> None:
    raw = f"From: sender@{DOMAIN}\nTo: r@example.test\nSubject: raw\n\nraw body\n".encode()
    no_from = b"To: r@example.test\r\nSubject: nobody\r\n\r\nx\r\n"
    with Mailer("127.0.0.1", smtpd.port, tls=TLSMode.NONE, dkim=signers["rsa"]) as mailer:
        outcomes = mailer.send_many(
            [_message(), (f"sender@{DOMAIN}", ["r@example.test"], raw), ("a@x", ["b@x"], no_from)]
        )
    assert isinstance(outcomes[2], ValueError)  # no From header to sign: caller input
    assert [type(o).__name__ for o in outcomes[:2]] == ["SendResult", "SendResult"]
    assert [verify(m.content) for m in smtpd.messages] == [[True], [True]]


def test_header_injection_is_still_refused_when_signing(
    signers: dict[str, DKIMSigner], smtpd: AiosmtpdServer
) -> None:
    message = MIMEText("pay")
    message["From"], message["To"] = f"s@{DOMAIN}", "r@example.test"
    message["Subject"] = "Invoice 42\r\nReply-To : payments@attacker.test"
    with pytest.raises(HeaderInjectionError):
        smtpclient.send(
            message, host="127.0.0.1", port=smtpd.port, tls=TLSMode.NONE, dkim=signers["rsa"]
        )
    assert smtpd.messages == []


def test_the_cli_signs_with_two_keys(
    keys: dict[str, bytes], smtpd: AiosmtpdServer, verify: Verify, tmp_path: Path
) -> None:
    (tmp_path / "rsa.pem").write_bytes(keys["rsa"])
    (tmp_path / "ed.pem").write_bytes(keys["ed25519"])
    command = [
        sys.executable, "-m", "smtpclient", "send",
        "--server", f"127.0.0.1:{smtpd.port}", "--tls", "none",
        "--from", f"sender@{DOMAIN}", "--to", "r@example.test",
        "--subject", "cli", "--body", "signed on the command line",
        "--dkim-key", str(tmp_path / "rsa.pem"), "--dkim-selector", "r2026",
        "--dkim-key", str(tmp_path / "ed.pem"), "--dkim-selector", "e2026",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (received,) = smtpd.messages
    assert verify(received.content) == [True, True]


def test_the_cli_refuses_unpaired_dkim_options(smtpd: AiosmtpdServer, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "smtpclient", "send",
        "--server", f"127.0.0.1:{smtpd.port}", "--tls", "none",
        "--from", f"sender@{DOMAIN}", "--to", "r@example.test", "--body", "x",
        "--dkim-key", str(tmp_path / "missing.pem"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 64 and "dkim-selector" in done.stderr
    assert smtpd.messages == []


def test_the_django_backend_signs_with_its_dkim_option(
    signers: dict[str, DKIMSigner], smtpd: AiosmtpdServer, verify: Verify
) -> None:
    from django.conf import settings  # noqa: PLC0415 (Django configured here only)
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415

    from smtpclient.contrib.django import EmailBackend, close_shared_mailers  # noqa: PLC0415

    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8")
    backend = EmailBackend(
        host="127.0.0.1",
        port=smtpd.port,
        username="",
        password="",
        use_tls=False,
        use_ssl=False,
        timeout=10,
        dkim=[signers["rsa"], signers["ed25519"]],  # an OPTIONS entry under MAILERS
    )
    try:
        message = DjangoMessage(
            "django", "signed by the backend", f"sender@{DOMAIN}", ["r@example.test"],
            bcc=["hidden@example.test"],
        )  # fmt: skip
        assert backend.send_messages([message]) == 1
    finally:
        close_shared_mailers()
    (received,) = smtpd.messages
    assert sorted(received.rcpt_tos) == ["hidden@example.test", "r@example.test"]
    assert b"hidden@" not in received.content
    assert verify(received.content) == [True, True]
