"""Mailer: many threads, one pool, real servers (aiosmtpd in-process, Postfix).

Evidence comes from the servers: the Message-IDs they stored (each exactly
once), how many connections they accepted (reuse), and how many were open
at once (never above ``max_connections``).
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from servers.certs import TestCertificates
from servers.metering import MeteredAiosmtpd, message_id
from servers.postfix import PostfixServer
from servers.smtpd import AiosmtpdServer

from smtpclient import Mailer, SendResult, SessionPool, TLSMode
from smtpclient.auth import Password
from smtpclient.errors import (
    AuthenticationFailed,
    PermanentRecipientsRefused,
    PoolClosedError,
    PoolTimeout,
)

Outcome = SendResult | Exception


def make_message(tag: str, number: int, to: str = "b@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = to
    message["Subject"] = f"{tag} {number}"
    message["Message-ID"] = f"<{tag}.{number}@pool.test>"
    message.set_content(f"message {number} of {tag}\n")
    return message


def from_threads(
    mailer: Mailer, threads: int, per_thread: int, tag: str, to: str = "b@example.test"
) -> dict[str, Outcome]:
    """Every thread sends *per_thread* messages; return each message's outcome."""
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        start.wait(10)
        for number in range(per_thread):
            message = make_message(f"{tag}-{index}", number, to)
            try:
                outcome: Outcome = mailer.send(message)
            except Exception as exc:
                outcome = exc
            with lock:
                outcomes[message["Message-ID"]] = outcome

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert not any(thread.is_alive() for thread in workers)
    return outcomes


@pytest.fixture
def metered() -> Iterator[MeteredAiosmtpd]:
    with MeteredAiosmtpd() as server:
        yield server


# --- aiosmtpd ----------------------------------------------------------------------------


def test_threads_times_messages_arrive_exactly_once_over_few_connections(
    metered: MeteredAiosmtpd,
) -> None:
    with Mailer("127.0.0.1", metered.port, tls=TLSMode.NONE, max_connections=3) as mailer:
        outcomes = from_threads(mailer, threads=8, per_thread=25, tag="aio")
        stats = mailer.pool.stats()
    assert len(outcomes) == 200
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert metered.message_ids() == Counter(dict.fromkeys(outcomes, 1))
    assert metered.meter.peak <= 3  # never more open at once, seen by the server
    assert metered.meter.total <= 3  # and reused, not reopened
    assert stats.peak <= 3 and stats.reused >= 197


def test_send_many_gives_one_outcome_per_message_in_order(metered: MeteredAiosmtpd) -> None:
    metered.recorder.refuse["nobody@example.test"] = "550 5.1.1 no such user"
    messages = [make_message("many", n) for n in range(25)]
    messages[7].replace_header("To", "nobody@example.test")
    with Mailer(
        "127.0.0.1", metered.port, tls=TLSMode.NONE, max_connections=2, max_messages=10
    ) as mailer:
        outcomes = mailer.send_many(messages)
    assert len(outcomes) == 25
    assert isinstance(outcomes[7], PermanentRecipientsRefused)
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != 7)
    expected = [m["Message-ID"] for i, m in enumerate(messages) if i != 7]
    assert [message_id(m.content) for m in metered.messages] == expected
    assert metered.meter.total == 3  # 24 delivered, at most 10 per connection


def test_raw_messages_and_tuples(metered: MeteredAiosmtpd) -> None:
    body = b"Message-ID: <raw@pool.test>\r\nSubject: raw\r\n\r\nhello\r\n"
    with Mailer("127.0.0.1", metered.port, tls=TLSMode.NONE) as mailer:
        result = mailer.sendmail("a@example.test", ["b@example.test"], body)
        many = mailer.send_many([("a@example.test", "c@example.test", body)] * 3)
    assert result.accepted and all(isinstance(o, SendResult) for o in many)
    assert [m.rcpt_tos for m in metered.messages] == [["b@example.test"]] + [["c@example.test"]] * 3
    assert metered.meter.total == 1


def test_each_connection_authenticates_once_with_a_credentials_provider() -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    calls: list[int] = []
    lock = threading.Lock()

    def provider() -> Password:
        with lock:
            calls.append(1)
        return Password("user", "secret")

    with (
        MeteredAiosmtpd(tls_context=context, users={"user": "secret"}) as server,
        Mailer(
            "127.0.0.1",
            server.port,
            tls=TLSMode.STARTTLS,
            ssl_context=client,
            credentials=provider,
            max_connections=2,
        ) as mailer,
    ):
        outcomes = from_threads(mailer, threads=4, per_thread=10, tag="auth")
    assert all(isinstance(o, SendResult) and o.tls and o.tls.verified for o in outcomes.values())
    assert len(server.messages) == 40
    assert len(calls) == server.meter.total <= 2  # AUTH once per connection


def test_a_wrong_password_never_borrows_an_authenticated_connection() -> None:
    with AiosmtpdServer(users={"user": "right"}, require_tls_for_auth=False) as server:
        pool = SessionPool(max_connections=4)
        common = {"tls": TLSMode.NONE, "allow_insecure_auth": True, "pool": pool}
        right = Mailer("127.0.0.1", server.port, username="user", password="right", **common)  # type: ignore[arg-type]
        wrong = Mailer("127.0.0.1", server.port, username="user", password="wrong", **common)  # type: ignore[arg-type]
        right.send(make_message("right", 1))
        with pytest.raises(AuthenticationFailed):
            wrong.send(make_message("wrong", 1))
        right.send(make_message("right", 2))
        pool.close()
    assert server.recorder.connections == 2
    assert len(server.messages) == 2


def test_checkout_waits_are_bounded_by_default(smtpd: AiosmtpdServer) -> None:
    with Mailer(
        "127.0.0.1", smtpd.port, tls=TLSMode.NONE, max_connections=1, checkout_timeout=0.3
    ) as mailer:
        with mailer.pool.checkout(mailer.settings):
            start = time.monotonic()
            with pytest.raises(PoolTimeout):
                mailer.send(make_message("wait", 1))
            assert time.monotonic() - start < 5
        mailer.send(make_message("wait", 2))
    assert len(smtpd.messages) == 1


def test_a_closed_mailer_refuses_to_send(smtpd: AiosmtpdServer) -> None:
    mailer = Mailer("127.0.0.1", smtpd.port, tls=TLSMode.NONE)
    mailer.send(make_message("closed", 1))
    mailer.close()
    with pytest.raises(PoolClosedError):
        mailer.send(make_message("closed", 2))
    with pytest.raises(PoolClosedError):
        mailer.send_many([make_message("closed", 3)])
    assert "secret" not in repr(Mailer("h", username="u", password="secret"))


# --- Postfix -----------------------------------------------------------------------------


def _established_to(port: int) -> int:
    """Postfix's ESTABLISHED sockets on *port* (server side), from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


class Sampler:
    """Samples Postfix's open connections every few milliseconds."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="sampler")

    def run(self) -> None:
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, _established_to(self.port))

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _mail_sessions(server: PostfixServer, since: int) -> int:
    """SMTP sessions that carried mail, logged after offset *since*, counted
    once Postfix has logged every session's end (the fixture's readiness
    probes, which send nothing, do not count)."""
    end = time.monotonic() + 10
    while True:
        log = server.maillog()[since:]
        connects = len(re.findall(r"smtpd\[\d+\]: connect from", log))
        ended = re.findall(r"smtpd\[\d+\]: disconnect from .*", log)
        if connects == len(ended) or time.monotonic() > end:
            return sum(" mail=" in line for line in ended)
        time.sleep(0.05)


def _stored_ids(server: PostfixServer, count: int) -> Counter[str | None]:
    return Counter(message_id(m.replace(b"\n", b"\r\n")) for m in server.maildir_messages(count))


@pytest.mark.postfix
def test_threads_times_messages_through_one_mailer_to_postfix(postfix: PostfixServer) -> None:
    postfix.clear_maildir()
    before = len(postfix.maillog())
    with (
        Sampler(postfix.port) as sampler,
        Mailer(
            postfix.host, postfix.port, tls=TLSMode.NONE, max_connections=3, max_messages=None
        ) as mailer,
    ):
        outcomes = from_threads(mailer, threads=6, per_thread=20, tag="postfix")
    assert all(isinstance(o, SendResult) for o in outcomes.values()), outcomes
    assert _stored_ids(postfix, 120) == Counter(dict.fromkeys(outcomes, 1))
    assert _mail_sessions(postfix, before) <= 3
    assert 1 <= sampler.peak <= 3


@pytest.mark.postfix
@pytest.mark.dovecot
def test_mailer_with_starttls_and_auth_to_postfix(
    postfix_tls_sasl: PostfixServer, server_certs: TestCertificates
) -> None:
    server = postfix_tls_sasl
    server.clear_maildir()
    before = len(server.maillog())
    context = server_certs.client_context()
    with Mailer(
        server.host,
        server.port,
        tls=TLSMode.STARTTLS,
        ssl_context=context,
        username="alice@example.test",
        password="secret",
        max_connections=2,
    ) as mailer:
        outcomes = from_threads(mailer, threads=4, per_thread=10, tag="sasl")
    assert all(isinstance(o, SendResult) and o.tls for o in outcomes.values()), outcomes
    assert _stored_ids(server, 40) == Counter(dict.fromkeys(outcomes, 1))
    assert _mail_sessions(server, before) <= 2
