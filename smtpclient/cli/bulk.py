"""``send --bulk recipients.csv --template message.eml``: one message per row.

A fixed number of worker threads (``--concurrency``) take rows in order and
send each one's message through the connection pool (``smtpclient.Mailer``)
or, with ``--direct``, to the recipient's MX hosts.  The main thread only
draws progress and watches for Ctrl-C: the first one stops taking new rows
and waits for the messages already in flight (each bounded by its
timeouts); a second one stops at once and reports those in flight as
"unknown".  Either way every row ends with one outcome, "not sent" for the
rows never started, and the summary says so.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from types import FrameType

from smtpclient.cli.common import (
    EX_DATAERR,
    EX_USAGE,
    INTERRUPTED,
    connection_settings,
    fail,
    read_password,
)
from smtpclient.cli.compose import parse_message, read_input
from smtpclient.cli.direct import direct_options
from smtpclient.cli.outcomes import Outcome, exit_code, from_error
from smtpclient.cli.progress import Display, make_display, print_summary
from smtpclient.cli.senders import DirectSender, MailerSender, Sender
from smtpclient.cli.sendopts import dsn_from, target_from
from smtpclient.cli.template import Row, check_template, read_rows, render
from smtpclient.cli.transcript import transcript

__all__ = ["BulkRun", "run_bulk"]

MAX_CONCURRENCY = 64


def _check_options(args: argparse.Namespace) -> None:
    if not (args.bulk and args.template):
        fail("--bulk CSV and --template EML go together")
    clashing = [
        name
        for name, value in (
            ("--to", args.to),
            ("--cc", args.cc),
            ("--bcc", args.bcc),
            ("--eml", args.eml),
            ("--body", args.body),
            ("--body-file", args.body_file),
            ("--attach", args.attach),
        )
        if value
    ]
    if clashing:
        fail(
            f"--bulk takes recipients from the CSV and the message from --template; "
            f"drop {', '.join(clashing)}"
        )
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        fail(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")


def run_bulk(args: argparse.Namespace) -> int:
    """Send the template to every row of the CSV; print progress and a summary."""
    _check_options(args)
    server = target_from(args)
    rows = read_rows(read_input(args.bulk), args.bulk)
    template = parse_message(read_input(args.template), args.template)
    check_template(template, set(rows[0].values), args.template)
    sender = _sender(args, template)
    dsn = dsn_from(args)
    password = read_password(args.user, str(server)) if args.user and server else None
    domain = sender.rpartition("@")[2] or None

    def build(row: Row) -> EmailMessage:
        return render(template, row, domain)

    transport: Sender
    if server is None:
        transport = DirectSender(dsn, direct_options(args))
    else:
        transport = MailerSender(
            server,
            connection_settings(args),
            username=args.user,
            password=password,
            allow_insecure_auth=args.allow_insecure_auth,
            dsn=dsn,
            concurrency=args.concurrency,
        )
    display = make_display(len(rows), quiet=args.quiet)
    interrupts = Interrupts()
    run = BulkRun(rows, build, sender, transport, args.concurrency, display, interrupts)
    started = time.monotonic()
    secrets = [password] if password else []
    with transcript(args.transcript, show_host=True, secrets=secrets), interrupts.installed():
        outcomes = run.run()
    display.close()
    fancy = sys.stdout.isatty()
    print_summary(outcomes, time.monotonic() - started, sys.stdout, fancy=fancy)
    if args.report:
        _write_report(args.report, outcomes)
    if run.interrupted:
        _report_interrupted(outcomes, args.report)
        return INTERRUPTED
    return exit_code(outcomes)


def _sender(args: argparse.Namespace, template: EmailMessage) -> str:
    import email.utils  # noqa: PLC0415

    if args.sender:
        _, addr = email.utils.parseaddr(args.sender)
    else:
        found = email.utils.getaddresses([str(v) for v in template.get_all("From", [])])
        addr = next((a for _, a in found if a), "")
    if "@" not in addr:
        fail("no sender: give --from or a From header in the template", EX_USAGE)
    return addr


class Interrupts:
    """Counts Ctrl-C (SIGINT) and SIGTERM while installed (main thread only)."""

    def __init__(self) -> None:
        self.count = 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Count the signals instead of dying of them, for the duration; also
        when the shell started us with SIGINT ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class BulkRun:
    """Send one message per row with *concurrency* worker threads.

    ``run()`` returns every recipient's outcome in row order; after it,
    ``interrupted`` says whether Ctrl-C cut it short.
    """

    def __init__(
        self,
        rows: Sequence[Row],
        build: Callable[[Row], EmailMessage],
        sender: str,
        transport: Sender,
        concurrency: int,
        display: Display,
        interrupts: Interrupts,
    ) -> None:
        self.rows = list(rows)
        self.build = build
        self.sender = sender
        self.transport = transport
        self.display = display
        self.interrupts = interrupts
        self.interrupted = False
        self._todo: queue.Queue[Row] = queue.Queue()
        for row in self.rows:
            self._todo.put(row)
        self._done: queue.Queue[list[Outcome]] = queue.Queue()
        self._results: dict[int, list[Outcome]] = {}
        self._in_flight: dict[int, Row] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"bulk-{n}", daemon=True)
            for n in range(min(concurrency, len(self.rows)))
        ]

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                row = self._todo.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._in_flight[row.index] = row
            outcomes = self._send(row)
            with self._lock:
                self._in_flight.pop(row.index, None)
                if row.index in self._results:  # reported "unknown" by an abort
                    continue
                self._results[row.index] = outcomes
            self._done.put(outcomes)

    def _send(self, row: Row) -> list[Outcome]:
        if "@" not in row.address:
            return [
                Outcome(
                    row.address or "(empty)", "invalid", f"line {row.index}: no address", EX_DATAERR
                )
            ]
        try:
            message = self.build(row)
        except (ValueError, KeyError) as exc:
            return [Outcome(row.address, "invalid", f"line {row.index}: {exc}", EX_DATAERR)]
        try:
            return self.transport.send(message, self.sender, [row.address])
        except Exception as exc:  # every row ends with an outcome, whatever happened
            return from_error(exc, [row.address])

    def run(self) -> list[Outcome]:
        """Send everything (or until interrupted); every row gets an outcome.

        Ctrl-C only counts (``Interrupts``); this loop looks at the count
        between outcomes, so an interrupt never lands in the middle of the
        bookkeeping.
        """
        for worker in self._workers:
            worker.start()
        aborted = False
        while any(worker.is_alive() for worker in self._workers) or not self._done.empty():
            with contextlib.suppress(queue.Empty):
                self.display.advance(self._done.get(timeout=0.1))
            if self.interrupts.count and not self.interrupted:
                self._stop_taking_rows()
            if self.interrupts.count >= 2:
                self._abort()
                aborted = True
                break
        self.transport.close(wait=not aborted)
        return self._collect()

    def _stop_taking_rows(self) -> None:
        self.interrupted = True
        self._stop.set()
        with self._lock:
            flying = len(self._in_flight)
        self.display.note(
            f"interrupted: finishing {flying} message(s) in flight; "
            "press Ctrl-C again to stop at once"
        )

    def _abort(self) -> None:
        """Stop waiting: what is in flight may or may not arrive."""
        with self._lock:
            for index, row in self._in_flight.items():
                self._results[index] = [
                    Outcome(row.address, "unknown", "interrupted while sending", INTERRUPTED)
                ]
        self.display.note("stopped: messages in flight are reported as unknown")

    def _collect(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._lock:
            for row in self.rows:
                outcomes += self._results.get(
                    row.index,
                    [Outcome(row.address, "not sent", "interrupted before sending", INTERRUPTED)],
                )
        return outcomes


def _write_report(path: str, outcomes: Sequence[Outcome]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["email", "status", "detail"])
            for outcome in outcomes:
                writer.writerow([outcome.recipient, outcome.status, outcome.detail])
    except OSError as exc:
        print(f"smtpclient: error: cannot write the report {path}: {exc}", file=sys.stderr)


def _report_interrupted(outcomes: Sequence[Outcome], report: str | None) -> None:
    sent = [o for o in outcomes if o.ok]
    unsent = [o for o in outcomes if o.status == "not sent"]
    unknown = [o for o in outcomes if o.status == "unknown"]
    out = sys.stderr
    print(
        f"interrupted: {len(sent)} sent, {len(unsent)} not sent, {len(unknown)} unknown, "
        f"{len(outcomes) - len(sent) - len(unsent) - len(unknown)} failed",
        file=out,
    )
    shown = 20
    if unsent:
        names = ", ".join(o.recipient for o in unsent[:shown])
        more = f" and {len(unsent) - shown} more" if len(unsent) > shown else ""
        print(f"not sent: {names}{more}", file=out)
    if unknown:
        print(f"may or may not have arrived: {', '.join(o.recipient for o in unknown)}", file=out)
    if report:
        print(f"every recipient's outcome is in {report}", file=out)
    elif len(unsent) > shown:
        print("use --report FILE to list every recipient's outcome", file=out)
