"""``smtpclient send``: one message through a server, straight to MX hosts, or in bulk."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from smtpclient.cli.common import (
    ServerAddress,
    add_tls_options,
    connection_settings,
    fail,
    read_password,
    report_error,
)
from smtpclient.cli.compose import Composed, compose
from smtpclient.cli.direct import add_direct_options, deliver_direct, direct_options
from smtpclient.cli.outcomes import Outcome, exit_code, from_error, from_result
from smtpclient.cli.outcomes import print_outcomes as show
from smtpclient.cli.sendopts import dsn_from, target_from
from smtpclient.cli.signing import add_dkim_options, dkim_signers
from smtpclient.cli.transcript import transcript
from smtpclient.envelope import DSN
from smtpclient.errors import SMTPClientError
from smtpclient.session import Session

if TYPE_CHECKING:
    from smtpclient.dkim import DKIMSigner

__all__ = ["dsn_from", "register", "run", "target_from"]

EXAMPLES = """\
examples:
  smtpclient send --server smtp.example.com:587 --tls starttls --user me@example.com \\
      --from me@example.com --to you@example.org --subject hi --body "hello"
  echo "disk full" | smtpclient send --server localhost:25 --tls none \\
      --from cron@example.com --to ops@example.com --subject alert
  smtpclient send --server mail.example.com --eml message.eml --transcript
  smtpclient send --direct --from me@example.com --to you@example.org --body-file note.txt
  smtpclient send --direct --from me@example.com --to you@example.org --body hi \
      --dkim-key rsa.pem --dkim-selector r2026 --dkim-key ed.pem --dkim-selector e2026
  smtpclient send --server smtp.example.com --user me@example.com \\
      --bulk recipients.csv --template newsletter.eml --concurrency 4 --report out.csv

The password comes from $SMTPCLIENT_PASSWORD, or a prompt that does not echo.
Exit codes: 0 all accepted, 79 partial, 75 try later, 69 refused, 77 auth,
64 usage, 65 bad input, 66 missing file (see `smtpclient --help`).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``send`` to the command line."""
    parser = subparsers.add_parser(
        "send",
        help="send a message (or many, with --bulk)",
        description="Send a message through a mail server (--server) or straight to the "
        "recipients' MX hosts (--direct), and print each recipient's outcome.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    message = parser.add_argument_group("message")
    message.add_argument("--from", dest="sender", metavar="ADDRESS", help="the sender")
    for option, what in (("--to", "a recipient"), ("--cc", "a copy"), ("--bcc", "a blind copy")):
        message.add_argument(
            option, action="append", metavar="ADDRESS", help=f"{what} (repeatable)"
        )
    message.add_argument("--subject", help="the Subject header")
    message.add_argument("--body", metavar="TEXT", help="the body text (default: read stdin)")
    message.add_argument("--body-file", metavar="FILE", help="read the body from FILE (- stdin)")
    message.add_argument("--attach", action="append", metavar="FILE", help="attach (repeatable)")
    message.add_argument(
        "--header", action="append", metavar="'NAME: VALUE'", help="add a header (repeatable)"
    )
    message.add_argument("--eml", metavar="FILE", help="send this ready RFC 5322 message")

    where = parser.add_argument_group("where to send")
    where.add_argument(
        "--server", metavar="HOST[:PORT]", help="the mail server (port 587 unless given)"
    )
    where.add_argument(
        "--direct", action="store_true", help="deliver to each recipient domain's MX hosts"
    )
    add_direct_options(where)
    where.add_argument("--user", metavar="NAME", help="log in as NAME (AUTH)")
    where.add_argument(
        "--allow-insecure-auth",
        action="store_true",
        help="allow AUTH without verified TLS (the password can be read on the network)",
    )
    add_tls_options(
        parser,
        default_help="none, opportunistic (STARTTLS when offered), starttls (required) or "
        "implicit (TLS from the first byte). Default: implicit on port 465, else "
        "opportunistic",
    )

    add_dkim_options(parser)

    dsn = parser.add_argument_group("delivery status notifications (RFC 3461)")
    dsn.add_argument("--dsn-notify", metavar="WHEN", help="NEVER, or SUCCESS,FAILURE,DELAY")
    dsn.add_argument("--dsn-ret", choices=["FULL", "HDRS", "full", "hdrs"], help="what to return")
    dsn.add_argument("--dsn-envid", metavar="ID", help="an envelope id quoted in reports")
    dsn.add_argument("--dsn-orcpt", action="store_true", help="send ORCPT for each recipient")

    bulk = parser.add_argument_group("bulk sending")
    bulk.add_argument("--bulk", metavar="CSV", help="recipients, one row each ('email' column)")
    bulk.add_argument("--template", metavar="EML", help="the message; ${column} is replaced")
    bulk.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="connections at once (4)"
    )
    bulk.add_argument("--report", metavar="FILE", help="write every recipient's outcome as CSV")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--transcript", action="store_true", help="print the SMTP conversation (secrets hidden)"
    )
    output.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Send one message (or hand over to bulk sending) and print each outcome."""
    if args.bulk or args.template:
        if args.dkim_key:
            fail("--dkim-key is not available with --bulk")
        from smtpclient.cli.bulk import run_bulk  # noqa: PLC0415 - only bulk needs it

        return run_bulk(args)
    server = target_from(args)
    composed = compose(args)
    dsn = dsn_from(args)
    signers = dkim_signers(args, composed.sender)
    password = read_password(args.user, str(server)) if args.user else None
    secrets = [password] if password else []
    with transcript(args.transcript, show_host=server is None, secrets=secrets):
        if server is None:
            outcomes = deliver_direct(composed, dsn, direct_options(args), dkim=signers)
        else:
            outcomes = _relay(args, server, composed, dsn, password, signers)
    if not args.quiet:
        show(outcomes, sys.stdout)
    return exit_code(outcomes)


def _relay(
    args: argparse.Namespace,
    server: ServerAddress,
    composed: Composed,
    dsn: DSN | None,
    password: str | None,
    signers: tuple[DKIMSigner, ...] = (),
) -> list[Outcome]:
    settings = connection_settings(args)
    try:
        with Session.connect(
            server.host,
            server.port,
            tls=settings.tls,
            ssl_context=settings.ssl_context,
            server_hostname=settings.server_hostname,
            timeouts=settings.timeouts,
            local_hostname=settings.local_hostname,
            allow_insecure_auth=args.allow_insecure_auth,
        ) as session:
            if args.user and password is not None:
                session.login(args.user, password)
            if signers:
                from smtpclient.dkim import sign_message  # noqa: PLC0415

                sender, recipients, data = sign_message(
                    composed.message,
                    signers,
                    sender=composed.sender,
                    recipients=list(composed.recipients),
                )
                result = session.sendmail(sender, recipients, data, dsn=dsn)
            else:
                result = session.send_message(
                    composed.message, composed.sender, list(composed.recipients), dsn=dsn
                )
    except (SMTPClientError, ValueError, TypeError) as exc:
        report_error(exc, server)
        return from_error(exc, composed.recipients)
    return from_result(result)
