"""A threaded SMTP server on 127.0.0.1 that misbehaves from a seeded
random generator, and keeps a ledger of what it really accepted.

Faults (each drawn per decision point with probability ``rate``, from a
generator seeded by (seed, connection number)): drop the connection,
answer 421 or another 4xx/5xx, stall past the client's deadline, close in
the middle of the message content, and close right after the final dot
without answering.  A connection idle for ``idle_timeout`` gets a 421, as
Postfix does.  Rarely, the reply to the dot comes only after the client's
data_done deadline.

The ledger counts, per message number (from its ``Message-ID``), how often
the server *sent* 250 for its content (``accepted``), how often it got the
whole content and never answered (``unanswered``), and how often it
refused the content after the dot (``rejected``).  It uses fixed-size
arrays so that its memory does not grow with the run.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["FaultServer", "Ledger"]

_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:\s*<soak-(\d+)@")
_LINE_LIMIT = 4096


class Ledger:
    """Server-side truth about each message, indexed by message number."""

    def __init__(self, messages: int) -> None:
        self.accepted = bytearray(messages)
        self.unanswered = bytearray(messages)
        self.rejected = bytearray(messages)
        self.unidentified = 0  # content without a soak Message-ID (a bug)
        self._lock = threading.Lock()

    def record(self, column: bytearray, number: int | None) -> None:
        with self._lock:
            if number is None or not 0 <= number < len(column):
                self.unidentified += 1
            else:
                column[number] = min(column[number] + 1, 255)


class _Gone(Exception):
    """The client closed, or the server is stopping."""


class _Conn:
    def __init__(self, sock: socket.socket, server: FaultServer, rng: random.Random) -> None:
        self.sock = sock
        self.server = server
        self.rng = rng
        self.buffer = bytearray()
        # Replies go out as soon as they are written (no Nagle delay).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sender = False  # MAIL accepted in this transaction
        self.recipients = 0  # RCPTs accepted in this transaction
        sock.settimeout(0.2)

    def fault(self, name: str, weight: float = 1.0) -> bool:
        """Draw whether fault *name* happens here; count it if so."""
        if self.rng.random() < self.server.rate * weight:
            self.server.count(name)
            return True
        return False

    def _fill(self, idle: float) -> bool:
        """Read more; False when the client was idle for *idle* seconds."""
        end = time.monotonic() + idle
        while not self.server.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if time.monotonic() >= end:
                    return False
                continue
            except OSError as exc:
                raise _Gone from exc
            if not data:
                raise _Gone
            self.buffer += data
            return True
        raise _Gone

    def line(self) -> bytes | None:
        """The next command line; None after the idle timeout."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > _LINE_LIMIT:
                raise _Gone
            if not self._fill(self.server.idle_timeout):
                return None
        index = self.buffer.index(b"\n")
        line = bytes(self.buffer[:index]).rstrip(b"\r")
        del self.buffer[: index + 1]
        return line

    def content(self, cut: int | None = None) -> bytes | None:
        """DATA content up to the end marker; with *cut*, give up (and return
        None) once that many bytes have arrived without it."""
        while True:
            if self.buffer.startswith(b".\r\n"):
                end, skip = 0, 3
            else:
                end, skip = self.buffer.find(b"\r\n.\r\n"), 5
            if end >= 0:
                data = bytes(self.buffer[: end + skip])
                del self.buffer[: end + skip]
                return data
            if cut is not None and len(self.buffer) >= cut:
                return None
            if not self._fill(30.0):
                raise _Gone

    def send(self, text: str) -> None:
        try:
            self.sock.sendall(text.encode("ascii") + b"\r\n")
        except OSError as exc:
            raise _Gone from exc

    def stall(self, seconds: float) -> None:
        """Say nothing for *seconds* (still reading, so the client never blocks)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.server.stopping.wait(0.05):
                raise _Gone
            with contextlib.suppress(TimeoutError, OSError):
                self.sock.settimeout(0.05)
                data = self.sock.recv(65536)
                if not data:
                    raise _Gone
                self.buffer += data
        self.sock.settimeout(0.2)


class FaultServer:
    """Listen on 127.0.0.1:0 and serve every connection in its own thread."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        seed: int,
        rate: float = 0.02,
        stall: float = 1.5,
        late_dot: float = 11.0,
        idle_timeout: float = 2.0,
    ) -> None:
        self.ledger = ledger
        self.seed = seed
        self.rate = rate
        self.stall_seconds = stall  # past the client's per-stage deadline
        self.late_dot = late_dot  # past the client's data_done floor
        self.idle_timeout = idle_timeout
        self.stopping = threading.Event()
        self.faults: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="soak-accept", daemon=True)

    def count(self, name: str) -> None:
        with self._lock:
            self.faults[name] += 1

    def start(self) -> FaultServer:
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                worker = threading.Thread(
                    target=self._serve, args=(sock, number), name="soak-conn", daemon=True
                )
                self._threads.add(worker)
            worker.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        conn = _Conn(sock, self, random.Random(f"{self.seed}:{number}"))  # noqa: S311 (not crypto)
        try:
            self._conversation(conn)
        except _Gone:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _conversation(self, conn: _Conn) -> None:
        if conn.fault("drop@greeting"):
            return
        if conn.fault("421@greeting"):
            conn.send("421 4.3.2 too busy, try later")
            return
        if conn.fault("stall@greeting", 0.5):
            conn.stall(self.stall_seconds)
            return
        conn.send("220 soak.test ESMTP")
        handlers: dict[bytes, Callable[[_Conn, bytes], bool]] = {
            b"EHLO": self._ehlo,
            b"HELO": self._ehlo,
            b"MAIL": self._mail,
            b"RCPT": self._rcpt,
            b"DATA": self._data,
        }
        while True:
            line = conn.line()
            if line is None:
                conn.send("421 4.4.2 soak.test idle timeout, closing")
                return
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
            if verb == b"QUIT":
                conn.send("221 2.0.0 bye")
                return
            if verb in (b"RSET", b"NOOP"):
                if verb == b"RSET":
                    conn.sender, conn.recipients = False, 0
                conn.send("250 2.0.0 ok")
                continue
            handler = handlers.get(verb)
            if handler is None:
                conn.send("502 5.5.2 not implemented")
            elif not handler(conn, line):
                return

    # Each handler answers one command; False ends the connection.

    def _ehlo(self, conn: _Conn, line: bytes) -> bool:
        if conn.fault("drop@ehlo", 0.5):
            return False
        conn.send(
            "250-soak.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10000000\r\n"
            "250 ENHANCEDSTATUSCODES"
        )
        return True

    def _common(self, conn: _Conn, stage: str) -> bool | None:
        """Stage-independent faults: None when none happened."""
        if conn.fault(f"drop@{stage}"):
            return False
        if conn.fault(f"421@{stage}"):
            conn.send("421 4.3.2 shutting down")
            return False
        if conn.fault(f"stall@{stage}", 0.3):
            conn.stall(self.stall_seconds)
            return False
        return None

    def _mail(self, conn: _Conn, line: bytes) -> bool:
        common = self._common(conn, "mail")
        if common is not None:
            return common
        if conn.fault("451@mail"):
            conn.send("451 4.7.1 greylisted, try again")
        elif conn.fault("550@mail", 0.5):
            conn.send("550 5.7.1 sender refused")
        else:
            conn.sender, conn.recipients = True, 0
            conn.send("250 2.1.0 ok")
        return True

    def _rcpt(self, conn: _Conn, line: bytes) -> bool:
        common = self._common(conn, "rcpt")
        if common is not None:
            return common
        if not conn.sender:
            conn.send("503 5.5.1 need MAIL first")
        elif conn.fault("450@rcpt"):
            conn.send("450 4.2.1 mailbox busy")
        elif conn.fault("550@rcpt"):
            conn.send("550 5.1.1 no such user")
        else:
            conn.recipients += 1
            conn.send("250 2.1.5 ok")
        return True

    def _data(self, conn: _Conn, line: bytes) -> bool:
        common = self._common(conn, "data")
        if common is not None:
            return common
        if not conn.recipients:
            # RFC 2920 §3.1: DATA after no accepted recipient is refused.
            conn.send("554 5.5.1 no valid recipients")
            return True
        if conn.fault("451@data", 0.5):
            conn.send("451 4.3.0 try later")
            return True
        conn.sender, conn.recipients = False, 0  # whatever happens next, this transaction ends
        conn.send("354 go ahead")
        cut = conn.rng.randrange(1, 400) if conn.fault("close@mid-data") else None
        content = conn.content(cut)
        if content is None:
            return False  # closed in the middle of the content
        found = _MESSAGE_ID.search(content)
        number = int(found.group(1)) if found else None
        if conn.fault("close@after-dot"):
            self.ledger.record(self.ledger.unanswered, number)
            return False
        if conn.fault("late@after-dot", 0.05):
            # Queue it, but answer only after the client gave up (without
            # reading, so its close is not noticed): the one case where a
            # message the client calls "outcome unknown" was delivered.
            if self.stopping.wait(self.late_dot):
                raise _Gone
            self.ledger.record(self.ledger.accepted, number)
            with contextlib.suppress(_Gone):
                conn.send("250 2.0.0 queued (late)")
            return False
        for code, text in (("421", "4.3.2 shutting down"), ("451", "4.3.0 queue full")):
            if conn.fault(f"{code}@after-dot"):
                conn.send(f"{code} {text}")
                self.ledger.record(self.ledger.rejected, number)
                return code != "421"
        if conn.fault("554@after-dot", 0.5):
            conn.send("554 5.7.1 content rejected")
            self.ledger.record(self.ledger.rejected, number)
            return True
        conn.send("250 2.0.0 queued")
        self.ledger.record(self.ledger.accepted, number)
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, end every connection, join every thread."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._acceptor.join(timeout)
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive or time.monotonic() > end:
                break
            alive[0].join(0.1)
