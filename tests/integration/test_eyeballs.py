"""Happy Eyeballs (RFC 8305) on loopback: listeners, refusing addresses, black holes.

Deadlines are asserted as generous upper bounds only: the point is that a
black hole costs about one connection-attempt delay, never the 30 s
per-address timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from servers.multihome import BlackHole, Refusing, on_one_port

from smtpclient.errors import ConnectError, SMTPTimeoutError
from smtpclient.eyeballs import connect, race


class Listener:
    """A plain TCP listener (accepts in the kernel; the test may accept())."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self.sock.bind((host, port))
            self.sock.listen(8)
        except OSError:
            self.sock.close()
            raise
        self.port: int = self.sock.getsockname()[1]

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.fixture
def hole_then_listener() -> Iterator[int]:
    with on_one_port(
        lambda port: BlackHole("127.0.0.91", port), lambda port: Listener("127.0.0.92", port)
    ) as (port, (hole, _)):
        assert hole.hangs()
        yield port


def test_a_black_hole_costs_one_delay_not_a_timeout(hole_then_listener: int) -> None:
    started = time.monotonic()
    result = race(["127.0.0.91", "127.0.0.92"], hole_then_listener, per_address=30.0)
    elapsed = time.monotonic() - started
    assert result.sock is not None
    result.sock.close()
    assert result.tried == ("127.0.0.91", "127.0.0.92")
    assert [a.outcome for a in result.attempts] == ["cancelled", "connected"]
    assert result.winner == 1 and result.address == "127.0.0.92"
    assert result.attempts[1].started >= 0.2  # the second waited for the attempt delay...
    assert elapsed < 10.0  # ...and nobody waited for the 30 s connect timeout


def test_a_refusal_starts_the_next_attempt_at_once() -> None:
    with on_one_port(
        lambda port: Refusing("127.0.0.93", port), lambda port: Listener("127.0.0.94", port)
    ) as (port, _):
        result = race(["127.0.0.93", "127.0.0.94"], port, delay=5.0)
    assert result.sock is not None
    result.sock.close()
    assert [a.outcome for a in result.attempts] == ["refused", "connected"]
    assert result.attempts[1].started < 2.5  # not the 5 s delay


def test_families_mix_and_the_earliest_ready_address_wins() -> None:
    with on_one_port(
        lambda port: Listener("::1", port), lambda port: Listener("127.0.0.95", port)
    ) as (port, (_, second)):
        result = race(["::1", "127.0.0.95"], port, delay=0.0)
        assert result.sock is not None
        assert result.address == "::1"
        assert result.sock.family == socket.AF_INET6
        outcomes = [a.outcome for a in result.attempts]
        assert outcomes in (["connected"], ["connected", "cancelled"])
        # The loser's connection was closed: its server reads end-of-file.
        if any(a.outcome == "cancelled" for a in result.attempts):
            second.sock.settimeout(5)
            loser, _ = second.sock.accept()
            with loser:
                loser.settimeout(5)
                assert loser.recv(1) == b""
        result.sock.close()


def test_all_refused_is_a_connect_error() -> None:
    with on_one_port(
        lambda port: Refusing("127.0.0.96", port), lambda port: Refusing("::1", port)
    ) as (port, _):
        with pytest.raises(ConnectError) as caught:
            connect(["127.0.0.96", "::1"], port, host="mx.example.test")
    assert isinstance(caught.value, ConnectionError)
    assert "127.0.0.96" in str(caught.value) and "refused" in str(caught.value)


def test_black_holes_time_out_per_address_and_in_total() -> None:
    with on_one_port(
        lambda port: BlackHole("127.0.0.97", port), lambda port: BlackHole("127.0.0.98", port)
    ) as (port, _):
        started = time.monotonic()
        with pytest.raises(SMTPTimeoutError):
            connect(["127.0.0.97", "127.0.0.98"], port, per_address=0.5)
        # A total well past the attempt delay, so both attempts start even
        # on a loaded machine, and far below the 30 s per address.
        result = race(["127.0.0.97", "127.0.0.98"], port, per_address=30.0, total=2.0)
        elapsed = time.monotonic() - started
    assert result.sock is None
    assert [a.outcome for a in result.attempts] == ["timeout", "timeout"]
    assert elapsed < 10.0


def test_a_source_address_skips_the_other_family() -> None:
    with Listener("127.0.0.99") as listener:
        result = race(["::1", "127.0.0.99"], listener.port, source_address=("127.0.0.1", 0))
    assert result.sock is not None
    result.sock.close()
    assert result.tried == ("127.0.0.99",)
    assert result.attempts[-1].outcome == "skipped"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"delay": -1}, "delay"), ({"per_address": 0}, "per_address"), ({"total": 0}, "total")],
)
def test_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        race(["127.0.0.1"], 25, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="IP address"):
        race(["mx.example.test"], 25)
