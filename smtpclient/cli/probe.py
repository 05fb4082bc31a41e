"""``smtpclient probe host[:port]``: what a server offers, without sending mail.

It connects, shows the greeting and the EHLO capabilities, tries STARTTLS
(or implicit TLS on port 465) and shows the TLS version, cipher and the
certificate -- subject, issuer, expiry, names, and whether it verified.
When it does not verify, a second connection without verification shows
what the certificate says anyway (that is what an admin needs to fix it)
and the capabilities offered under TLS, such as AUTH.  It ends with QUIT;
no MAIL command is ever sent.

Exit status: 0 when the server greeted and answered EHLO; with ``--tls
starttls`` or ``--tls implicit`` also only when TLS worked and the
certificate verified (else 75, as a real send would fail).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from typing import Any

from smtpclient.cli.certificate import describe_certificate
from smtpclient.cli.common import (
    EX_OK,
    EX_TEMPFAIL,
    add_tls_options,
    connection_settings,
    error,
    exit_code_for,
    parse_server,
)
from smtpclient.cli.outcomes import describe
from smtpclient.cli.transcript import transcript
from smtpclient.errors import CertificateVerifyError, SMTPClientError, StartTLSError, TLSError
from smtpclient.protocol.reply import Reply
from smtpclient.session import Session
from smtpclient.tls import TLSInfo, TLSMode, default_mode, unverified_context, verifying_context

__all__ = ["register", "run"]

EXAMPLES = """\
examples:
  smtpclient probe smtp.example.com:587
  smtpclient probe mx1.example.com              # port 25
  smtpclient probe smtp.example.com:465         # implicit TLS
  smtpclient probe 127.0.0.1:2525 --cafile test-ca.pem --tls-name mail.example.test
  smtpclient probe smtp.example.com:587 --json | jq .tls
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``probe`` to the command line."""
    parser = subparsers.add_parser(
        "probe",
        help="show a server's greeting, capabilities, TLS and certificate (sends no mail)",
        description="Connect to a server and show its greeting, EHLO capabilities, the "
        "STARTTLS result with the certificate (subject, issuer, expiry, verification), the "
        "TLS version and cipher, and the AUTH mechanisms. No mail is sent.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("server", metavar="HOST[:PORT]", help="the server (port 25 unless given)")
    add_tls_options(
        parser,
        default_help="none (do not try TLS), opportunistic (try STARTTLS when offered: the "
        "default), starttls (fail without it), implicit (the default on port 465)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--transcript", action="store_true", help="also print the conversation")
    parser.set_defaults(handler=run)


class Report:
    """Collects what was found; prints it as it comes unless JSON was asked for."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.data: dict[str, Any] = {}

    def line(self, label: str, value: str) -> None:
        if not self.as_json:
            print(f"{label:<13} {value}", flush=True)

    def more(self, value: str) -> None:
        if not self.as_json:
            print(f"{'':<13} {value}", flush=True)

    def capabilities(self, label: str, key: str, session: Session) -> None:
        reply = session.ehlo_reply
        lines = list(reply.lines) if reply is not None else []
        self.data[key] = lines
        if lines:
            self.line(label, lines[0])
            for capability in lines[1:]:
                self.more(capability)

    def tls(self, info: TLSInfo, verify_error: str | None) -> None:
        self.line("TLS", f"{info.version} {info.cipher}")
        verified = info.verified and verify_error is None
        name = info.server_hostname or "(no name given)"
        state = f"verified for {name}" if verified else f"NOT verified: {verify_error or '?'}"
        self.line("certificate", state)
        details = describe_certificate(info)
        entry: dict[str, Any] = {
            "version": info.version,
            "cipher": info.cipher,
            "verified": verified,
            "verify_error": verify_error,
            "server_hostname": info.server_hostname,
        }
        if details is not None:
            for label, value in details.lines():
                self.more(f"{label + ':':<11} {value}")
            entry["certificate"] = {
                "subject": details.subject,
                "issuer": details.issuer,
                "not_before": details.not_before,
                "not_after": details.not_after,
                "days_left": details.days_left,
                "names": list(details.names) if details.names is not None else None,
                "key": details.key,
                "signature": details.signature,
                "decoded_by": details.decoded_by,
            }
        self.data["tls"] = entry

    def finish(self, code: int) -> int:
        self.data["exit_code"] = code
        if self.as_json:
            json.dump(self.data, sys.stdout, indent=2, ensure_ascii=False)
            print()
        else:
            print("no mail was sent", flush=True)
        return code


def run(args: argparse.Namespace) -> int:
    """Probe the server; see the module docstring for the exit status."""
    server = parse_server(args.server, default_port=25)
    settings = connection_settings(args)
    mode = settings.tls or default_mode(server.port)
    context = settings.ssl_context or verifying_context()
    report = Report(as_json=args.json)
    report.data.update(server=str(server), tls_mode=mode.value)
    report.line("server", f"{server} (TLS mode {mode.value})")
    options: dict[str, Any] = {
        "server_hostname": settings.server_hostname,
        "timeouts": settings.timeouts,
        "local_hostname": settings.local_hostname,
    }
    with transcript(args.transcript, sys.stderr, show_host=False):
        try:
            code = _probe(server.host, server.port, mode, context, options, report)
        except SMTPClientError as exc:
            error(str(exc))
            report.data["error"] = str(exc)
            return report.finish(exit_code_for(exc))
    return report.finish(code)


def _connect(host: str, port: int, report: Report, **kwargs: Any) -> Session:
    started = time.monotonic()
    session = Session.connect(host, port, **kwargs)
    took = (time.monotonic() - started) * 1000
    report.data["connect_ms"] = round(took, 1)
    return session


def _greeting(report: Report, session: Session) -> None:
    greeting = session.greeting or Reply(0)
    report.data["greeting"] = describe(greeting)
    report.line("connected", f"in {report.data['connect_ms']:.1f} ms")
    report.line("greeting", describe(greeting))


def _probe(
    host: str,
    port: int,
    mode: TLSMode,
    context: ssl.SSLContext,
    options: dict[str, Any],
    report: Report,
) -> int:
    if mode is TLSMode.IMPLICIT:
        return _probe_implicit(host, port, context, options, report)
    session = _connect(host, port, report, tls=TLSMode.NONE, **options)
    try:
        _greeting(report, session)
        report.capabilities("EHLO", "ehlo", session)
        if mode is TLSMode.NONE:
            _auth(report, session)
            return EX_OK
        if not session.extensions.starttls:
            report.line("STARTTLS", "not offered")
            report.data["starttls"] = "not offered"
            _auth(report, session)
            return EX_TEMPFAIL if mode is TLSMode.STARTTLS else EX_OK
        try:
            info = session.starttls(context)
        except CertificateVerifyError as exc:
            report.data["starttls"] = "ok"
            report.line("STARTTLS", "handshake done; certificate did not verify")
            return _unverified_starttls(host, port, context, options, report, exc)
        except StartTLSError as exc:
            report.data["starttls"] = str(exc)
            report.line("STARTTLS", f"refused: {exc}")
            return EX_TEMPFAIL if mode is TLSMode.STARTTLS else EX_OK
        except TLSError as exc:
            report.data["starttls"] = str(exc)
            report.line("STARTTLS", f"failed: {exc}")
            return EX_TEMPFAIL if mode is TLSMode.STARTTLS else EX_OK
        report.data["starttls"] = "ok"
        report.line("STARTTLS", "ok")
        report.tls(info, None)
        report.capabilities("EHLO (TLS)", "ehlo_tls", session)
        _auth(report, session)
        return EX_OK
    finally:
        session.quit()


def _unverified_starttls(
    host: str,
    port: int,
    context: ssl.SSLContext,
    options: dict[str, Any],
    report: Report,
    problem: CertificateVerifyError,
) -> int:
    """Connect again, encrypt without verifying, and show the certificate anyway."""
    reason = problem.message
    with _connect(host, port, report, tls=TLSMode.NONE, **options) as session:
        info = session.starttls(unverified_context(context))
        report.tls(info, reason)
        report.capabilities("EHLO (TLS)", "ehlo_tls", session)
        _auth(report, session)
    return EX_TEMPFAIL if report.data["tls_mode"] == TLSMode.STARTTLS.value else EX_OK


def _probe_implicit(
    host: str, port: int, context: ssl.SSLContext, options: dict[str, Any], report: Report
) -> int:
    reason = None
    try:
        session = _connect(host, port, report, tls=TLSMode.IMPLICIT, ssl_context=context, **options)
    except CertificateVerifyError as exc:
        reason = exc.message
        unverified = unverified_context(context)
        session = _connect(
            host, port, report, tls=TLSMode.IMPLICIT, ssl_context=unverified, **options
        )
    with session:
        _greeting(report, session)
        assert session.tls is not None
        report.tls(session.tls, reason)
        report.capabilities("EHLO", "ehlo_tls", session)
        _auth(report, session)
    return EX_TEMPFAIL if reason else EX_OK


def _auth(report: Report, session: Session) -> None:
    mechanisms = sorted(session.extensions.auth_mechanisms)
    report.data["auth"] = mechanisms
    where = "over TLS" if session.tls is not None else "without TLS"
    report.line("AUTH", f"{' '.join(mechanisms)} ({where})" if mechanisms else "not offered")
