"""``smtpclient mx DOMAIN``: where mail for a domain goes, in the order it is tried.

It prints the mail hosts (MX records after CNAMEs, equal preferences
shuffled, or the implicit MX when there are none) with their addresses,
then the connection targets exactly as ``smtpclient.deliver`` would try
them: families interleaved within each preference level and capped at
``--max-addresses``, and the domain's MTA-STS policy (RFC 8461: the
``_mta-sts`` TXT record and the policy fetched over HTTPS, unless
``--no-mta-sts``).  With ``--dnssec`` (the nameserver is trusted to
validate DNSSEC) each host's DANE status is shown too: whether its TLSA
records (RFC 7672) make authenticated STARTTLS mandatory.  No SMTP
connection is made.

Exit status: 0 with targets; 69 when the domain cannot get mail (NXDOMAIN,
null MX, no address); 75 when DNS failed or timed out (try again later);
65 for a malformed domain.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import TYPE_CHECKING, Any

from smtpclient import dane
from smtpclient.cli.common import EX_OK, error, exit_code_for
from smtpclient.cli.direct import add_dns_server_options
from smtpclient.dnslookup import ascii_name
from smtpclient.errors import SMTPClientError, UsageError
from smtpclient.netpolicy import TARGET_POLICIES
from smtpclient.resolver import Resolver
from smtpclient.targets import FAMILY_POLICIES, MailHost, Target, plan_targets

if TYPE_CHECKING:
    from smtpclient.mtasts_fetch import PolicyLookup

__all__ = ["register", "run"]

EXAMPLES = """\
examples:
  smtpclient mx example.com
  smtpclient mx bücher.example --family ipv4
  smtpclient mx example.test --nameserver 127.0.0.1 --dns-port 5300 --seed 1 --json
  smtpclient mx example.com --nameserver 127.0.0.1 --dnssec   # a validating resolver
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mx`` to the command line."""
    parser = subparsers.add_parser(
        "mx",
        help="show a domain's mail hosts and the order their addresses are tried",
        description="Look up a domain's MX hosts (RFC 5321 §5.1, RFC 7505) and print the "
        "hosts and the connection targets in the order direct delivery tries them. "
        "No connection is made.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("domain", metavar="DOMAIN", help="the domain (IDN names are fine)")
    add_dns_server_options(parser)
    parser.add_argument(
        "--family", choices=FAMILY_POLICIES, default="any", help="address families to use"
    )
    parser.add_argument(
        "--prefer", choices=("ipv6", "ipv4"), default="ipv6", help="the family tried first"
    )
    parser.add_argument(
        "--max-addresses",
        type=int,
        default=5,
        metavar="N",
        help="at most N targets, as delivery does (default 5; 0: all)",
    )
    parser.add_argument(
        "--target-policy",
        choices=TARGET_POLICIES,
        default="public",
        help="addresses to show: public (default; globally routable only, as deliver() "
        "uses), private (also private networks) or any (e.g. loopback test zones)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="DNS time budget"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed the shuffle of equal preferences"
    )
    parser.add_argument(
        "--no-mta-sts", action="store_true", help="do not look up the MTA-STS policy"
    )
    parser.add_argument(
        "--mta-sts-port", type=int, default=443, metavar="PORT", help="HTTPS port (tests)"
    )
    parser.add_argument(
        "--mta-sts-cafile",
        metavar="FILE",
        help="trust only these CAs for the policy fetch (default: certifi's bundle)",
    )
    parser.add_argument(
        "--dnssec",
        action="store_true",
        help="trust the nameserver to validate DNSSEC and show each host's DANE status",
    )
    parser.add_argument(
        "--port", type=int, default=25, metavar="PORT", help="SMTP port of the TLSA names"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def _policy_json(lookup: PolicyLookup | None) -> dict[str, Any] | None:
    if lookup is None:
        return None
    policy = lookup.policy
    return {
        "source": lookup.source,
        "note": lookup.note,
        "mode": str(policy.mode) if policy else None,
        "mx": list(policy.mx) if policy else [],
        "max_age": policy.max_age if policy else None,
        "id": policy.policy_id if policy else None,
    }


def _policy_line(lookup: PolicyLookup | None) -> str:
    if lookup is None:
        return "MTA-STS: not looked up"
    if lookup.policy is None:
        text = "MTA-STS: no policy"
    else:
        text = f"MTA-STS: {lookup.policy.mode} ({lookup.source}): {lookup.policy}"
    return f"{text}; {lookup.note}" if lookup.note else text


def _dane_json(policy: dane.HostPolicy) -> dict[str, Any]:
    return {
        "status": policy.status.name.lower(),
        "tlsa_name": policy.name,
        "reason": policy.reason,
        "records": [str(record) for record in policy.records],
    }


def _as_json(
    domain: str,
    hosts: list[MailHost],
    targets: list[Target],
    lookup: PolicyLookup | None,
    policies: dict[str, dane.HostPolicy],
) -> dict[str, Any]:
    return {
        "domain": domain,
        "mta_sts": _policy_json(lookup),
        "implicit_mx": any(host.implicit for host in hosts),
        "hosts": [
            {
                "name": h.name,
                "preference": h.preference,
                "addresses": list(h.addresses),
                "dane": _dane_json(policies[h.name]),
            }
            for h in hosts
        ],
        "targets": [
            {"address": t.address, "host": t.host, "preference": t.preference} for t in targets
        ],
    }


def _dane_line(policy: dane.HostPolicy) -> str:
    if policy.status is dane.DANEStatus.NOT_VALIDATED:
        return "DANE: not checked (give --dnssec with a validating nameserver)"
    what = {
        dane.DANEStatus.ACTIVE: "authenticated STARTTLS required",
        dane.DANEStatus.UNUSABLE: "STARTTLS required, not authenticated",
        dane.DANEStatus.FAILED: "host not used (TLSA lookup failed)",
    }.get(policy.status, "not used (usual TLS policy)")
    return f"DANE: {policy.status} -- {what}; {policy.reason}"


def _print(
    domain: str,
    hosts: list[MailHost],
    targets: list[Target],
    cap: int,
    lookup: PolicyLookup | None,
    policies: dict[str, dane.HostPolicy],
) -> None:
    if any(host.implicit for host in hosts):
        print(f"{domain}: no MX records; the domain's own address is its mail host (implicit MX)")
    else:
        print(f"{domain}: mail hosts, in the order they are tried")
    width = max(len(host.name) for host in hosts)
    sts = lookup.policy if lookup is not None else None
    for host in hosts:
        outside = ""
        if sts is not None and str(sts.mode) != "none" and not sts.matches(host.name):
            outside = "  (not in the MTA-STS policy)"
        print(f"  {host.preference:>5}  {host.name:<{width}}  {' '.join(host.addresses)}{outside}")
        print(f"         {_dane_line(policies[host.name])}")
        for record in policies[host.name].records:
            print(f"           TLSA {record}")
    limit = f"at most {cap}" if cap else "no limit"
    print(f"targets ({limit}), in connection order:")
    wide = max(len(target.address) for target in targets)
    for number, target in enumerate(targets, 1):
        print(f"  {number:>3}. {target.address:<{wide}}  {target.host} ({target.preference})")
    print(_policy_line(lookup))


def _mta_sts(args: argparse.Namespace, resolver: Resolver) -> PolicyLookup:
    """The domain's MTA-STS policy, fetched now (no cache across runs).

    Raises:
        OSError, ssl.SSLError: the CA file cannot be read.
    """
    # Loaded here: the HTTPS client is not needed to start the command line.
    from smtpclient.mtasts import PolicyCache  # noqa: PLC0415
    from smtpclient.mtasts_fetch import discover  # noqa: PLC0415
    from smtpclient.tls import verifying_context  # noqa: PLC0415

    context = verifying_context(cafile=args.mta_sts_cafile) if args.mta_sts_cafile else None
    return discover(
        ascii_name(args.domain),
        resolver=resolver,
        cache=PolicyCache(),
        target_policy=args.target_policy,
        ssl_context=context,
        port=args.mta_sts_port,
    )


def run(args: argparse.Namespace) -> int:
    """Look the domain up and print what was found; return the exit code."""
    try:
        resolver = Resolver(
            nameservers=args.nameserver,
            port=args.dns_port,
            lifetime=args.timeout,
            family=args.family,
            prefer=args.prefer,
            max_addresses=args.max_addresses,
            target_policy=args.target_policy,
            rng=random.Random(args.seed) if args.seed is not None else None,  # noqa: S311
            dnssec=args.dnssec,
        )
        hosts = resolver.mail_hosts(args.domain)
        policies = {
            h.name: dane.host_policy(resolver, args.domain, h.name, args.port) for h in hosts
        }
    except (SMTPClientError, UsageError, ValueError, TypeError) as exc:
        error(f"{args.domain}: {exc}")
        return exit_code_for(exc)
    targets = plan_targets(hosts, prefer=args.prefer, max_addresses=args.max_addresses)
    lookup = None
    if not args.no_mta_sts and not args.domain.startswith("["):
        try:
            lookup = _mta_sts(args, resolver)
        except (OSError, ValueError) as exc:
            error(f"{args.domain}: {exc}")
            return exit_code_for(exc)
    if args.json:
        found = _as_json(args.domain, hosts, targets, lookup, policies)
        json.dump(found, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print(args.domain, hosts, targets, args.max_addresses, lookup, policies)
    return EX_OK
