"""A local HTTPS server that serves MTA-STS policies (RFC 8461 §3.3) on 127.0.0.x.

    with PolicyServer(ca, {"a.test": "version: STSv1\\r\\n..."}) as server:
        deliver(..., mta_sts_port=server.port, mta_sts_ssl_context=ca_context)

The certificate (from the given trustme CA) names ``mta-sts.<domain>`` for
every domain served; the policy is chosen by the Host header.  A policy may
be a ``Reply`` to serve an odd status, content type or body.  Every request
is recorded (``requests``: the Host header of each).  One thread, no thread
per request; ``stop()`` joins it.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import trustme

__all__ = ["PolicyServer", "Reply", "policy_text"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content_type: str = "text/plain"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {p}" for p in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


class PolicyServer:
    """HTTPS on ``host``:``port`` (ephemeral) answering GET /.well-known/mta-sts.txt."""

    def __init__(
        self, ca: trustme.CA, policies: Mapping[str, str | Reply], *, host: str = "127.0.0.80"
    ) -> None:
        self.host = host
        self.policies = dict(policies)
        self.requests: list[str] = []
        leaf = ca.issue_cert(*(f"mta-sts.{domain}" for domain in self.policies))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(self._context)
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                owner.requests.append(host)
                domain = host.removeprefix("mta-sts.")
                found = owner.policies.get(domain)
                if self.path != "/.well-known/mta-sts.txt" or found is None:
                    answer = Reply(404, body=b"not here")
                elif isinstance(found, str):
                    answer = Reply(body=found.encode())
                else:
                    answer = found
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

        return Handler

    def start(self) -> PolicyServer:
        server = HTTPServer((self.host, self.port), self._handler())
        server.socket = self._context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
