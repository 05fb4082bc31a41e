"""``smtpclient demo``: a real send through the full stack, on a machine with no mail server.

It starts ``smtpclient.demo.DemoServer`` (aiosmtpd on 127.0.0.1 with
STARTTLS and AUTH), sends one message with STARTTLS, AUTH and the extensions
that server offers (SMTPUTF8, 8BITMIME, SIZE), shows the conversation, and
prints the message as the server stored it.  Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from smtpclient.cli.common import EX_OK, EX_UNAVAILABLE, error, exit_code_for
from smtpclient.cli.outcomes import from_result, print_outcomes
from smtpclient.cli.transcript import transcript
from smtpclient.errors import SMTPClientError
from smtpclient.session import Session
from smtpclient.tls import TLSMode

if TYPE_CHECKING:
    from smtpclient.demo import DemoServer

__all__ = ["demo_message", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the command line."""
    parser = subparsers.add_parser(
        "demo",
        help="try it: send a real message to a throwaway local server",
        description="Start a throwaway SMTP server on 127.0.0.1 (STARTTLS with a throwaway "
        "certificate, AUTH with a throwaway user), send a message through it with the full "
        "stack, show the SMTP conversation and the message as the server stored it. "
        'Needs the "demo" extra: pip install "smtpclient[demo]".',
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="afterwards keep the server running (until Ctrl-C) and print how to "
        "send to it with `smtpclient send`",
    )
    parser.set_defaults(handler=run)


def demo_message(sender: str) -> EmailMessage:
    """A message that exercises SMTPUTF8, 8BITMIME and MIME attachments."""
    message = EmailMessage()
    message["From"] = f"smtpclient demo <{sender}>"
    message["To"] = "Zoë <zoë@example.test>"
    message["Cc"] = "you@example.test"
    message["Subject"] = "Hello from smtpclient ✉"
    message["Message-ID"] = email.utils.make_msgid("demo", domain="localhost")
    message.set_content(
        "This message went through STARTTLS and AUTH to a server on 127.0.0.1.\n"
        "Its recipient has a non-ASCII address (SMTPUTF8) and this body is\n"
        "8-bit UTF-8 (8BITMIME): grüße, 你好, Привет.\n"
    )
    message.add_attachment(
        b"an attachment\n", maintype="text", subtype="plain", filename="hello.txt"
    )
    return message


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when the message arrived."""
    from smtpclient.demo import DemoServer, DemoUnavailable  # noqa: PLC0415 - needs the extra

    # aiosmtpd reports each connection on the "mail.log" logger; the
    # transcript below already shows the conversation.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        server = DemoServer().start()
    except DemoUnavailable as exc:
        error(str(exc))
        return EX_UNAVAILABLE
    try:
        return _send(server, serve=args.serve)
    finally:
        server.stop()


def _send(server: DemoServer, *, serve: bool) -> int:
    _section("the server")
    print(
        f"aiosmtpd on {server.host}:{server.port} (nothing outside 127.0.0.1 is touched)\n"
        f"STARTTLS with a throwaway certificate for {server.hostname!r}, trusted by this "
        f"client only\nAUTH as the throwaway user {server.username!r}"
    )
    message = demo_message(f"{server.username}@localhost")
    _section("the SMTP conversation (C: client, S: server; secrets redacted)")
    try:
        with (
            transcript(True, sys.stdout, show_host=False, secrets=[server.password]),
            Session.connect(
                server.host,
                server.port,
                tls=TLSMode.STARTTLS,
                ssl_context=server.client_context(),
                server_hostname=server.hostname,
            ) as session,
        ):
            session.login(server.username, server.password)
            result = session.send_message(message)
    except SMTPClientError as exc:
        error(f"the demo send failed: {exc}")
        return exit_code_for(exc)
    _section("the result")
    if result.tls is not None:
        verified = "verified" if result.tls.verified else "NOT verified"
        print(f"TLS: {result.tls.version} {result.tls.cipher}, certificate {verified}")
    print_outcomes(from_result(result), sys.stdout)
    if result.queue_id:
        print(f"queue id: {result.queue_id}")
    stored = server.messages
    _section("the message as the server stored it")
    for item in stored:
        print(
            f"(envelope: MAIL FROM:<{item.mail_from}> {' '.join(item.mail_options)}; "
            f"RCPT TO: {', '.join(item.rcpt_tos)})"
        )
        sys.stdout.write(item.data.decode("utf-8", "replace").replace("\r\n", "\n"))
    if not stored:
        error("the server stored nothing")
        return EX_UNAVAILABLE
    _section("done")
    print("Next: `smtpclient send --help`, `smtpclient probe --help`, and the docs in docs/.")
    if serve:
        _serve(server)
    return EX_OK


def _serve(server: DemoServer) -> None:
    with tempfile.TemporaryDirectory(prefix="smtpclient-demo-") as tmp:
        ca = Path(tmp) / "demo-ca.pem"
        ca.write_bytes(server.ca_pem)
        print(
            "\nThe server keeps running until Ctrl-C. Send to it with:\n"
            f"  SMTPCLIENT_PASSWORD={server.password} smtpclient send "
            f"--server {server.host}:{server.port} --tls starttls --tls-name {server.hostname} "
            f"--cafile {ca} --user {server.username} --from me@localhost --to you@example.test "
            "--body hello --transcript",
            flush=True,
        )
        seen = len(server.messages)
        try:
            while True:
                time.sleep(0.5)
                for item in server.messages[seen:]:
                    _section("received")
                    sys.stdout.write(item.data.decode("utf-8", "replace").replace("\r\n", "\n"))
                    sys.stdout.flush()
                seen = len(server.messages)
        except KeyboardInterrupt:
            print("\nstopped", flush=True)
