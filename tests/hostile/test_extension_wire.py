"""ESMTP extensions checked on the wire: a scripted server records every byte
(and how the client grouped its writes), so pipelined groups, BDAT chunks,
what is sent before and instead of MAIL, and REQUIRETLS over verified TLS
are asserted as bytes, not only as outcomes."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from servers.certs import TestCertificates, make_test_certificates
from servers.scripted import Conn, ScriptedServer

from hostile.faultkit import client_writes
from smtpclient import DSN, Recipient, Session, Timeouts, TLSMode
from smtpclient.content import BDAT_WINDOW
from smtpclient.errors import (
    DataRefused,
    ExtensionNotSupported,
    MessageTooLarge,
    PermanentDataRefused,
    PermanentRecipientsRefused,
    SMTPClientError,
    TLSRequiredError,
)
from smtpclient.transaction import PIPELINE_WINDOW

TIMEOUTS = dataclasses.replace(Timeouts.uniform(5.0), total=None)
POSTFIX_LIKE = ("PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "CHUNKING")
# Leading dots, a lone dot line, bare LF, bare CR, an early end marker.
TRICKY = b".leading dot\r\n.\r\nbare LF\nbare CR\rend\r\n..two dots\n.\n"
TRICKY_CANONICAL = b".leading dot\r\n.\r\nbare LF\r\nbare CR\r\nend\r\n..two dots\r\n.\r\n"


@dataclass
class Tx:
    """One transaction as the server saw it."""

    mail: bytes
    rcpts: list[bytes] = field(default_factory=list)
    accepted: int = 0
    data: bytes | None = None  # DATA content as sent (stuffed, with the end marker)
    chunks: list[tuple[bytes, bytes]] = field(default_factory=list)  # (BDAT line, octets)
    failed: bool = False

    @property
    def bdat_content(self) -> bytes:
        return b"".join(octets for _, octets in self.chunks)


Reply = str | list[str]


class Script:
    """A configurable, well-behaved ESMTP (or LMTP) server that records.

    ``rcpt(index, line)``, ``chunk(tx, index, last)`` and ``final(tx)``
    return the replies to send; ``final`` returns one reply per accepted
    recipient under LMTP.
    """

    def __init__(
        self,
        extensions: tuple[str, ...] = POSTFIX_LIKE,
        *,
        rcpt: Callable[[int, bytes], Reply] | None = None,
        chunk: Callable[[Tx, int, bool], str | None] | None = None,
        final: Callable[[Tx], Reply] | None = None,
        tls: ssl.SSLContext | None = None,
        after_tls: tuple[str, ...] = (),
        lmtp: bool = False,
    ) -> None:
        self.extensions = extensions
        self.rcpt = rcpt or (lambda index, line: "250 2.1.5 Ok")
        self.chunk = chunk
        self.final = final or (lambda tx: f"250 2.0.0 Ok: queued as Q{len(self.txs)}")
        self.tls = tls
        self.after_tls = after_tls
        self.lmtp = lmtp
        self.txs: list[Tx] = []
        self.commands: list[bytes] = []

    def _send(self, conn: Conn, reply: Reply) -> None:
        conn.reply(*(reply if isinstance(reply, list) else [reply]))

    def _finals(self, conn: Conn, tx: Tx) -> None:
        replies = self.final(tx)
        if self.lmtp and isinstance(replies, list):
            for reply in replies:  # one reply per accepted recipient
                conn.reply(reply)
        else:
            self._send(conn, replies)

    def __call__(self, conn: Conn) -> None:
        conn.reply("220 scripted.test ESMTP")
        tx: Tx | None = None
        secure = False
        while True:
            line = conn.line()
            self.commands.append(line)
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"LHLO"):
                offered = list(self.extensions)
                if self.tls is not None and not secure:
                    offered.append("STARTTLS")
                if secure:
                    offered += self.after_tls
                conn.reply("250 scripted.test", *(f"250 {keyword}" for keyword in offered))
            elif verb == b"STARTTLS" and self.tls is not None:
                conn.reply("220 2.0.0 go ahead")
                conn.starttls(self.tls)
                secure = True
            elif verb == b"MAIL":
                tx = Tx(line)
                self.txs.append(tx)
                conn.reply("250 2.1.0 Ok")
            elif verb == b"RCPT" and tx is not None:
                reply = self.rcpt(len(tx.rcpts), line)
                tx.rcpts.append(line)
                first = reply if isinstance(reply, str) else reply[-1]
                tx.accepted += first.startswith("2")
                self._send(conn, reply)
            elif verb == b"DATA" and tx is not None:
                if not tx.accepted:
                    conn.reply("554 5.5.1 Error: no valid recipients")
                    continue
                conn.reply("354 End data with <CR><LF>.<CR><LF>")
                tx.data = conn.read_data()
                self._finals(conn, tx)
                tx = None
            elif verb == b"BDAT" and tx is not None:
                parts = line.split()
                last = len(parts) > 2 and parts[2].upper() == b"LAST"
                tx.chunks.append((line, conn.read_exact(int(parts[1]))))
                answer = self.chunk(tx, len(tx.chunks) - 1, last) if self.chunk else None
                if tx.failed:
                    conn.reply("554 5.5.0 Error: the transaction has failed")
                elif answer is not None:
                    tx.failed = not answer.startswith("2")
                    conn.reply(answer)
                elif last:
                    self._finals(conn, tx)
                else:
                    conn.reply(f"250 2.0.0 {len(tx.chunks[-1][1])} octets received")
            elif verb == b"RSET":
                tx = None
                conn.reply("250 2.0.0 Ok")
            elif verb == b"NOOP":
                conn.reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                conn.reply("221 2.0.0 Bye")
                return
            else:
                conn.reply("502 5.5.2 Error: command not recognized")


@contextlib.contextmanager
def serving(script: Script, **kwargs: object) -> Iterator[ScriptedServer]:
    with ScriptedServer(script, **kwargs) as server:  # type: ignore[arg-type]
        yield server
    assert not server.errors, server.errors


def connect(server: ScriptedServer, **kwargs: object) -> Session:
    kwargs.setdefault("tls", TLSMode.NONE)
    return Session.connect(
        "127.0.0.1",
        server.port,
        timeouts=TIMEOUTS,
        **kwargs,  # type: ignore[arg-type]
    )


def wire(server: ScriptedServer) -> bytes:
    return bytes(server.conns[0].received)


def write_with(writes: list[bytes], needle: bytes) -> bytes:
    """The one client write that holds *needle* (how the client grouped it)."""
    found = [w for w in writes if needle in w]
    assert found, f"{needle!r} never written"
    return found[0]


# --- PIPELINING (RFC 2920) ------------------------------------------------------------------


def test_mail_rcpts_and_data_go_out_as_one_group_and_replies_match_their_commands() -> None:
    refused = {1: "550 5.1.1 <r1@x.test>: Recipient address rejected", 3: "450 4.2.1 Mailbox busy"}
    script = Script(
        ("PIPELINING", "ENHANCEDSTATUSCODES"), rcpt=lambda i, _: refused.get(i, "250 2.1.5 Ok")
    )
    recipients = [f"r{i}@x.test" for i in range(5)]
    with serving(script) as server, client_writes() as writes, connect(server) as session:
        result = session.sendmail("a@x.test", recipients, TRICKY)
        group = write_with(writes, b"MAIL FROM")
    assert group == (
        b"MAIL FROM:<a@x.test>\r\n"
        + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients)
        + b"DATA\r\n"
    )
    assert list(result.accepted) == ["r0@x.test", "r2@x.test", "r4@x.test"]
    assert {r: reply.enhanced for r, reply in result.refused.items()} == {
        "r1@x.test": "5.1.1",
        "r3@x.test": "4.2.1",
    }
    assert all(reply.enhanced == "2.1.5" for reply in result.accepted.values())
    assert result.data_reply is not None and result.data_reply.enhanced == "2.0.0"
    assert result.queue_id == "Q1"
    # Dot-stuffed, CRLF-canonical, one end marker.
    assert (
        script.txs[0].data
        == TRICKY_CANONICAL.replace(b"\r\n.", b"\r\n..").replace(b".leading", b"..leading", 1)
        + b".\r\n"
    )


def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    script = Script(("PIPELINING", "8BITMIME"))
    with (
        serving(script) as server,
        client_writes() as writes,
        connect(server, use_pipelining=False) as session,
    ):
        session.sendmail("a@x.test", ["b@x.test", "c@x.test"], b"hi\r\n")
    for command in (b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@x.test>\r\n", b"DATA\r\n"):
        assert command in writes  # a write of its own


# ~4 KB: replies to a few dozen commands fill the client's receive buffer.
LONG_REPLY = [f"250-2.1.5 {'padding ' * 60}" for _ in range(7)] + ["250 2.1.5 Ok"]


@pytest.mark.parametrize("max_recipients", [100, 1000])
def test_a_group_is_bounded_so_a_small_receive_buffer_cannot_deadlock(max_recipients: int) -> None:
    # The server's receive window is 4 KiB and every RCPT reply ~4 KB.  An
    # unbounded group of 1000 RCPTs (~85 KB) would leave the server blocked
    # writing replies that nobody reads while the client is blocked writing
    # commands that nobody reads.  (Checked: with PIPELINE_WINDOW raised to
    # 100000 the max_recipients=1000 case fails -- the scripted server gives
    # up after 0.2 s blocked in a write -- where a real server would hang.)
    script = Script(("PIPELINING", "8BITMIME"), rcpt=lambda i, _: LONG_REPLY)
    # Long (VERP-like) addresses: ~85 KB of RCPT commands in all, ~8 KB a window.
    recipients = [f"bounce-{'x' * 60}-{i:04d}@x.test" for i in range(1000)]
    start = time.monotonic()
    with serving(script, rcvbuf=4096) as server, client_writes() as writes:
        # Small buffers on our side too, so the kernel cannot absorb an
        # unbounded group (they would grow to megabytes on their own).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        with connect(server, max_recipients=max_recipients, sock=sock) as session:
            result = session.sendmail("a@x.test", recipients, b"hi\r\n")
            buffer = server.conns[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert buffer <= 16384  # Linux doubles the 4096 asked for
    assert len(result.accepted) == 1000
    # 100 recipients per transaction by default (RFC 5321 §4.5.3.1.8), or all in one.
    assert [len(tx.rcpts) for tx in script.txs] == [max_recipients] * (1000 // max_recipients)
    # No write carried more commands than one window.
    assert max(w.count(b"\r\n") for w in writes) <= PIPELINE_WINDOW
    assert sum(w.count(b"RCPT TO:") for w in writes) == 1000
    assert time.monotonic() - start < 60


def test_max_recipients_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_recipients"):
        Session.connect("127.0.0.1", 1, max_recipients=0)


# --- send_many: the end of one message rides with the next envelope -------------------------


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_send_many_sends_each_end_with_the_next_envelope(chunking: bool) -> None:
    extensions = POSTFIX_LIKE if chunking else ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")

    def rcpt(index: int, line: bytes) -> str:
        return "550 5.1.1 no such user" if b"nobody" in line else "250 2.1.5 Ok"

    script = Script(extensions, rcpt=rcpt)
    items = [
        ("a@x.test", ["one@x.test"], b"first\r\n"),
        ("a@x.test", ["nobody@x.test"], b"second\r\n"),
        ("a@x.test", ["three@x.test", "nobody@x.test"], b"third\r\n"),
        ("a@x.test", ["four@x.test"], TRICKY),
    ]
    with serving(script) as server, client_writes() as writes, connect(server) as session:
        outcomes = session.send_many(items)
        end = b"BDAT 7 LAST\r\nfirst\r\n" if chunking else b"first\r\n.\r\n"
        shared = write_with(writes, end)
    assert shared.startswith(end) or end in shared
    assert shared.endswith(b"RCPT TO:<nobody@x.test>\r\n" + (b"" if chunking else b"DATA\r\n"))
    first, second, third, fourth = outcomes
    assert not isinstance(first, Exception) and first.queue_id is not None
    assert isinstance(second, PermanentRecipientsRefused)
    assert second.result is not None and second.result.refused["nobody@x.test"].code == 550
    assert not isinstance(third, Exception)
    assert list(third.accepted) == ["three@x.test"] and list(third.refused) == ["nobody@x.test"]
    assert not isinstance(fourth, Exception)
    # Each message got its own final reply (queue ids in order).
    assert [o.queue_id for o in (first, third, fourth)] == ["Q1", "Q3", "Q4"]
    contents = [tx.bdat_content if chunking else tx.data for tx in script.txs if tx.accepted]
    assert contents[-1] == (
        TRICKY_CANONICAL
        if chunking
        else TRICKY_CANONICAL.replace(b"\r\n.", b"\r\n..").replace(b".", b"..", 1) + b".\r\n"
    )


# --- CHUNKING / BDAT (RFC 3030) ---------------------------------------------------------------


def test_bdat_chunks_carry_exactly_the_announced_octets_unstuffed_and_crlf() -> None:
    script = Script()
    body = TRICKY * 40000  # ~1.6 MB: several chunks, dots and bare line ends across them
    with serving(script) as server, connect(server) as session:
        result = session.sendmail("a@x.test", ["b@x.test"], body)
        commands = [c for c in script.commands if c.startswith(b"BDAT")]
    assert result.queue_id == "Q1"
    (tx,) = script.txs
    assert b"DATA" not in script.commands
    assert tx.mail == b"MAIL FROM:<a@x.test> SIZE=%d" % len(TRICKY_CANONICAL * 40000)
    # The server read exactly n octets after each "BDAT n" and then found a
    # well-formed command: the announced sizes are exact.
    for line, octets in tx.chunks:
        assert int(line.split()[1]) == len(octets)
    assert tx.bdat_content == TRICKY_CANONICAL * 40000  # no dot-stuffing, CRLF only
    assert len(commands) > 3 and commands[-1].endswith(b" LAST")
    assert all(not c.endswith(b"LAST") for c in commands[:-1])


def test_chunking_can_be_switched_off() -> None:
    script = Script()
    with serving(script) as server, connect(server, use_chunking=False) as session:
        session.sendmail("a@x.test", ["b@x.test"], TRICKY)
    assert not any(c.startswith(b"BDAT") for c in script.commands)
    assert script.txs[0].data is not None and script.txs[0].data.endswith(b"\r\n.\r\n")


def test_a_refused_chunk_stops_the_transfer_resets_and_reports() -> None:
    def chunk(tx: Tx, index: int, last: bool) -> str | None:
        first_tx = tx is script.txs[0]
        return "552 5.3.4 Message too big for system" if first_tx and index == 0 else None

    script = Script(chunk=chunk)
    body = b"x" * 998 + b"\r\n"
    with serving(script) as server, connect(server) as session:
        with pytest.raises(DataRefused) as info:
            session.sendmail("a@x.test", ["b@x.test", "c@x.test"], body * 2000)
        # The session is still usable after the RSET.
        again = session.sendmail("a@x.test", ["b@x.test"], b"small\r\n")
    error = info.value
    assert isinstance(error, PermanentDataRefused)
    assert error.reply is not None and error.reply.enhanced == "5.3.4"
    assert str(error).startswith("552 5.3.4 Message too big for system (stage=data_block")
    assert error.result is not None and error.result.accepted == {}
    assert set(error.result.refused) == {"b@x.test", "c@x.test"}
    # At most a window of chunks was in flight, none of them LAST; then RSET.
    commands = script.commands
    first_bdat = next(i for i, c in enumerate(commands) if c.startswith(b"BDAT"))
    rset = commands.index(b"RSET")
    in_flight = commands[first_bdat:rset]
    assert 1 <= len(in_flight) <= BDAT_WINDOW
    assert all(c.startswith(b"BDAT ") and not c.endswith(b"LAST") for c in in_flight)
    assert len(script.txs[0].chunks) == len(in_flight)
    assert again.queue_id is not None


def test_binarymime_only_when_asked_and_offered() -> None:
    binary = b"\x00\xff\r.\n\r\n.\rno final line end"
    script = Script((*POSTFIX_LIKE, "BINARYMIME"))
    with serving(script) as server, connect(server) as session:
        session.sendmail("a@x.test", ["b@x.test"], b"plain text\r\n")  # not asked
        session.sendmail("a@x.test", ["b@x.test"], binary, binary=True)
    plain, raw = script.txs
    assert b"BODY=" not in plain.mail
    assert b"BODY=BINARYMIME" in raw.mail
    assert raw.bdat_content == binary  # untouched: no CRLF normalisation, no stuffing
    assert b"SIZE=%d" % len(binary) in raw.mail


def test_binarymime_not_offered_is_refused_before_mail() -> None:
    script = Script(POSTFIX_LIKE)
    with serving(script) as server, connect(server) as session:
        with pytest.raises(ExtensionNotSupported, match="BINARYMIME"):
            session.sendmail("a@x.test", ["b@x.test"], b"\x00", binary=True)
        assert session.noop().code == 250
    assert b"MAIL" not in wire(server)


# --- 8BITMIME, SIZE, DSN: decided before MAIL ----------------------------------------------


def test_8bit_body_without_8bitmime_is_refused_before_mail() -> None:
    script = Script(("PIPELINING", "SIZE"))
    with serving(script) as server, connect(server) as session:
        with pytest.raises(ExtensionNotSupported) as info:
            session.sendmail("a@x.test", ["b@x.test"], "Grüße\r\n")
        assert info.value.extension == "8BITMIME"
        assert session.noop().code == 250
    assert b"MAIL" not in wire(server)
    assert b"Gr" not in wire(server)


def test_send_message_can_reencode_8bit_for_a_7bit_server() -> None:
    message = EmailMessage()
    message["From"] = "a@x.test"
    message["To"] = "b@x.test"
    message["Subject"] = "Grüße"
    message.set_content("Grüße aus Köln\n")
    script = Script(("PIPELINING", "SIZE"))
    with serving(script) as server, connect(server) as session:
        with pytest.raises(ExtensionNotSupported, match="reencode_8bit"):
            session.send_message(message)
        session.send_message(message, reencode_8bit=True)
    (tx,) = script.txs
    assert b"BODY=" not in tx.mail
    assert tx.data is not None and tx.data.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable" in tx.data
    assert b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=" in tx.data


def test_8bit_body_declares_8bitmime() -> None:
    script = Script()
    with serving(script) as server, connect(server) as session:
        session.sendmail("a@x.test", ["b@x.test"], "Grüße\r\n")
    assert script.txs[0].mail == b"MAIL FROM:<a@x.test> BODY=8BITMIME SIZE=9"


def test_message_over_the_size_limit_is_refused_before_mail() -> None:
    script = Script(("PIPELINING", "SIZE 1000", "8BITMIME"))
    with serving(script) as server, connect(server) as session:
        with pytest.raises(MessageTooLarge):
            session.sendmail("a@x.test", ["b@x.test"], b"x" * 100 + b"\r\n" * 451)
    assert b"MAIL" not in wire(server)


def test_dsn_options_on_the_wire() -> None:
    script = Script()
    with serving(script) as server, connect(server) as session:
        session.sendmail(
            "a@x.test",
            [Recipient("b@x.test", notify=("SUCCESS", "DELAY"), orcpt="list+b@x.test"), "c@x.test"],
            b"hi\r\n",
            dsn=DSN(ret="HDRS", envid="batch=7", notify=("NEVER",)),
        )
    (tx,) = script.txs
    assert tx.mail == b"MAIL FROM:<a@x.test> SIZE=4 RET=HDRS ENVID=batch+3D7"
    assert tx.rcpts == [
        b"RCPT TO:<b@x.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;list+2Bb@x.test",
        b"RCPT TO:<c@x.test> NOTIFY=NEVER",
    ]


def test_dsn_without_the_extension_is_refused_or_dropped_on_request() -> None:
    script = Script(("PIPELINING", "8BITMIME"))
    with serving(script) as server, connect(server) as session:
        with pytest.raises(ExtensionNotSupported, match="DSN"):
            session.sendmail("a@x.test", ["b@x.test"], b"hi\r\n", dsn=DSN(ret="FULL"))
        session.sendmail("a@x.test", ["b@x.test"], b"hi\r\n", dsn=DSN(ret="FULL", required=False))
    (tx,) = script.txs
    assert tx.mail == b"MAIL FROM:<a@x.test>"
    assert tx.rcpts == [b"RCPT TO:<b@x.test>"]


# --- REQUIRETLS (RFC 8689) over verified TLS ----------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("tls"))


def server_context(certs: TestCertificates) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.cert_file), str(certs.key_file))
    return context


def test_requiretls_is_sent_over_verified_tls(certs: TestCertificates) -> None:
    script = Script(tls=server_context(certs), after_tls=("REQUIRETLS",))
    with serving(script) as server:
        with connect(
            server,
            tls=TLSMode.STARTTLS,
            ssl_context=certs.client_context(),
            server_hostname="localhost",
        ) as session:
            assert session.tls is not None and session.tls.verified
            result = session.sendmail("a@x.test", ["b@x.test"], b"hi\r\n", requiretls=True)
    assert script.txs[0].mail == b"MAIL FROM:<a@x.test> SIZE=4 REQUIRETLS"
    assert result.tls is not None and result.tls.verified


@pytest.mark.parametrize(
    ("tls", "after_tls", "error"),
    [
        (True, (), ExtensionNotSupported),  # verified, but not offered
        (False, ("REQUIRETLS",), TLSRequiredError),  # offered, but the certificate is unverified
        (None, ("REQUIRETLS",), TLSRequiredError),  # no TLS at all
    ],
    ids=["not-offered", "unverified", "plaintext"],
)
def test_requiretls_is_refused_before_mail(
    certs: TestCertificates,
    tls: bool | None,
    after_tls: tuple[str, ...],
    error: type[SMTPClientError],
) -> None:
    extensions = POSTFIX_LIKE + (("REQUIRETLS",) if tls is None else ())
    script = Script(
        extensions, tls=None if tls is None else server_context(certs), after_tls=after_tls
    )
    if tls is None:
        options: dict[str, object] = {"tls": TLSMode.NONE}
    elif tls:
        options = {"tls": TLSMode.STARTTLS, "ssl_context": certs.client_context()}
    else:  # certifi does not know the test CA: encrypted, not verified
        options = {"tls": TLSMode.OPPORTUNISTIC}
    with ScriptedServer(script) as server:
        with connect(server, server_hostname="localhost", **options) as session:
            with pytest.raises(error):
                session.sendmail("a@x.test", ["b@x.test"], b"hi\r\n", requiretls=True)
            assert session.noop().code == 250
    assert script.txs == []  # no MAIL was sent


def test_tls_required_no_header(certs: TestCertificates) -> None:
    message = EmailMessage()
    message["From"] = "a@x.test"
    message["To"] = "b@x.test"
    message.set_content("hi\n")
    script = Script()
    with serving(script) as server, connect(server) as session:
        session.send_message(message, tls_optional=True)
        with pytest.raises(ValueError, match="opposite"):
            session.send_message(message, tls_optional=True, requiretls=True)
    content = script.txs[0].bdat_content
    assert content.startswith(b"From: a@x.test\r\nTo: b@x.test\r\n")
    assert b"\r\nTLS-Required: No\r\n" in content


# --- LMTP (RFC 2033): one final reply per accepted recipient -------------------------------------


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_lmtp_records_each_recipients_own_final_reply(chunking: bool) -> None:
    def rcpt(index: int, line: bytes) -> str:
        return "550 5.1.1 User doesn't exist" if b"ghost" in line else "250 2.1.5 Ok"

    def final(tx: Tx) -> list[str]:
        return [
            "452 4.2.2 Mailbox is full" if b"full" in line else f"250 2.0.0 <{i}> Saved"
            for i, line in enumerate(tx.rcpts)
            if b"ghost" not in line
        ]

    extensions = ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME") + (
        ("CHUNKING",) if chunking else ()
    )
    script = Script(extensions, rcpt=rcpt, final=final, lmtp=True)
    recipients = ["one@x.test", "ghost@x.test", "full@x.test", "two@x.test"]
    with serving(script) as server, connect(server, lmtp=True) as session:
        result = session.sendmail("a@x.test", recipients, TRICKY)
    assert script.commands[0].startswith(b"LHLO ")
    assert list(result.accepted) == ["one@x.test", "two@x.test"]
    assert result.refused["ghost@x.test"].enhanced == "5.1.1"  # at RCPT
    assert result.refused["full@x.test"].code == 452  # after the data
    assert result.recipient_data_replies["one@x.test"].text == "2.0.0 <0> Saved"
    assert result.recipient_data_replies["two@x.test"].text == "2.0.0 <3> Saved"
