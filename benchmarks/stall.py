"""The 40 ms stall after STARTTLS, counted: how many of N one-shot sends wait
more than 30 ms for the reply to the EHLO that follows the TLS handshake.

Against Postfix + Dovecot (STARTTLS, AUTH, ``discard:``; benchmarks/mta.py),
in one run, interleaved:

* ``smtpclient.send()`` as shipped: TLS sessions resumed, and TCP_QUICKACK
  after the handshake and after the first write under TLS
  (``smtpclient.sockets.ack_at_once``);
* the same with every handshake a full one (the session cache emptied
  before each send: a first connection, or a caller with a new context
  each time);
* full handshakes and ``ack_at_once`` switched off -- the behaviour before;
* smtplib (``starttls()`` then ``ehlo()``; full handshakes), for comparison.

The EHLO round trip is read from smtpclient's transcript (the times of the
"C: EHLO" after STARTTLS and of the first reply line after it); smtplib's is
timed around ``ehlo()``.

Why it stalls: right after a TLS 1.3 handshake Postfix sends its session
tickets, then reads our EHLO and writes the reply.  Nagle's algorithm (on in
Postfix) holds that small reply until the tickets are acknowledged.  When our
EHLO left before the tickets arrived, no data of ours carries that ACK, and
Linux's delayed ACK sends it only after 40 ms.  smtplib is slow enough to
write EHLO after the tickets arrived (its EHLO carries the ACK).  Quick-ack
mode makes the kernel acknowledge the tickets at once.

    sudo python -m benchmarks.stall            # 100 sends per contender
    sudo python -m benchmarks.stall --sends 300
"""

from __future__ import annotations

import argparse
import logging
import os
import smtplib
import ssl
import statistics
import time
from collections.abc import Callable

from benchmarks.mta import MTA, postfix_tls_sasl
from benchmarks.sink import CLIENT_CPU

__all__ = ["main"]

SLOW = 0.030  # seconds: a reply later than this waited for a delayed ACK
SERVER_NAME = "mail.example.test"
BODY = b"Subject: stall\r\n\r\nhello\r\n"


class EhloTimer(logging.Handler):
    """Times the EHLO after STARTTLS from the transcript's records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.created, record.getMessage()))

    def take(self) -> float:
        """Seconds from the second "C: EHLO" to the first reply line after it."""
        records, self.records = self.records, []
        sent = None
        ehlos = 0
        for created, text in records:
            if " C: EHLO " in text:
                ehlos += 1
                if ehlos == 2:
                    sent = created
            elif sent is not None and " S: " in text:
                return created - sent
        raise RuntimeError("no EHLO after STARTTLS in the transcript")


def smtpclient_send(mta: MTA, context: ssl.SSLContext, timer: EhloTimer) -> float:
    import smtpclient  # noqa: PLC0415 (imported where needed)

    smtpclient.send(
        BODY,
        host=mta.host,
        port=mta.port,
        tls=smtpclient.TLSMode.STARTTLS,
        ssl_context=context,
        server_hostname=SERVER_NAME,
        username=mta.username,
        password=mta.password,
        sender=mta.username,
        recipients=[mta.username],
    )
    return timer.take()


def smtplib_send(mta: MTA, context: ssl.SSLContext) -> float:
    smtp = smtplib.SMTP(mta.host, mta.port, timeout=30)
    try:
        smtp.starttls(context=context)
        start = time.perf_counter()
        smtp.ehlo()
        took = time.perf_counter() - start
        smtp.login(mta.username, mta.password)
        smtp.sendmail(mta.username, [mta.username], BODY)
    finally:
        smtp.quit()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stall")
    parser.add_argument("--sends", type=int, default=100, help="per contender")
    args = parser.parse_args(argv)
    import smtpclient.transport  # noqa: PLC0415 (imported where needed)

    shipped = smtpclient.transport.ack_at_once
    timer = EhloTimer()
    transcript = logging.getLogger("smtpclient.transcript")
    transcript.addHandler(timer)
    transcript.setLevel(logging.DEBUG)
    from smtpclient.tlsresume import sessions  # noqa: PLC0415 (imported where needed)

    results: dict[str, list[float]] = {}
    with postfix_tls_sasl() as mta:
        os.sched_setaffinity(0, {CLIENT_CPU})
        # smtpclient.send() gets a fresh context per call when none is given;
        # both clients are handed the same one here (resumption on).
        context = ssl.create_default_context(cafile=mta.ca_file)
        # name: (resume TLS sessions, quick ACKs, the send)
        contenders: dict[str, tuple[bool, bool, Callable[[], float]]] = {
            "smtpclient": (True, True, lambda: smtpclient_send(mta, context, timer)),
            "  full handshakes": (False, True, lambda: smtpclient_send(mta, context, timer)),
            "  and no quick-ack": (False, False, lambda: smtpclient_send(mta, context, timer)),
            "smtplib": (False, True, lambda: smtplib_send(mta, context)),
        }
        for _ in range(args.sends):
            for name, (resume, quick, run) in contenders.items():
                smtpclient.transport.ack_at_once = (  # type: ignore[attr-defined]
                    shipped if quick else (lambda sock: None)
                )
                if not resume:
                    sessions.clear()
                results.setdefault(name, []).append(run())
                if not resume:
                    sessions.clear()
        smtpclient.transport.ack_at_once = shipped  # type: ignore[attr-defined]
        load = os.getloadavg()
    print(
        f"EHLO after STARTTLS, Postfix + Dovecot on loopback, {args.sends} one-shot sends each "
        f"(interleaved); load average {load[0]:.2f}"
    )
    for name, times in results.items():
        slow = sum(t > SLOW for t in times)
        print(
            f"  {name:18} > {SLOW * 1000:.0f} ms: {slow:4d} of {len(times)} "
            f"({slow / len(times):5.1%}); median {statistics.median(times) * 1000:6.2f} ms, "
            f"max {max(times) * 1000:6.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
