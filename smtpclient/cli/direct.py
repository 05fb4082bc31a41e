"""Direct delivery for the CLI: ``smtpclient.deliver`` with options from the command line.

``send --direct``, ``send --direct --bulk`` and ``sendmail`` with
``direct = yes`` deliver to each recipient domain's MX hosts (port 25,
opportunistic TLS, ``Timeouts.mta()``) and report one outcome per recipient.
The resolver and delivery modules (dnspython) load only when used.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smtpclient.cli.common import connection_settings, report_error
from smtpclient.cli.compose import Composed
from smtpclient.cli.outcomes import Outcome, from_error, from_report
from smtpclient.envelope import DSN
from smtpclient.errors import SMTPClientError
from smtpclient.netpolicy import TARGET_POLICIES, TargetPolicy
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode

__all__ = [
    "DirectOptions",
    "add_direct_options",
    "add_dns_server_options",
    "deliver_direct",
    "direct_options",
]


@dataclass(frozen=True)
class DirectOptions:
    """How to find and reach the MX hosts."""

    nameservers: tuple[str, ...] = ()
    dns_port: int = 53
    port: int = 25
    tls: TLSMode | None = None
    ssl_context: ssl.SSLContext | None = None
    timeouts: Timeouts | None = None
    local_hostname: str | None = None
    target_policy: TargetPolicy = "public"


def add_dns_server_options(container: argparse._ActionsContainer, *, when: str = "") -> None:
    """--nameserver and --dns-port (``direct``, ``mx``); *when* prefixes the help."""
    container.add_argument(
        "--nameserver",
        action="append",
        metavar="IP",
        help=f"{when}ask this DNS server instead of the system's (repeatable)",
    )
    container.add_argument("--dns-port", type=int, default=53, metavar="PORT", help="default 53")


def add_direct_options(group: argparse._ArgumentGroup) -> None:
    """--nameserver, --dns-port, --mx-port (for --direct)."""
    add_dns_server_options(group, when="with --direct: ")
    group.add_argument(
        "--mx-port",
        type=int,
        default=25,
        metavar="PORT",
        help="with --direct: the SMTP port of the MX hosts (default 25; for test setups)",
    )
    group.add_argument(
        "--target-policy",
        choices=TARGET_POLICIES,
        default="public",
        help="with --direct: which addresses may be connected to: public (default; "
        "globally routable only), private (also private networks) or any (e.g. loopback)",
    )


def direct_options(args: argparse.Namespace) -> DirectOptions:
    """The options given on the command line."""
    settings = connection_settings(args)
    return DirectOptions(
        nameservers=tuple(args.nameserver or ()),
        dns_port=args.dns_port,
        port=args.mx_port,
        tls=settings.tls,
        ssl_context=settings.ssl_context,
        timeouts=settings.timeouts,
        local_hostname=settings.local_hostname,
        target_policy=getattr(args, "target_policy", "public"),
    )


def deliver_direct(
    composed: Composed, dsn: DSN | None, options: DirectOptions, *, dkim: Sequence[Any] = ()
) -> list[Outcome]:
    """Deliver to the recipients' MX hosts; one outcome per recipient
    (DKIM-signed by the ``DKIMSigner`` objects in *dkim*)."""
    from smtpclient.delivery import deliver  # noqa: PLC0415 - loads dnspython
    from smtpclient.resolver import Resolver  # noqa: PLC0415

    try:
        resolver = None
        if options.nameservers or options.dns_port != 53:
            resolver = Resolver(
                nameservers=list(options.nameservers) or None, port=options.dns_port
            )
        report = deliver(
            composed.message,
            sender=composed.sender,
            recipients=list(composed.recipients),
            resolver=resolver,
            port=options.port,
            tls=options.tls or TLSMode.OPPORTUNISTIC,
            ssl_context=options.ssl_context,
            timeouts=options.timeouts,
            local_hostname=options.local_hostname,
            dsn=dsn,
            target_policy=options.target_policy,
            dkim=list(dkim) or None,
        )
    except (SMTPClientError, ValueError, TypeError) as exc:
        report_error(exc, None)
        return from_error(exc, composed.recipients)
    return from_report(report)
