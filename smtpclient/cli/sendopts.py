"""The options ``send`` and ``send --bulk`` share: where to send and the DSN request.

Both commands import this module; neither imports the other for it (``send``
hands over to ``bulk``, one way).
"""

from __future__ import annotations

import argparse

from smtpclient.cli.common import ServerAddress, fail, parse_server
from smtpclient.envelope import DSN

__all__ = ["dsn_from", "target_from"]


def dsn_from(args: argparse.Namespace) -> DSN | None:
    """The DSN options given, or None.

    Raises:
        CommandError: an option RFC 3461 does not allow (EX_USAGE).
    """
    if not (args.dsn_notify or args.dsn_ret or args.dsn_envid or args.dsn_orcpt):
        return None
    notify = None
    if args.dsn_notify:
        notify = tuple(part.strip() for part in args.dsn_notify.split(",") if part.strip())
    try:
        return DSN(ret=args.dsn_ret, envid=args.dsn_envid, notify=notify, orcpt=args.dsn_orcpt)
    except ValueError as exc:
        fail(str(exc))


def target_from(args: argparse.Namespace) -> ServerAddress | None:
    """The --server given, or None for --direct.

    Raises:
        CommandError: neither or both, or --user with --direct (EX_USAGE).
    """
    if args.server and args.direct:
        fail("give --server or --direct, not both")
    if args.direct:
        if args.user:
            fail("--user logs in to a --server; direct delivery does not log in")
        return None
    if not args.server:
        fail(
            "no server given: use --server HOST[:PORT] to send through a mail server, "
            "or --direct to deliver to the recipients' MX hosts"
        )
    return parse_server(args.server)
