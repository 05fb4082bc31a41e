"""The ``smtpclient`` command: send, sendmail, probe, mx and demo.

``main(argv)`` parses the command line, runs one subcommand and returns its
exit code (sysexits, see ``smtpclient.cli.common``); it never calls
``sys.exit`` itself, so it can be called from Python and from tests.

Each subcommand lives in its own module with ``register(subparsers)``, which
adds its parser and sets ``handler`` to a function taking the parsed
arguments and returning an exit code.  Modules are found by name, and one
that cannot be imported (``mx`` before the resolver exists, say) leaves a
stub that explains why, rather than breaking the other commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from smtpclient import __version__
from smtpclient.cli.common import (
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    EX_USAGE,
    INTERRUPTED,
    PROG,
    CommandError,
    error,
)

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("send", "sendmail", "probe", "mx", "demo")

DESCRIPTION = """\
A threaded, synchronous SMTP client: send mail through a server or straight
to MX hosts, act as sendmail for cron and scripts, and probe servers."""

EPILOG = """\
examples:
  smtpclient demo                                   # try it: a local server, a real send
  smtpclient send --server smtp.example.com:587 --user me@example.com \\
      --from me@example.com --to you@example.org --subject hi --body hello
  smtpclient send --direct --from me@example.com --to you@example.org --body hello
  smtpclient send --server smtp.example.com --bulk people.csv --template letter.eml
  echo "Subject: backup done" | smtpclient sendmail -t ops@example.com
  smtpclient probe smtp.example.com:587             # greeting, EHLO, STARTTLS, certificate
  smtpclient mx example.com                          # where mail for a domain goes

exit codes (sysexits):
  0 all accepted   79 partial (some accepted)   75 temporary failure, try later
  69 refused (permanent)   76 protocol error   77 authentication failed
  64 usage error   65 bad input data   66 input file missing   78 config error
  130 interrupted (Ctrl-C), after reporting what was and was not sent

Run `smtpclient COMMAND --help` for a command's options."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become EX_USAGE, not exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise CommandError(f"{message} (see '{self.prog} --help')", EX_USAGE)


def _unavailable(name: str, reason: BaseException) -> Callable[[argparse.Namespace], int]:
    """The handler of a subcommand whose module cannot be imported."""

    def handler(_: argparse.Namespace) -> int:
        error(f"'{name}' is not available in this installation: {reason}")
        return EX_UNAVAILABLE

    return handler


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full command-line parser, with every subcommand that can be loaded
    -- or, with *only*, just that one (each subcommand's module is imported
    to register it, and ``smtpclient sendmail`` from cron should not pay for
    the resolver, the demo server or the prober)."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", parser_class=_Parser
    )
    for name in SUBCOMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"smtpclient.cli.{name}")
        except ImportError as exc:
            # No option characters: whatever follows is taken, and the
            # handler explains why the command cannot run.
            stub = subparsers.add_parser(
                name, help=f"(not available: {exc})", add_help=False, prefix_chars="\0"
            )
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(handler=_unavailable(name, exc))
            continue
        module.register(subparsers)
    return parser


def _invoked_as_sendmail() -> bool:
    return Path(sys.argv[0]).name == "sendmail"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line *argv* (default: ``sys.argv[1:]``) and return the exit code.

    Installed as ``sendmail`` (a symlink named so), it behaves as
    ``smtpclient sendmail``.
    """
    if argv is None:
        argv = sys.argv[1:]
        if _invoked_as_sendmail():
            argv = ["sendmail", *argv]
    argv = list(argv)
    # The command is the first argument (no option comes before it but
    # --help and --version, which need the full parser).
    only = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(only)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EX_USAGE
        code: int = args.handler(args)
    except CommandError as exc:
        error(str(exc))
        return exc.code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EX_USAGE)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `smtpclient ... | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return EX_SOFTWARE
    return code
