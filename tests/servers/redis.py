"""A throwaway redis-server on 127.0.0.1 (Celery's broker and result backend
in the tests): no persistence, a free port, stopped by its PID.

    with RedisServer() as redis:
        app = Celery(broker=redis.url, backend=redis.url)
"""

from __future__ import annotations

import socket
from pathlib import Path

from ._proc import ChildServer, free_port, require_binary

__all__ = ["RedisServer"]


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ChildServer):
    """``redis-server --save '' --appendonly no`` on a free loopback port.

    Attributes: ``host``, ``port``, ``url`` (``redis://127.0.0.1:PORT/0``).
    """

    name = "redis-server"

    def __init__(self, *, start_timeout: float = 20.0) -> None:
        self._binary = require_binary("redis-server", "redis-server")
        self.host = "127.0.0.1"
        self.port = 0
        super().__init__("smtpclient-redis-", start_timeout)

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _start_once(self) -> str | None:
        self.port = free_port(self.host)
        argv = [
            self._binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._launch(argv, self.directory / "stdout.log")
        if self._wait_running(lambda: _answers_ping(self.host, self.port)):
            return None
        return f"did not answer PING on {self.host}:{self.port}"
