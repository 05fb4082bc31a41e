"""What pooling buys a web app: messages per second with one connection per
message (``smtpclient.send``: connect, STARTTLS, AUTH, send, QUIT each time)
against a shared ``Mailer`` (a few pooled connections, TLS and AUTH once each).

The server is aiosmtpd with STARTTLS and AUTH (a throwaway trustme CA) in a
separate process, so that it does not share the client's GIL.

Run (a few seconds):

    python benchmarks/pool_reuse.py                       # 400 messages, 8 threads
    python benchmarks/pool_reuse.py --messages 1000 --threads 16 --connections 4

Prints messages per second and the connections the server accepted for each
way.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import ssl
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.metering import MeteredAiosmtpd

from smtpclient import Mailer, TLSMode, send

BODY = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: bench\r\n\r\nhello\r\n"


def serve(cert_pem: bytes, key_pem: bytes, pipe: Connection) -> None:
    """Child process: aiosmtpd with STARTTLS and AUTH until told to stop."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with (
        trustme.Blob(cert_pem).tempfile() as cert,
        trustme.Blob(key_pem).tempfile() as key,
    ):
        context.load_cert_chain(cert, key)
    server = MeteredAiosmtpd(tls_context=context, users={"user": "secret"}).start()
    pipe.send(server.port)
    pipe.recv()  # "stop"
    pipe.send((len(server.messages), server.meter.total))
    server.stop()


def run_threads(threads: int, total: int, send_one: Callable[[], object]) -> float:
    """Send *total* messages from *threads* threads; return the seconds taken."""
    counter = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            send_one()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return time.perf_counter() - start


def measure(name: str, args: argparse.Namespace, send_one: Callable[[int, ssl.SSLContext], object],
            ca: trustme.CA, leaf: trustme.LeafCert) -> None:  # fmt: skip
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=serve, args=(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(), child)
    )
    process.start()
    port = parent.recv()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    try:
        seconds = run_threads(args.threads, args.messages, lambda: send_one(port, client))
    finally:
        parent.send("stop")
        messages, connections = parent.recv()
        process.join(10)
    print(
        f"{name:<28} {args.messages / seconds:8.0f} msg/s   {seconds:6.2f} s   "
        f"{messages} messages over {connections} connections"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=4, help="Mailer max_connections")
    args = parser.parse_args()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    login = {"username": "user", "password": "secret"}

    def per_message(port: int, client: ssl.SSLContext) -> object:
        return send(BODY, host="127.0.0.1", port=port, tls=TLSMode.STARTTLS, ssl_context=client,
                    sender="a@example.test", recipients=["b@example.test"], **login)  # fmt: skip

    measure("connection per message", args, per_message, ca, leaf)

    mailers: dict[int, Mailer] = {}

    def pooled(port: int, client: ssl.SSLContext) -> object:
        mailer = mailers.get(port)
        if mailer is None:
            mailer = mailers.setdefault(port, Mailer(
                "127.0.0.1", port, tls=TLSMode.STARTTLS, ssl_context=client,
                max_connections=args.connections, **login))  # fmt: skip
        return mailer.sendmail("a@example.test", ["b@example.test"], BODY)

    measure(f"Mailer ({args.connections} connections)", args, pooled, ca, leaf)
    for mailer in mailers.values():
        mailer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
