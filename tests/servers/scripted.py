"""Small scripted SMTP servers for misbehaviour: one function per behaviour.

A ``ScriptedServer`` listens on 127.0.0.1 and runs a handler function for
each connection in its own thread.  The handler drives the conversation with
a ``Conn`` (send bytes, read a command line, read DATA, drip, stall, close).
Everything the client sent is kept in ``Conn.received`` so tests can check
the wire, not only the outcome.  ``stop()`` closes every socket and joins
every thread, bounded in time.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable

Handler = Callable[["Conn"], None]


class ClientGone(Exception):
    """The client closed the connection (or the server is stopping)."""


class Conn:
    """The server side of one connection."""

    def __init__(self, sock: socket.socket, server: ScriptedServer) -> None:
        self.sock: socket.socket = sock
        self.server = server
        self.received = bytearray()  # every byte the client sent, in order
        self.writes: list[bytes] = []  # each recv() result, to see how the client grouped writes
        self._buffer = bytearray()
        self.sock.settimeout(0.2)

    # --- reading -----------------------------------------------------------------

    def _fill(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            if self.server.stopping.is_set():
                raise ClientGone("server stopping")
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if time.monotonic() >= end:
                    raise
                continue
            except (ConnectionError, OSError) as exc:
                raise ClientGone(str(exc)) from exc
            if not data:
                raise ClientGone("client closed")
            self.received += data
            self.writes.append(bytes(data))
            self._buffer += data
            return

    def line(self, timeout: float = 10.0) -> bytes:
        """The next line the client sent, without CRLF."""
        end = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            self._fill(max(end - time.monotonic(), 0.01))
        index = self._buffer.index(b"\n")
        line = bytes(self._buffer[:index]).rstrip(b"\r")
        del self._buffer[: index + 1]
        return line

    def expect(self, prefix: bytes, timeout: float = 10.0) -> bytes:
        """Read a line and check that it starts with *prefix* (case-insensitive)."""
        line = self.line(timeout)
        if not line.upper().startswith(prefix.upper()):
            raise AssertionError(f"expected {prefix!r}, got {line!r}")
        return line

    def read_exact(self, count: int, timeout: float = 10.0) -> bytes:
        """Exactly *count* bytes (BDAT content)."""
        end = time.monotonic() + timeout
        while len(self._buffer) < count:
            self._fill(max(end - time.monotonic(), 0.01))
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def read_data(self, timeout: float = 10.0) -> bytes:
        """DATA content up to and including the CRLF.CRLF end marker (as sent)."""
        end = time.monotonic() + timeout
        while True:
            marker = self._buffer.find(b"\r\n.\r\n")
            if self._buffer.startswith(b".\r\n"):
                marker, skip = 0, 3
            else:
                skip = 5
            if marker >= 0:
                data = bytes(self._buffer[: marker + skip])
                del self._buffer[: marker + skip]
                return data
            self._fill(max(end - time.monotonic(), 0.01))

    def pending(self) -> bytes:
        """Bytes read but not yet consumed by line()/read_*()."""
        return bytes(self._buffer)

    # --- writing -----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write *data* at once."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc

    def reply(self, *lines: str) -> None:
        """Send a (multi-line) reply given as "250 text" strings; the separator is added."""
        out = []
        for index, text in enumerate(lines):
            code, rest = text[:3], text[4:]
            sep = " " if index == len(lines) - 1 else "-"
            out.append(f"{code}{sep}{rest}\r\n")
        self.send("".join(out).encode("utf-8"))

    def drip(self, data: bytes, interval: float) -> None:
        """Send *data* one byte at a time, *interval* seconds apart."""
        for byte in data:
            if self.server.stopping.wait(interval):
                raise ClientGone("server stopping")
            self.send(bytes([byte]))

    def stall(self, seconds: float = 60.0) -> None:
        """Say nothing (keep reading so the client never blocks on a full window)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.server.stopping.wait(0.05):
                return
            with contextlib.suppress(TimeoutError):
                self._fill(0.05)

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """True once the client has closed its side."""
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError):
                    self._fill(0.05)
        except ClientGone:
            return True
        return False

    def starttls(self, context: ssl.SSLContext) -> None:
        """Wrap the socket (after a 220 to STARTTLS)."""
        self.sock.settimeout(10)
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(0.2)
        self._buffer.clear()

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self.sock.close()


class ScriptedServer:
    """Listen on 127.0.0.1:0 and run *handler* for each connection."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        implicit_tls: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
        max_connections: int = 64,
        port: int = 0,  # a fixed port: several servers on one port across 127.0.0.x
    ) -> None:
        self.handler = handler
        self.host = host
        self.implicit_tls = implicit_tls
        self.rcvbuf = rcvbuf
        self.max_connections = max_connections
        self.stopping = threading.Event()
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            # Set before listen() so accepted sockets inherit the small window.
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self._listener.bind((host, port))
        except OSError:
            self._listener.close()
            raise
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="scripted-accept", daemon=True
        )

    @property
    def connections(self) -> int:
        return len(self.conns)

    def start(self) -> ScriptedServer:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.implicit_tls is not None:
                try:
                    sock.settimeout(10)
                    sock = self.implicit_tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    sock.close()
                    continue
            conn = Conn(sock, self)
            with self._lock:
                if len(self.conns) >= self.max_connections:
                    conn.close()
                    continue
                self.conns.append(conn)
            worker = threading.Thread(
                target=self._serve, args=(conn,), name="scripted-conn", daemon=True
            )
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: Conn) -> None:
        try:
            self.handler(conn)
        except ClientGone:
            pass
        except TimeoutError:
            pass
        except BaseException as exc:  # kept for the test to inspect
            self.errors.append(exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        for conn in list(self.conns):
            conn.close()
        for worker in self._threads:
            worker.join(5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- building blocks for handlers ------------------------------------------------------


def greet_and_ehlo(conn: Conn, extensions: Iterable[str] = ("PIPELINING", "8BITMIME")) -> bytes:
    """Send 220, answer EHLO with *extensions*; return the EHLO line."""
    conn.reply("220 scripted.test ESMTP")
    line = conn.expect(b"EHLO")
    conn.reply("250 scripted.test", *(f"250 {ext}" for ext in extensions))
    return line


def serve_normally(conn: Conn, *, data_reply: str = "250 2.0.0 Ok: queued as SCRIPTED") -> None:
    """Answer commands like a plain, well-behaved server until QUIT or close."""
    while True:
        line = conn.line()
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"MAIL" or verb == b"RCPT" or verb == b"RSET" or verb == b"NOOP":
            conn.reply("250 2.0.0 Ok")
        elif verb == b"DATA":
            conn.reply("354 go ahead")
            conn.read_data()
            conn.reply(data_reply)
        elif verb == b"BDAT":
            parts = line.split()
            conn.read_exact(int(parts[1]))
            conn.reply(data_reply if len(parts) > 2 else "250 2.0.0 chunk ok")
        elif verb == b"QUIT":
            conn.reply("221 2.0.0 Bye")
            return
        elif verb in (b"EHLO", b"HELO"):
            conn.reply("250 scripted.test")
        else:
            conn.reply("502 5.5.2 not implemented")
