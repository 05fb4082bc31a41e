"""``--dkim-key/--dkim-selector/--dkim-domain``: DKIM signing on the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from smtpclient.cli.common import EX_DATAERR, EX_NOINPUT, EX_USAGE, fail

if TYPE_CHECKING:
    from smtpclient.dkim import DKIMSigner

__all__ = ["add_dkim_options", "dkim_signers"]


def add_dkim_options(parser: argparse.ArgumentParser) -> None:
    """Add the DKIM option group to *parser*."""
    group = parser.add_argument_group(
        "DKIM signing (RFC 6376; needs the 'dkim' extra)",
        "Give --dkim-key and --dkim-selector twice to sign with two keys "
        "(RSA and Ed25519, say); the algorithm follows the key.",
    )
    group.add_argument(
        "--dkim-key", action="append", metavar="PEM", help="a PEM private key (PKCS#8 or PKCS#1)"
    )
    group.add_argument("--dkim-selector", action="append", metavar="NAME", help="its selector (s=)")
    group.add_argument(
        "--dkim-domain", metavar="DOMAIN", help="the signing domain (d=; default: --from's)"
    )


def dkim_signers(args: argparse.Namespace, sender: str) -> tuple[DKIMSigner, ...]:
    """The signers the options ask for (none without --dkim-key).

    Raises:
        CommandError: keys and selectors do not pair up (EX_USAGE), a key
            file cannot be read (EX_NOINPUT), or a key or name is not
            usable (EX_DATAERR).
    """
    keys: list[str] = args.dkim_key or []
    selectors: list[str] = args.dkim_selector or []
    if not keys:
        if selectors or args.dkim_domain:
            fail("--dkim-selector and --dkim-domain need --dkim-key")
        return ()
    if len(keys) != len(selectors):
        fail("give one --dkim-selector for each --dkim-key", EX_USAGE)
    domain = args.dkim_domain or sender.rpartition("@")[2]
    if not domain:
        fail("no signing domain: give --dkim-domain", EX_USAGE)
    from smtpclient.dkim import DKIMSigner, key_algorithm  # noqa: PLC0415 - the extra

    signers = []
    for path, selector in zip(keys, selectors, strict=True):
        try:
            with open(path, "rb") as handle:
                pem = handle.read()
        except OSError as exc:
            fail(f"cannot read the DKIM key {path}: {exc.strerror or exc}", EX_NOINPUT)
        try:
            signers.append(DKIMSigner(domain, selector, pem, algorithm=key_algorithm(pem)))
        except ImportError as exc:
            fail(str(exc), EX_USAGE)
        except (ValueError, TypeError) as exc:
            fail(f"DKIM key {path}: {exc}", EX_DATAERR)
    return tuple(signers)
