"""SessionPool against real servers on loopback: reuse, limits, health checks,
retirement, draining, garbage collection and fork.

Wire-level checks (was RSET or QUIT sent? did a child write to the parent's
connection?) use scripted servers, which keep every byte each connection
received; counts of connections use the servers' own accept counters.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally
from servers.smtpd import AiosmtpdServer

from smtpclient import SessionPool, TLSMode
from smtpclient.auth import Password
from smtpclient.errors import (
    PoolClosedError,
    PoolTimeout,
    ServerDisconnected,
    TransientError,
)
from smtpclient.pool import Lease
from smtpclient.server import ServerSettings

BODY = b"Subject: pooled\r\n\r\nhello\r\n"


def settings_for(port: int, **kwargs: object) -> ServerSettings:
    return ServerSettings("127.0.0.1", port, tls=TLSMode.NONE, timeouts=5.0, **kwargs)  # type: ignore[arg-type]


def send(pool: SessionPool, settings: ServerSettings) -> None:
    with pool.session(settings) as session:
        session.sendmail("a@example.com", ["b@example.com"], BODY)


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[Conn], None]], ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(handler: Callable[[Conn], None]) -> ScriptedServer:
        server = ScriptedServer(handler).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def normal(conn: Conn) -> None:
    greet_and_ehlo(conn)
    serve_normally(conn)


def commands(conn: Conn) -> list[bytes]:
    return [line.split(b" ", 1)[0].upper() for line in bytes(conn.received).split(b"\r\n")]


# --- reuse and limits -------------------------------------------------------------------


def test_sequential_sends_reuse_one_connection(smtpd: AiosmtpdServer) -> None:
    settings = settings_for(smtpd.port)
    with SessionPool() as pool:
        for _ in range(5):
            send(pool, settings)
        stats = pool.stats()
    assert len(smtpd.messages) == 5
    assert smtpd.recorder.connections == 1
    assert (stats.opened, stats.reused) == (1, 4)


def test_checkout_times_out_with_a_clear_error_when_every_connection_is_in_use(
    smtpd: AiosmtpdServer,
) -> None:
    settings = settings_for(smtpd.port)
    with SessionPool(max_connections=2) as pool:
        first = pool.checkout(settings)
        second = pool.checkout(settings)
        start = time.monotonic()
        with pytest.raises(PoolTimeout) as caught:
            pool.checkout(settings, timeout=0.3)
        assert time.monotonic() - start < 5
        error = caught.value
        assert isinstance(error, TransientError) and isinstance(error, TimeoutError)
        assert "2 are in use" in str(error) and "max_connections" in str(error)
        first.release()
        with pool.checkout(settings, timeout=0.3) as third:
            assert third.reused and third.session is first.session
        second.release()
    assert smtpd.recorder.connections == 2


def test_a_waiting_checkout_gets_the_connection_another_thread_gives_back(
    smtpd: AiosmtpdServer,
) -> None:
    settings = settings_for(smtpd.port)
    got: list[Lease] = []
    with SessionPool(max_connections=1) as pool:
        held = pool.checkout(settings)
        waiter = threading.Thread(target=lambda: got.append(pool.checkout(settings, timeout=10)))
        waiter.start()
        time.sleep(0.2)
        assert not got  # still waiting: the only connection is taken
        held.release()
        waiter.join(10)
        assert [lease.session for lease in got] == [held.session]
        got[0].release()
    assert smtpd.recorder.connections == 1


def test_the_lock_is_not_held_while_a_connection_is_being_opened(
    smtpd: AiosmtpdServer, scripted: Callable[[Callable[[Conn], None]], ScriptedServer]
) -> None:
    """A server that takes its time to greet must not stall checkouts for
    another server: connecting happens outside the pool's lock."""
    gate = threading.Event()

    def slow_greeting(conn: Conn) -> None:
        gate.wait(20)
        normal(conn)

    slow = scripted(slow_greeting)
    fast = settings_for(smtpd.port)
    with SessionPool(max_connections=2) as pool:
        send(pool, fast)  # one idle connection to the fast server
        opener = threading.Thread(target=send, args=(pool, settings_for(slow.port)))
        opener.start()
        time.sleep(0.2)  # the opener is now inside connect(), waiting for the greeting
        done = threading.Event()
        sender = threading.Thread(target=lambda: (send(pool, fast), done.set()))
        sender.start()
        finished_while_slow_server_silent = done.wait(10)
        gate.set()
        opener.join(20)
        sender.join(20)
    assert finished_while_slow_server_silent
    assert len(smtpd.messages) == 2


def test_reuse_works_with_descriptors_above_1023(smtpd: AiosmtpdServer) -> None:
    """A busy web worker has many files open; select() cannot watch a
    descriptor >= 1024 (FD_SETSIZE), so the idle check must not use it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        settings = settings_for(smtpd.port)
        with SessionPool(health_check_after=0) as pool:
            for _ in range(3):
                with pool.session(settings) as session:
                    assert session._transport.sock is not None
                    assert session._transport.sock.fileno() >= 1024
                    session.sendmail("a@example.com", ["b@example.com"], BODY)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(smtpd.messages) == 3
    assert smtpd.recorder.connections == 1


def test_a_full_pool_of_idle_connections_to_another_server_makes_room(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    one, two = scripted(normal), scripted(normal)
    with SessionPool(max_connections=1) as pool:
        send(pool, settings_for(one.port))
        send(pool, settings_for(two.port))
        assert pool.stats().open == 1
    assert commands(one.conns[0])[-2] == b"QUIT"  # retired politely to make room
    assert two.connections == 1


def test_connections_are_keyed_by_credentials_identity() -> None:
    right = settings_for(25, credentials=Password("user", "right"), allow_insecure_auth=True)
    same = settings_for(25, credentials=Password("user", "right"), allow_insecure_auth=True)
    wrong = settings_for(25, credentials=Password("user", "wrong"), allow_insecure_auth=True)
    other = settings_for(25, credentials=Password("other", "right"), allow_insecure_auth=True)
    assert right.key == same.key
    assert len({right.key, wrong.key, other.key, settings_for(25).key}) == 4
    for key in (right.key, wrong.key):
        assert "right" not in repr(key) + str(key) + repr(key.identity)
        assert "wrong" not in repr(key) + str(key) + repr(key.identity)
    assert "right" not in repr(right)

    def provider() -> Password:
        return Password("user", "right")

    assert settings_for(25, credentials=provider).key == settings_for(25, credentials=provider).key
    assert settings_for(25, credentials=provider).key != right.key


# --- health checks and retirement ----------------------------------------------------------


def test_health_check_only_after_the_connection_was_idle_a_while(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    server = scripted(normal)
    settings = settings_for(server.port)
    # 1.5 s: the back-to-back sends stay under it even on a loaded machine;
    # the sleep (never shorter than asked) goes over it.
    with SessionPool(health_check_after=1.5) as pool:
        send(pool, settings)
        send(pool, settings)
        assert b"RSET" not in commands(server.conns[0])
        time.sleep(1.6)
        send(pool, settings)
    assert commands(server.conns[0]).count(b"RSET") == 1
    assert server.connections == 1


def test_a_failed_health_check_means_a_new_connection(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    def refuse_rset(conn: Conn) -> None:
        greet_and_ehlo(conn)
        while True:
            line = conn.line()
            if line.upper().startswith(b"RSET"):
                conn.reply("421 4.3.2 going away")
                return
            if line.upper().startswith(b"QUIT"):
                conn.reply("221 bye")
                return
            conn.reply("250 ok")

    server = scripted(refuse_rset)
    settings = settings_for(server.port)
    with SessionPool(health_check_after=0) as pool:
        pool.checkout(settings).release()
        with pool.checkout(settings) as lease:
            assert not lease.reused
    assert server.connections == 2


@pytest.mark.parametrize("goodbye", [b"", b"421 4.4.2 mx Error: timeout exceeded\r\n"])
def test_a_connection_the_server_closed_while_idle_is_replaced_silently(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer], goodbye: bytes
) -> None:
    hung_up = threading.Event()

    def idle_timeout(conn: Conn) -> None:
        greet_and_ehlo(conn)
        if len(conn.server.conns) == 1:
            conn.send(goodbye)
            conn.close()
            hung_up.set()
            return
        serve_normally(conn)

    server = scripted(idle_timeout)
    settings = settings_for(server.port)
    with SessionPool(health_check_after=None) as pool:
        pool.checkout(settings).release()
        assert hung_up.wait(10)
        time.sleep(0.1)
        with pool.checkout(settings) as lease:
            assert not lease.reused
            lease.session.sendmail("a@example.com", "b@example.com", BODY)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("limits", "pause"),
    # Limits of 1.5 s: the first two sends fit inside them even on a loaded
    # machine; the pause (never shorter than asked) goes past them.
    [({"max_messages": 2}, 0.0), ({"max_age": 1.5}, 1.6), ({"max_idle_time": 1.5}, 1.6)],
    ids=["max_messages", "max_age", "max_idle_time"],
)
def test_connections_are_retired_with_quit(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
    limits: dict[str, float],
    pause: float,
) -> None:
    server = scripted(normal)
    settings = settings_for(server.port)
    with SessionPool(**limits) as pool:  # type: ignore[arg-type]
        send(pool, settings)
        send(pool, settings)
        time.sleep(pause)
        send(pool, settings)
        first = server.conns[0]
        assert first.wait_closed(5)
    assert commands(first)[-2] == b"QUIT"
    assert server.connections == 2


def test_a_session_closed_by_its_caller_while_idle_is_never_handed_out(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    # Retirement by age and idleness is rescanned only once something may be
    # due; a session closed behind the pool's back is caught as it goes out.
    server = scripted(normal)
    settings = settings_for(server.port)
    with SessionPool() as pool:
        with pool.checkout(settings) as lease:
            kept = lease.session
        kept.close()  # misuse: the lease was already given back
        with pool.checkout(settings) as lease:
            assert not lease.reused
            assert lease.session is not kept
            lease.session.sendmail("a@example.com", "b@example.com", BODY)
        assert pool.stats().reused == 0
    assert server.connections == 2


def test_a_connection_that_failed_mid_transaction_is_never_returned(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    def close_mid_data(conn: Conn) -> None:
        greet_and_ehlo(conn)
        if len(conn.server.conns) == 1:
            conn.expect(b"MAIL")
            conn.reply("250 ok")
            conn.expect(b"RCPT")
            conn.reply("250 ok")
            conn.expect(b"DATA")
            conn.reply("354 go on")
            conn.line()
            return  # hang up in the middle of the content
        serve_normally(conn)

    server = scripted(close_mid_data)
    settings = settings_for(server.port)
    with SessionPool() as pool:
        with pytest.raises(ServerDisconnected), pool.session(settings) as session:
            session.sendmail("a@example.com", "b@example.com", BODY * 2000)
        assert pool.stats().open == 0
        with pool.checkout(settings) as lease:
            assert not lease.reused
            lease.session.sendmail("a@example.com", "b@example.com", BODY)
    assert server.connections == 2


def test_an_interrupted_lease_is_closed_without_quit(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    class Interrupted(Exception):
        pass

    server = scripted(normal)
    with SessionPool() as pool:
        with pytest.raises(Interrupted), pool.session(settings_for(server.port)):
            raise Interrupted
        assert pool.stats().open == 0
        assert server.conns[0].wait_closed(5)
    assert b"QUIT" not in commands(server.conns[0])


# --- closing, garbage collection, fork ---------------------------------------------------


def test_close_drains_idle_and_in_use_connections(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    server = scripted(normal)
    settings = settings_for(server.port)
    pool = SessionPool()
    busy = pool.checkout(settings)  # conns[0]
    in_use = pool.checkout(settings)  # conns[1]
    busy.release()  # idle when close() is called
    release_later = threading.Timer(0.3, in_use.release)
    release_later.start()
    pool.close(timeout=10)
    release_later.join()
    assert pool.stats().open == 0
    with pytest.raises(PoolClosedError):
        pool.checkout(settings)
    for conn in server.conns:
        assert conn.wait_closed(5)
        assert commands(conn)[-2] == b"QUIT"


def test_garbage_collection_closes_sockets_without_network_io(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    server = scripted(normal)
    pool = SessionPool()
    send(pool, settings_for(server.port))
    del pool
    gc.collect()
    conn = server.conns[0]
    assert conn.wait_closed(5)
    assert b"QUIT" not in commands(conn)


def _wait_child(pid: int, limit: float = 30.0) -> int:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the child process did not finish")


def _in_child(work: Callable[[], bool]) -> None:
    """Run *work* in the forked child and leave without any cleanup."""
    try:
        code = 0 if work() else 1
    except BaseException:
        code = 2
    os._exit(code)


def test_a_forked_child_never_writes_to_the_parents_connection(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    server = scripted(normal)
    settings = settings_for(server.port)
    with SessionPool() as pool:
        send(pool, settings)  # the parent's connection is idle in the pool
        parent_bytes = bytes(server.conns[0].received)

        def child() -> bool:
            with pool.checkout(settings) as lease:
                fresh = not lease.reused
                lease.session.sendmail("child@example.com", "b@example.com", BODY)
            pool.close()
            return fresh

        pid = os.fork()
        if pid == 0:
            _in_child(child)
        assert _wait_child(pid) == 0
        assert server.connections == 2  # the child opened its own
        time.sleep(0.1)
        assert bytes(server.conns[0].received) == parent_bytes  # not one byte from the child
        with pool.checkout(settings) as lease:  # the parent's connection still works
            assert lease.reused
            lease.session.sendmail("a@example.com", "b@example.com", BODY)
        assert pool.stats().opened == 1
    assert b"child@example.com" in bytes(server.conns[1].received)


def test_a_child_forked_while_the_pool_lock_was_held_does_not_deadlock(
    scripted: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    server = scripted(normal)
    settings = settings_for(server.port)
    with SessionPool() as pool:
        send(pool, settings)

        def child() -> bool:
            send(pool, settings)
            return True

        with pool._cond:  # as if another thread were inside the pool at fork time
            pid = os.fork()
            if pid == 0:
                _in_child(child)
        assert _wait_child(pid) == 0
        assert server.connections == 2
