"""An SMTP-conversation fuzzer: a real ``Session`` against a server that
answers with an arbitrary script of byte chunks.

The server side (``serve_script``) sends the next chunk each time the
client has said something, or after a short pause if it has not, and closes
the connection when the script runs out -- so every conversation ends
quickly, whatever the script.  The client side (``drive_client``) connects,
sends two messages, a pipelined batch and a NOOP, and checks the library's
promises:

* the only exceptions are the library's own (``SMTPClientError`` and, on a
  session an earlier error closed, ``SessionClosedError``);
* after a lost connection, a timeout or a protocol error the session is not
  usable; a ``SendResult`` always has an accepted recipient, and each one
  has a positive final reply; every exception's text is printable;
* the socket is closed at the end.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable, Sequence

from smtpclient import Session, Timeouts, TLSMode
from smtpclient.errors import (
    ProtocolError,
    ServerDisconnected,
    ServiceClosing,
    SessionClosedError,
    SMTPClientError,
    SMTPTimeoutError,
)
from smtpclient.results import SendResult

__all__ = ["REPLIES", "TIMEOUTS", "conversation_target", "drive_client", "serve_script"]

TIMEOUTS = dataclasses.replace(Timeouts.uniform(0.5), data_done=10.0, total=None)
PAUSE = 0.02  # seconds the server waits for the client before sending anyway

# Replies a server might plausibly send, so that scripts get deep into a
# conversation; raw bytes mix in everything else.
REPLIES: tuple[bytes, ...] = (
    b"220 fuzz.test ESMTP\r\n",
    b"250-fuzz.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000\r\n250 DSN\r\n",
    b"250-fuzz.test\r\n250-CHUNKING\r\n250 PIPELINING\r\n",
    b"250 fuzz.test\r\n",
    b"250 2.1.0 ok\r\n",
    b"250 2.0.0 queued as F1\r\n",
    b"251 will forward\r\n",
    b"354 go ahead\r\n",
    b"421 4.3.2 closing\r\n",
    b"450 4.2.0 later\r\n",
    b"451 4.7.1 greylisted\r\n",
    b"452 4.5.3 too many recipients\r\n",
    b"500 5.5.1 what?\r\n",
    b"502 5.5.2 not implemented\r\n",
    b"550 5.1.1 no such user\r\n",
    b"552 5.3.4 too big\r\n",
    b"554 5.7.1 rejected\r\n",
    b"221 2.0.0 bye\r\n",
    b"334 VXNlcm5hbWU6\r\n",
    b"250-continued",
    b"\r\n",
    b"250 ok\r\n250 ok\r\n",
    b"250 ok\r\n250 ok\r\n354 go\r\n",
    b"999 nonsense\r\n",
    b"\x1b[2J\xff\xfe\x00 junk\r\n",
)

Recv = Callable[[float], bytes | None]  # data, b"" at close, None if nothing came


def script_from_bytes(data: bytes) -> list[bytes]:
    """Turn fuzzer bytes into server chunks: pieces split at "|"; a piece
    starting below 0x60 names one of ``REPLIES``, any other is raw bytes."""
    chunks = []
    for piece in data.split(b"|")[:40]:
        if piece and piece[0] < 0x60:
            chunks.append(REPLIES[piece[0] % len(REPLIES)])
        else:
            chunks.append(piece[1:])
    return chunks


def serve_script(chunks: Sequence[bytes], recv: Recv, send: Callable[[bytes], None]) -> None:
    """Send each chunk once the client has said something (or after PAUSE)."""
    for chunk in chunks:
        if recv(PAUSE) == b"":
            return
        if chunk:
            send(chunk)
    # Drain briefly so the client's last write is not reset, then return
    # (the caller closes the connection).
    for _ in range(3):
        if recv(PAUSE) == b"":
            return


def _check_error(exc: BaseException, session: Session | None) -> None:
    if not isinstance(exc, (SMTPClientError, SessionClosedError)):
        raise AssertionError(f"not a library error: {type(exc).__name__}: {exc}") from exc
    text = str(exc)
    assert text.isprintable(), repr(text)
    if session is not None and isinstance(
        exc, (ProtocolError, ServerDisconnected, SMTPTimeoutError, ServiceClosing)
    ):
        assert not session.usable, f"still usable after {type(exc).__name__}"


def _check_result(result: object) -> None:
    assert isinstance(result, SendResult), result
    assert result.accepted, "a result with no accepted recipient"
    assert set(result.accepted) <= set(result.recipients)
    # Delivered means a positive final reply covers it (its own under LMTP).
    for recipient in result.accepted:
        final = result.recipient_data_replies.get(recipient)
        assert final is not None, recipient
        assert final.is_positive, (recipient, final)


def drive_client(connect: Callable[[], Session]) -> list[str]:
    """Run the client side; return what happened at each step (for debugging)."""
    events: list[str] = []
    try:
        session = connect()
    except Exception as exc:
        _check_error(exc, None)
        return [f"connect: {type(exc).__name__}"]
    steps: list[tuple[str, Callable[[], object]]] = [
        ("sendmail", lambda: session.sendmail("a@fuzz.test", ["b@fuzz.test", "c@fuzz.test"], b"x")),
        ("sendmail", lambda: session.sendmail("a@fuzz.test", "d@fuzz.test", b".\r\nMAIL\r\n")),
        ("send_many", lambda: session.send_many([("a@f.test", ["e@f.test"], b"1")] * 2)),
        ("noop", session.noop),
    ]
    with session:
        for name, step in steps:
            try:
                outcome = step()
            except Exception as exc:
                _check_error(exc, session)
                events.append(f"{name}: {type(exc).__name__}")
                continue
            if name == "sendmail":
                _check_result(outcome)
            elif name == "send_many":
                assert isinstance(outcome, list)
                assert len(outcome) == 2
                for item in outcome:
                    if isinstance(item, Exception):
                        _check_error(item, None)
                    else:
                        _check_result(item)
            events.append(f"{name}: ok")
    assert session._transport.closed, "socket left open"
    return events


def _socket_recv(sock: socket.socket) -> Recv:
    def recv(timeout: float) -> bytes | None:
        sock.settimeout(timeout)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""

    return recv


def conversation_target(data: bytes) -> None:
    """One conversation over a socket pair (fast enough for a campaign)."""
    if not data:
        return
    options = data[0]
    chunks = script_from_bytes(data[1:])
    server_sock, client_sock = socket.socketpair()

    def serve() -> None:
        try:
            serve_script(chunks, _socket_recv(server_sock), server_sock.sendall)
        except OSError:
            pass
        finally:
            server_sock.close()

    feeder = threading.Thread(target=serve, name="fuzz-feeder", daemon=True)
    feeder.start()
    try:
        drive_client(
            lambda: Session.connect(
                "fuzz.test",
                25,
                sock=client_sock,
                tls=TLSMode.NONE,
                timeouts=TIMEOUTS,
                local_hostname="client.fuzz.test",
                use_pipelining=bool(options & 1),
                use_chunking=bool(options & 2),
                lmtp=bool(options & 4),
            )
        )
    finally:
        client_sock.close()
        feeder.join(10)
