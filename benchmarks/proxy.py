"""A delay proxy on 127.0.0.1: each chunk is held for *delay* seconds in each
direction, so a round trip gains 2 x delay (the kernel here has no netem).

Run as its own process (so it never competes for the client's GIL):

    python -m benchmarks.proxy TARGET_PORT DELAY_SECONDS

It prints the port it listens on, forwards every connection to
127.0.0.1:TARGET_PORT, and exits when its standard input closes.  Each
direction has a reader thread that stamps every chunk with its release time
and a writer thread that sleeps until then (``time.sleep`` is precise to
tens of microseconds here; ``poll``/``epoll`` round timeouts up to whole
milliseconds), so write boundaries and their spacing are kept.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import sys
import threading
import time

__all__ = ["main"]


def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
    held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def writer() -> None:
        try:
            while True:
                due, data = held.get()
                if not data:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while True:
            data = source.recv(262144)
            held.put((time.perf_counter() + delay, data))
            if not data:
                break
    except OSError:
        held.put((0.0, b""))
    thread.join()


def _serve(client: socket.socket, target_port: int, delay: float) -> None:
    with client, socket.create_connection(("127.0.0.1", target_port)) as server:
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=_pump, args=(server, client, delay), daemon=True)
        back.start()
        _pump(client, server, delay)
        back.join()


def main() -> None:
    target_port, delay = int(sys.argv[1]), float(sys.argv[2])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_serve, args=(client, target_port, delay), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin (or exits)


if __name__ == "__main__":
    main()
