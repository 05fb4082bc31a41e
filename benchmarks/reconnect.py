"""One message per connection (STARTTLS + AUTH), send by send: smtpclient.send()
against smtplib, interleaved one send at a time so that machine load hits
both alike, with the median of each send's wall-clock and CPU time.

The scenario of issue 19.4 (a web app that calls ``smtpclient.send()`` once
per request): Postfix + Dovecot (benchmarks/mta.py: STARTTLS, Dovecot SASL
with a plaintext passdb, ``discard:``), client pinned to one CPU and the
servers to the other.  Contenders, in turn for every message:

* ``smtpclient.send()`` as shipped (one ``ssl_context`` for all sends, as
  a web app configures it; TLS sessions resume; PLAIN over verified TLS);
* the same with every handshake a full one (session cache emptied first);
* ``smtplib``: connect, ``starttls()``, ``login()`` (CRAM-MD5, its first
  choice), ``sendmail()``, ``quit()`` -- what Django's SMTP backend does.

Figures per send, so a burst of load moves a few sends rather than a whole
run: the median wall-clock time (its inverse is the rate shown), the
median CPU time of the client (``time.thread_time``), and the share of
sends slower than 30 ms.  Postfix's log must count every message.

    sudo python -m benchmarks.reconnect             # 300 sends each
    sudo python -m benchmarks.reconnect --sends 1000
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import statistics
import time
from collections.abc import Callable

from benchmarks.mta import MTA, postfix_tls_sasl
from benchmarks.sink import CLIENT_CPU

__all__ = ["main"]

SERVER_NAME = "mail.example.test"
BODY = b"Subject: reconnect\r\n\r\n" + (b"x" * 78 + b"\r\n") * 25  # 2 KiB
TARGET = 1.0  # issue 19.4: send() >= 1.0x smtplib's connection-per-message rate


def smtpclient_send(mta: MTA, context: ssl.SSLContext) -> None:
    import smtpclient  # noqa: PLC0415 (imported where needed)

    result = smtpclient.send(
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
    if len(result.accepted) != 1:
        raise RuntimeError(f"not accepted: {result!r}")


def smtplib_send(mta: MTA, context: ssl.SSLContext) -> None:
    smtp = smtplib.SMTP(mta.host, mta.port, timeout=30)
    try:
        smtp.starttls(context=context)
        smtp.login(mta.username, mta.password)
        refused = smtp.sendmail(mta.username, [mta.username], BODY)
        if refused:
            raise RuntimeError(f"refused: {refused}")
    finally:
        smtp.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reconnect")
    parser.add_argument("--sends", type=int, default=300, help="per contender")
    args = parser.parse_args(argv)
    from smtpclient.tlsresume import sessions  # noqa: PLC0415 (imported where needed)

    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with postfix_tls_sasl() as mta:
        os.sched_setaffinity(0, {CLIENT_CPU})
        context = ssl.create_default_context(cafile=mta.ca_file)

        def full_handshake() -> None:
            sessions.clear()
            smtpclient_send(mta, context)

        contenders: dict[str, Callable[[], None]] = {
            "smtpclient.send()": lambda: smtpclient_send(mta, context),
            "  full handshakes": full_handshake,
            "smtplib, conn/msg": lambda: smtplib_send(mta, context),
        }
        for run in contenders.values():  # warm up: imports, first handshake
            for _ in range(5):
                run()
        for _ in range(args.sends):
            for name, run in contenders.items():
                started, started_cpu = time.perf_counter(), time.thread_time()
                run()
                cpu.setdefault(name, []).append(time.thread_time() - started_cpu)
                wall.setdefault(name, []).append(time.perf_counter() - started)
        sent = (args.sends + 5) * len(contenders)
        seen = mta.wait_for(sent)
        load = os.getloadavg()
    counted = "ok" if seen == sent else f"MISMATCH: Postfix delivered {seen} of {sent}"
    print(
        f"one message per connection, STARTTLS + AUTH, Postfix + Dovecot on loopback; "
        f"{args.sends} sends each, interleaved one by one; load average {load[0]:.2f}"
    )
    base_wall = statistics.median(wall["smtplib, conn/msg"])
    base_cpu = statistics.median(cpu["smtplib, conn/msg"])
    print(
        f"  {'contender':20} {'msg/s':>6} {'x smtplib':>9} {'CPU ms':>7} {'x smtplib':>9} "
        f"{'> 30 ms':>8}"
    )
    for name in contenders:
        median_wall, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        slow = sum(t > 0.030 for t in wall[name]) / len(wall[name])
        print(
            f"  {name:20} {1 / median_wall:6.0f} {base_wall / median_wall:8.2f}x "
            f"{median_cpu * 1000:7.2f} {median_cpu / base_cpu:8.2f}x {slow:8.1%}"
        )
    print(f"  counted by Postfix: {counted}")
    ratio = base_wall / statistics.median(wall["smtpclient.send()"])
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"{verdict}  smtpclient.send() >= {TARGET}x smtplib conn/msg rate: {ratio:.2f}x")
    return 0 if seen == sent else 1


if __name__ == "__main__":
    raise SystemExit(main())
