"""The pool and Mailer against servers that hang up, say 421, and die mid-DATA.

Every message must end with exactly one outcome, and the server's record of
what it stored must agree with it: a ``SendResult`` means stored exactly
once; an error with a known outcome means not stored; an error marked
``outcome_unknown`` means stored at most once.  No message is ever stored
twice (a retry never duplicates), connections never exceed the maximum, and
nothing outlives the Mailer (the autouse ``no_leaks`` fixture checks).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from servers.metering import ConnectionMeter, message_id, metered
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo

from smtpclient import Mailer, SendResult, Session, Timeouts, TLSMode
from smtpclient.errors import (
    PermanentSenderRefused,
    ServerDisconnected,
    ServiceClosing,
    SMTPClientError,
    TransientSenderRefused,
)
from smtpclient.protocol.state import Stage
from smtpclient.retry import RetryPolicy

FAST = dataclasses.replace(Timeouts.uniform(5.0), data_done=10.0)


def message(number: int, tag: str = "m") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.test"
    msg["To"] = "rcpt@example.test"
    msg["Subject"] = f"{tag} {number}"
    msg["Message-ID"] = f"<{tag}.{number}@faults.test>"
    msg.set_content("hello\n")
    return msg


class Store:
    """What the scripted server stored, by Message-ID, and the commands it saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: Counter[str | None] = Counter()
        self.verbs: Counter[bytes] = Counter()

    def keep(self, data: bytes) -> None:
        with self.lock:
            self.ids[message_id(data)] += 1

    def saw(self, line: bytes) -> bytes:
        verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
        with self.lock:
            self.verbs[verb] += 1
        return verb


MailHook = Callable[[Conn, int], "bool | str"]


def serve(conn: Conn, store: Store, mail: MailHook | None = None) -> None:
    """A well-behaved server that stores messages.  *mail(conn, n)* decides
    the n-th MAIL of this connection: True to accept, False to hang up, or
    a refusal reply to send."""
    count, in_transaction = 0, False
    while True:
        line = conn.line()
        verb = store.saw(line)
        if verb == b"MAIL":
            count += 1
            decision = True if mail is None else mail(conn, count)
            if decision is False:
                return
            in_transaction = decision is True
            conn.reply("250 2.1.0 ok" if decision is True else str(decision))
        elif verb in (b"RSET", b"NOOP"):
            in_transaction = verb == b"NOOP" and in_transaction
            conn.reply("250 2.0.0 ok")
        elif not in_transaction and verb in (b"RCPT", b"DATA"):
            conn.reply("503 5.5.1 need MAIL first")
        elif verb == b"RCPT":
            conn.reply("250 2.1.5 ok")
        elif verb == b"DATA":
            conn.reply("354 go ahead")
            store.keep(conn.read_data())
            conn.reply("250 2.0.0 queued")
            in_transaction = False
        elif verb == b"QUIT":
            conn.reply("221 2.0.0 bye")
            return
        else:
            conn.reply("502 5.5.2 not implemented")


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[Conn], None]], ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(handler: Callable[[Conn], None]) -> ScriptedServer:
        started.append(ScriptedServer(handler).start())
        return started[-1]

    yield start
    for item in started:
        item.stop()


def mailer_for(srv: ScriptedServer, **kwargs: object) -> Mailer:
    options: dict[str, object] = {"tls": TLSMode.NONE, "timeouts": FAST, "health_check_after": None}
    options.update(kwargs)
    return Mailer("127.0.0.1", srv.port, **options)  # type: ignore[arg-type]


# --- a connection the server closed while it sat in the pool --------------------------------


@pytest.mark.parametrize("goodbye", ["hang-up", "421"])
def test_a_reused_connection_failing_at_mail_is_retried_once_on_a_fresh_one(
    server: Callable[[Callable[[Conn], None]], ScriptedServer], goodbye: str
) -> None:
    store = Store()

    def at_mail(conn: Conn, count: int) -> bool | str:
        if conn is conn.server.conns[0] and count == 2:  # the race: closed as we reuse it
            if goodbye == "421":
                conn.reply("421 4.4.2 idle too long")
            return False
        return True

    srv = server(lambda c: (greet_and_ehlo(c), serve(c, store, at_mail)))
    with mailer_for(srv) as mailer:
        first = mailer.send(message(1))
        second = mailer.send(message(2))
    assert first.accepted and second.accepted
    assert store.ids == Counter({"<m.1@faults.test>": 1, "<m.2@faults.test>": 1})
    assert srv.connections == 2


def test_a_fresh_connection_failing_at_mail_is_not_retried(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()
    srv = server(lambda c: (greet_and_ehlo(c), serve(c, store, lambda conn, n: False)))
    with mailer_for(srv) as mailer, pytest.raises(ServerDisconnected) as caught:
        mailer.send(message(1))
    assert caught.value.stage is Stage.MAIL and not caught.value.outcome_unknown
    assert srv.connections == 1


def test_a_reused_connection_failing_after_mail_was_accepted_is_not_retried(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        conn.expect(b"MAIL")
        conn.reply("250 ok")
        conn.expect(b"RCPT")
        conn.reply("250 ok")
        conn.expect(b"DATA")
        conn.reply("354 go ahead")
        store.keep(conn.read_data())
        conn.reply("250 queued")
        conn.expect(b"MAIL")
        conn.reply("250 ok")
        conn.expect(b"RCPT")  # a recipient could be accepted from here on

    srv = server(handler)
    with mailer_for(srv) as mailer:
        mailer.send(message(1))
        with pytest.raises(ServerDisconnected) as caught:
            mailer.send(message(2))
    assert caught.value.stage is Stage.RCPT
    assert srv.connections == 1
    assert store.ids == Counter({"<m.1@faults.test>": 1})


def test_a_421_sent_while_idle_surfaces_as_service_closing_not_a_protocol_error(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    said = threading.Event()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        conn.send(b"421 4.4.2 mx Error: timeout exceeded\r\n")
        said.set()
        conn.wait_closed(5)

    srv = server(handler)
    with Session.connect("127.0.0.1", srv.port, tls=TLSMode.NONE, timeouts=FAST) as session:
        assert said.wait(5)
        with pytest.raises(ServiceClosing) as caught:
            session.sendmail("a@example.test", "b@example.test", b"x\r\n")
    assert caught.value.stage is Stage.MAIL and caught.value.reply is not None
    assert caught.value.reply.code == 421


# --- the retry policy ----------------------------------------------------------------------


def refuse_first_mails(store: Store, count: int, reply: str) -> Callable[[Conn], None]:
    """A server that refuses the first *count* MAIL commands (over all connections)."""
    refused = [0]

    def at_mail(conn: Conn, _: int) -> bool | str:
        if refused[0] < count:
            refused[0] += 1
            return reply
        return True

    return lambda conn: (greet_and_ehlo(conn), serve(conn, store, at_mail))  # type: ignore[func-returns-value]


def test_transient_refusals_are_retried_only_with_a_policy(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()
    srv = server(refuse_first_mails(store, 2, "451 4.3.0 try again"))
    with mailer_for(srv) as plain, pytest.raises(TransientSenderRefused):
        plain.send(message(1))
    with mailer_for(srv, retry=RetryPolicy(attempts=2, backoff=0.01, jitter=0)) as patient:
        assert patient.send(message(2)).accepted
    assert store.verbs[b"MAIL"] == 3
    assert store.ids == Counter({"<m.2@faults.test>": 1})


def test_permanent_refusals_are_never_retried(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()
    srv = server(refuse_first_mails(store, 1, "550 5.7.1 not you"))
    with mailer_for(srv, retry=5) as mailer, pytest.raises(PermanentSenderRefused):
        mailer.send(message(1))
    assert store.verbs[b"MAIL"] == 1


def test_a_one_shot_body_is_never_sent_twice(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()
    srv = server(refuse_first_mails(store, 1, "451 4.3.0 try again"))
    body = iter([b"Subject: once\r\n\r\n", b"only once\r\n"])
    with mailer_for(srv, retry=RetryPolicy(attempts=3, backoff=0)) as mailer:
        with pytest.raises(TransientSenderRefused):
            mailer.sendmail("a@example.test", "b@example.test", body)
    assert store.verbs[b"MAIL"] == 1


def test_an_unknown_outcome_is_never_retried(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()

    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn)
        for verb, answer in ((b"MAIL", "250 ok"), (b"RCPT", "250 ok"), (b"DATA", "354 go")):
            conn.expect(verb)
            conn.reply(answer)
        store.keep(conn.read_data())  # stored ... and the 250 never sent

    srv = server(handler)
    with mailer_for(srv, retry=RetryPolicy(attempts=3, backoff=0)) as mailer:
        with pytest.raises(ServerDisconnected) as caught:
            mailer.send(message(1))
    assert caught.value.outcome_unknown
    assert store.ids == Counter({"<m.1@faults.test>": 1})
    assert srv.connections == 1


def test_send_many_carries_on_over_a_new_connection_after_a_hang_up(
    server: Callable[[Callable[[Conn], None]], ScriptedServer],
) -> None:
    store = Store()

    def at_mail(conn: Conn, count: int) -> bool | str:
        return not (conn is conn.server.conns[0] and count == 4)

    srv = server(lambda c: (greet_and_ehlo(c), serve(c, store, at_mail)))
    with mailer_for(srv) as mailer:
        outcomes = mailer.send_many([message(n) for n in range(10)])
    assert isinstance(outcomes[3], ServerDisconnected) and outcomes[3].stage is Stage.MAIL
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != 3)
    assert store.ids == Counter({f"<m.{n}@faults.test>": 1 for n in range(10) if n != 3})
    assert srv.connections == 2


# --- random faults, many threads ---------------------------------------------------------

FAULTS = (
    "421-mail",
    "421-rcpt",
    "421-data",
    "close-mid-data",
    "drop-before-reply",
    "store-then-drop",
    "421-after-data",
    "idle-drop",
    "hang-up-at-next-mail",
)


class FaultyServer:
    """Serves normally, but each transaction meets a seeded random fault."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.store = Store()
        self.lock = threading.Lock()

    def pick(self) -> str:
        with self.lock:
            return self.rng.choice(FAULTS) if self.rng.random() < self.rate else "ok"

    def __call__(self, conn: Conn) -> None:
        greet_and_ehlo(conn, ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
        fault, hang_up_next = "ok", False
        while True:
            verb = self.store.saw(conn.line())
            if verb == b"MAIL":
                fault = self.pick()
                if hang_up_next:
                    return None
                if fault == "421-mail":
                    return conn.reply("421 4.3.2 closing")
                conn.reply("250 2.1.0 ok")
            elif verb == b"RCPT":
                if fault == "421-rcpt":
                    return conn.reply("421 4.3.2 closing")
                conn.reply("250 2.1.5 ok")
            elif verb == b"DATA":
                if fault == "421-data":
                    return conn.reply("421 4.3.2 closing")
                conn.reply("354 go ahead")
                if fault == "close-mid-data":
                    conn.line()
                    return None
                data = conn.read_data()
                if fault == "drop-before-reply":
                    return None
                if fault == "421-after-data":
                    return conn.reply("421 4.3.2 not taken")
                self.store.keep(data)
                if fault == "store-then-drop":
                    return None
                conn.reply("250 2.0.0 queued")
                if fault == "idle-drop":
                    return None
                hang_up_next = fault == "hang-up-at-next-mail"
            elif verb in (b"RSET", b"NOOP"):
                conn.reply("250 2.0.0 ok")
            elif verb == b"QUIT":
                return conn.reply("221 2.0.0 bye")
            else:
                conn.reply("502 5.5.2 no")


@pytest.mark.parametrize("retry", [None, RetryPolicy(attempts=2, backoff=0, jitter=0)])
def test_every_message_is_accounted_for_under_random_faults(
    retry: RetryPolicy | None,
) -> None:
    faulty = FaultyServer(seed=20260707, rate=0.3)
    meter = ConnectionMeter()
    outcomes: dict[str, SendResult | Exception] = {}
    lock = threading.Lock()

    def worker(mailer: Mailer, index: int) -> None:
        batch = [message(n, f"t{index}") for n in range(24)]
        if index % 2:
            results = mailer.send_many(batch)
        else:
            results = []
            for item in batch:
                try:
                    results.append(mailer.send(item))
                except SMTPClientError as exc:
                    results.append(exc)
        with lock:
            outcomes.update((m["Message-ID"], r) for m, r in zip(batch, results, strict=True))

    with (
        ScriptedServer(metered(faulty, meter)) as srv,
        mailer_for(srv, max_connections=3, retry=retry) as mailer,
    ):
        threads = [threading.Thread(target=worker, args=(mailer, i)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert not srv.errors
    stored = faulty.store.ids
    assert len(outcomes) == 6 * 24
    for mid, outcome in outcomes.items():
        if isinstance(outcome, SendResult):
            assert stored[mid] == 1, mid
        else:
            assert isinstance(outcome, SMTPClientError), outcome
            assert stored[mid] <= (1 if outcome.outcome_unknown else 0), (mid, outcome)
    assert max(stored.values()) == 1  # never a duplicate
    assert set(stored) <= set(outcomes)
    assert meter.peak <= 3
    delivered = sum(isinstance(o, SendResult) for o in outcomes.values())
    assert 0 < delivered < len(outcomes)  # faults happened, and mail still flowed
