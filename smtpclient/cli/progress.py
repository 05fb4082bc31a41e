"""Progress and the closing summary for ``send --bulk``.

On a terminal: a progress bar on stderr (drawn by ``rich`` when it is
installed, the ``cli`` extra, else by a small plain fallback), with each
failure printed above it.  Not on a terminal (a log file, a pipe, cron):
one plain line per recipient on stdout, nothing redrawn.  Set
``SMTPCLIENT_PLAIN=1`` to keep ``rich`` out even when it is installed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from smtpclient.cli.outcomes import STATUSES, Outcome, print_outcomes

__all__ = ["Display", "make_display", "print_summary", "rich_available"]


class Display(Protocol):
    """Where progress goes while the messages are sent."""

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        """One message finished with these per-recipient outcomes."""

    def note(self, text: str) -> None:
        """A line for the user (e.g. "interrupted: finishing...")."""

    def close(self) -> None:
        """Stop drawing; the summary comes next."""


def rich_available() -> bool:
    """True when ``rich`` can be imported and is not switched off."""
    if os.environ.get("SMTPCLIENT_PLAIN"):
        return False
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def make_display(total: int, *, quiet: bool = False) -> Display:
    """The right display for where stderr goes."""
    if sys.stderr.isatty():
        if rich_available():
            return RichDisplay(total)
        return PlainBar(total, sys.stderr)
    return LineDisplay(sys.stdout, quiet=quiet)


class LineDisplay:
    """Not a terminal: a line per recipient, flushed as it happens."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        shown = [o for o in outcomes if not (self.quiet and o.ok)]
        print_outcomes(shown, self.stream)
        self.stream.flush()

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stream.flush()


class PlainBar:
    """A terminal without rich: ``[#####.....] 50/100  2 failed`` redrawn in place."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._draw(force=True)

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1 and self.done < self.total:
            return
        self._drawn = now
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = now - self.started
        self.stream.write(
            f"\r\033[Ksending [{bar}] {self.done}/{self.total}  "
            f"{self.failed} failed  {elapsed:.0f}s"
        )
        self.stream.flush()

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        self.done += 1
        bad = [o for o in outcomes if not o.ok]
        if bad:
            self.failed += 1
            self.stream.write("\r\033[K")
            print_outcomes(bad, self.stream)
            self._draw(force=True)
        else:
            self._draw()

    def note(self, text: str) -> None:
        self.stream.write(f"\r\033[K{text}\n")
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()


class RichDisplay:
    """A terminal with rich: its progress bar, failures printed above it."""

    def __init__(self, total: int) -> None:
        from rich.console import Console  # noqa: PLC0415 - optional dependency
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.failed = 0
        self.progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("send", total=total, failed=0)
        self.progress.start()

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        from rich.markup import escape  # noqa: PLC0415

        bad = [o for o in outcomes if not o.ok]
        if bad:
            self.failed += 1
            for outcome in bad:
                self.console.print(
                    f"[red]{outcome.status}[/red] {escape(outcome.recipient)}  "
                    f"{escape(outcome.detail)}",
                    highlight=False,
                )
        self.progress.update(self.task, advance=1, failed=self.failed)

    def note(self, text: str) -> None:
        from rich.markup import escape  # noqa: PLC0415

        self.console.print(f"[yellow]{escape(text)}[/yellow]", highlight=False)

    def close(self) -> None:
        self.progress.stop()


def print_summary(
    outcomes: Sequence[Outcome], elapsed: float, stream: TextIO, *, fancy: bool
) -> None:
    """A table of how many recipients ended in each state, and the rate."""
    counts = Counter(o.status for o in outcomes)
    rows = [(status, counts[status]) for status in STATUSES if counts[status]]
    rate = len(outcomes) / elapsed if elapsed > 0 else 0.0
    footer = f"{len(outcomes)} recipients in {elapsed:.1f} s ({rate:.1f}/s)"
    if fancy and rich_available():
        _rich_summary(rows, footer, stream)
        return
    print("\nsummary", file=stream)
    for status, count in rows:
        print(f"  {status:<9} {count:>7}", file=stream)
    print(f"  {footer}", file=stream)


def _rich_summary(rows: list[tuple[str, int]], footer: str, stream: TextIO) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="summary")
    table.add_column("outcome")
    table.add_column("recipients", justify="right")
    styles: dict[str, Any] = {"accepted": "green", "delivered": "green", "refused": "red"}
    for status, count in rows:
        table.add_row(status, str(count), style=styles.get(status, "yellow"))
    console = Console(file=stream)
    console.print(table)
    console.print(footer, highlight=False)
