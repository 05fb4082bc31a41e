"""A DNS proxy on 127.0.0.1 that counts the queries passing through it.

    with CountingDNSProxy(knot.host, knot.port) as proxy:
        resolver = Resolver(nameservers=[proxy.host], port=proxy.port)
        ...
        proxy.queries   # [("many.test", "MX", "udp"), ("many.test", "MX", "tcp"), ...]

UDP and TCP are served on the same port (dnspython retries a truncated UDP
answer over TCP); every query is forwarded to the upstream server as it
came and the answer relayed unchanged.  One thread serves both; ``stop()``
joins it.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading

import dns.message

from ._proc import free_port

__all__ = ["CountingDNSProxy"]

_UPSTREAM_TIMEOUT = 5.0


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class CountingDNSProxy:
    """Forwards DNS queries to ``upstream`` and records each one."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def distinct(self, rdtype: str | None = None) -> list[tuple[str, str]]:
        """The (name, type) pairs asked, each once, in first-asked order."""
        seen: list[tuple[str, str]] = []
        with self._lock:
            for name, kind, _ in self.queries:
                if (rdtype is None or kind == rdtype) and (name, kind) not in seen:
                    seen.append((name, kind))
        return seen

    def _record(self, wire: bytes, transport: str) -> None:
        try:
            question = dns.message.from_wire(wire).question[0]
            entry = (
                question.name.to_text(omit_final_dot=True).lower(),
                dns.rdatatype.to_text(question.rdtype),
                transport,
            )
        except Exception:  # a malformed query is counted too
            entry = ("?", "?", transport)
        with self._lock:
            self.queries.append(entry)

    def start(self) -> CountingDNSProxy:
        for _ in range(20):
            port = free_port(self.host, udp_too=True)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind((self.host, port))
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self._udp, self._tcp, self.port = udp, tcp, port
            break
        else:
            raise RuntimeError("no free port for the DNS proxy")
        self._thread = threading.Thread(target=self._serve, name="dns-proxy", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    if key.data == "udp":
                        self._one_udp()
                    else:
                        self._one_tcp()

    def _one_udp(self) -> None:
        assert self._udp is not None
        wire, client = self._udp.recvfrom(65535)
        self._record(wire, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(_UPSTREAM_TIMEOUT)
            upstream.sendto(wire, self.upstream)
            try:
                answer = upstream.recv(65535)
            except OSError:
                return
        self._udp.sendto(answer, client)

    def _one_tcp(self) -> None:
        assert self._tcp is not None
        conn, _ = self._tcp.accept()
        with conn, socket.create_connection(self.upstream, _UPSTREAM_TIMEOUT) as upstream:
            conn.settimeout(_UPSTREAM_TIMEOUT)
            upstream.settimeout(_UPSTREAM_TIMEOUT)
            try:
                while True:
                    head = _read_exactly(conn, 2)
                    if head is None:
                        return
                    wire = _read_exactly(conn, struct.unpack("!H", head)[0])
                    if wire is None:
                        return
                    self._record(wire, "tcp")
                    upstream.sendall(head + wire)
                    size = _read_exactly(upstream, 2)
                    if size is None:
                        return
                    answer = _read_exactly(upstream, struct.unpack("!H", size)[0])
                    if answer is None:
                        return
                    conn.sendall(size + answer)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> CountingDNSProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
