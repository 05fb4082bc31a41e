"""Header injection and NUL octets, at every face, against a scripted server.

The server records the wire.  A message whose header would gain a line
(a compat32 value with CRLF, CVE-2024-6923's encoded word), raw content
with a bare CR or LF in its header, and content with a NUL octet are
refused with a ``ValueError`` before MAIL: the server sees EHLO and, for
the session faces, the next (good) message only.  A one-shot iterable is
judged while it streams: the connection is closed before the end marker
("." or BDAT LAST) and the NUL never reaches the wire.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from email.mime.text import MIMEText

import pytest
from servers.scripted import Conn, ScriptedServer, greet_and_ehlo, serve_normally

import smtpclient
import smtpclient.compat as compat
from hostile.faultkit import FAST, command_lines, connect
from smtpclient import Mailer, Session, TLSMode
from smtpclient.errors import HeaderInjectionError, InvalidAddressError, NulOctetError

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "data": ("PIPELINING", "8BITMIME"),
    "bdat": ("PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME"),
}


def _handler(extensions: tuple[str, ...]) -> Callable[[Conn], None]:
    def handler(conn: Conn) -> None:
        greet_and_ehlo(conn, extensions)
        serve_normally(conn)

    return handler


def _compat32_injection() -> Message:
    message = MIMEText("Please pay")
    message["From"], message["To"] = "shop@x.example", "client@x.example"
    message["Subject"] = "Invoice 42\r\nReply-To : payments@attacker.test"
    return message


def _cve_injection() -> Message:
    message = EmailMessage()
    message["From"], message["To"] = "shop@x.example", "client@x.example"
    message["Subject"] = "=?utf-8?q?Invoice=0D=0AX-Injected=3A_yes?="
    message.set_content("Your invoice")
    return message


def _nul_body() -> Message:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@x.example", "nul"
    message.set_content(
        b"a\r\n\x00.\r\nMAIL FROM:<evil@x.example>\r\n", "application", "x-raw", cte="7bit"
    )
    return message


MESSAGES = {"compat32 CRLF": _compat32_injection, "CVE-2024-6923": _cve_injection}

MESSAGE_FACES: dict[str, Callable[[ScriptedServer, Message], object]] = {
    "Session.send_message": lambda server, m: _with_session(server, lambda s: s.send_message(m)),
    "Session.send_many": lambda server, m: _raise_first(
        _with_session(server, lambda s: s.send_many([m]))
    ),
    "Mailer.send": lambda server, m: _with_mailer(server, lambda mailer: mailer.send(m)),
    "Mailer.send_many": lambda server, m: _raise_first(
        _with_mailer(server, lambda mailer: mailer.send_many([m]))
    ),
    "send()": lambda server, m: smtpclient.send(
        m, host="127.0.0.1", port=server.port, tls=TLSMode.NONE, timeouts=FAST
    ),
    "compat send_message": lambda server, m: _with_compat(server, lambda c: c.send_message(m)),
}


def _with_session(server: ScriptedServer, call: Callable[[Session], object]) -> object:
    with connect(server) as session:
        return call(session)


def _with_mailer(server: ScriptedServer, call: Callable[[Mailer], object]) -> object:
    with Mailer("127.0.0.1", server.port, tls=TLSMode.NONE, timeouts=FAST) as mailer:
        return call(mailer)


def _with_compat(server: ScriptedServer, call: Callable[[compat.SMTP], object]) -> object:
    with compat.SMTP("127.0.0.1", server.port, timeout=5) as client:
        return call(client)


def _raise_first(outcomes: object) -> object:
    assert isinstance(outcomes, list)
    if isinstance(outcomes[0], Exception):
        raise outcomes[0]
    return outcomes


def _verbs(server: ScriptedServer) -> list[bytes]:
    verbs: list[bytes] = []
    for conn in server.conns:
        verbs += [line.split(b" ")[0].upper() for line in command_lines(bytes(conn.received))]
    return verbs


@pytest.mark.parametrize("face", list(MESSAGE_FACES), ids=list(MESSAGE_FACES))
@pytest.mark.parametrize("build", list(MESSAGES), ids=list(MESSAGES))
def test_an_injected_header_line_is_refused_before_mail(face: str, build: str) -> None:
    message = MESSAGES[build]()
    refused = not (build == "CVE-2024-6923" and _generator_is_patched())
    with ScriptedServer(_handler(EXTENSIONS["data"]), max_connections=2) as server:
        if refused:
            with pytest.raises(HeaderInjectionError) as info:
                MESSAGE_FACES[face](server, message)
            assert isinstance(info.value, ValueError)
            assert b"MAIL" not in _verbs(server)
        else:  # the value was encoded: no line was added
            MESSAGE_FACES[face](server, message)
            received = b"".join(bytes(conn.received) for conn in server.conns)
            assert b"\r\nX-Injected:" not in received


def _generator_is_patched() -> bool:
    # CVE-2024-6923 is fixed in 3.11.10 and 3.12.5.
    return sys.version_info >= (3, 12, 5) or (3, 11, 10) <= sys.version_info < (3, 12)


RAW_INJECTIONS = {
    "bare LF in a CRLF header": b"From: a@x.example\r\nSubject: hi\nBcc: v@x.example\r\n\r\nbody\r\n",
    "bare CR in a header": b"From: a@x.example\r\nSubject: hi\rBcc: v@x.example\r\n\r\nbody\r\n",
    "CRLF in an LF header": b"From: a@x.example\nSubject: hi\r\nBcc: v@x.example\n\nbody\n",
}

RawFace = Callable[[Session, bytes], object]
RAW_FACES: dict[str, RawFace] = {
    "fast path (bytes)": lambda s, data: s.sendmail("a@x.example", ["b@x.example"], data),
    "general path (str)": lambda s, data: s.sendmail(
        "a@x.example", ["b@x.example"], data.decode(), mail_options=["BODY=8BITMIME"]
    ),
    "seekable file": lambda s, data: s.sendmail("a@x.example", ["b@x.example"], io.BytesIO(data)),
    "send_many tuple": lambda s, data: _raise_first(
        s.send_many([("a@x.example", ["b@x.example"], data)])
    ),
}


@pytest.mark.parametrize("framing", list(EXTENSIONS))
@pytest.mark.parametrize("face", list(RAW_FACES), ids=list(RAW_FACES))
@pytest.mark.parametrize("case", list(RAW_INJECTIONS), ids=list(RAW_INJECTIONS))
def test_raw_content_with_a_bad_header_line_end_is_refused_before_mail(
    case: str, face: str, framing: str
) -> None:
    with ScriptedServer(_handler(EXTENSIONS[framing])) as server:
        with connect(server) as session:
            with pytest.raises(HeaderInjectionError):
                RAW_FACES[face](session, RAW_INJECTIONS[case])
            assert session.usable
            good = b"From: a@x.example\nSubject: hi\n\nline\r\nbare\rcr\n"  # LF header: fine
            assert session.sendmail("a@x.example", ["b@x.example"], good).accepted
    assert _verbs(server).count(b"MAIL") == 1


NUL = b"Subject: smuggle\r\n\r\nhello\r\n\x00.\r\nMAIL FROM:<evil@x.example>\r\n"
NUL_FACES: dict[str, RawFace] = {
    **RAW_FACES,
    "str": lambda s, data: s.sendmail("a@x.example", ["b@x.example"], data.decode()),
    "message object": lambda s, data: s.send_message(_nul_body()),
}


@pytest.mark.parametrize("framing", list(EXTENSIONS))
@pytest.mark.parametrize("face", list(NUL_FACES), ids=list(NUL_FACES))
def test_a_nul_octet_is_refused_before_mail(face: str, framing: str) -> None:
    with ScriptedServer(_handler(EXTENSIONS[framing])) as server:
        with connect(server) as session:
            with pytest.raises(NulOctetError) as info:
                NUL_FACES[face](session, NUL)
            assert isinstance(info.value, ValueError)
            assert session.usable
        received = bytes(server.conns[0].received)
    assert b"MAIL" not in received and b"\x00" not in received


def test_compat_refuses_a_nul_octet_and_a_bad_header_before_mail() -> None:
    with ScriptedServer(_handler(EXTENSIONS["data"])) as server:
        with compat.SMTP("127.0.0.1", server.port, timeout=5) as client:
            with pytest.raises(NulOctetError):
                client.sendmail("a@x.example", ["b@x.example"], NUL)
            with pytest.raises(HeaderInjectionError):
                client.sendmail(
                    "a@x.example", ["b@x.example"], RAW_INJECTIONS["bare CR in a header"]
                )
            with pytest.raises(NulOctetError):
                client.data(NUL)
        received = bytes(server.conns[0].received)
    assert b"MAIL" not in received and b"DATA" not in received and b"\x00" not in received


def _stream(first_blocks: int) -> Iterator[bytes]:
    yield b"Subject: stream\r\n\r\n"
    for _ in range(first_blocks):
        yield b"x" * 900 + b"\r\n"
    yield b"hello\r\n\x00.\r\nMAIL FROM:<evil@x.example>\r\n"
    yield b"more\r\n"


@pytest.mark.parametrize("framing", list(EXTENSIONS))
@pytest.mark.parametrize("lead", [0, 330], ids=["nul in the first block", "nul after 300 kB"])
def test_a_nul_in_a_stream_stops_before_the_end_marker(framing: str, lead: int) -> None:
    with ScriptedServer(_handler(EXTENSIONS[framing])) as server:
        with connect(server) as session:
            with pytest.raises(NulOctetError):
                session.sendmail("a@x.example", ["b@x.example"], _stream(lead))
            assert session.usable is False  # closed: the server drops the half message
        assert server.conns[0].wait_closed()
        received = bytes(server.conns[0].received)
    assert b"\x00" not in received
    assert b"MAIL FROM:<evil" not in received
    if framing == "data":
        assert b"DATA\r\n" in received and not received.endswith(b".\r\n")
        assert b"\r\n.\r\n" not in received.split(b"DATA\r\n", 1)[1]
    else:
        assert b" LAST" not in received
    assert b"QUIT" not in received


def test_a_bad_header_in_a_stream_is_found_before_anything_of_it_is_sent() -> None:
    chunks = [b"From: a@x.example\r\n", b"Subject: hi\nBcc: v@x.example\r\n", b"\r\nbody\r\n"]
    with ScriptedServer(_handler(EXTENSIONS["data"])) as server:
        with connect(server) as session:
            with pytest.raises(HeaderInjectionError):
                session.sendmail("a@x.example", ["b@x.example"], iter(chunks))
        received = bytes(server.conns[0].received)
    assert b"Subject" not in received and not received.endswith(b".\r\n")


def test_binarymime_carries_a_nul_octet() -> None:
    # RFC 3030: BINARYMIME content is sent as given, NUL included.
    with ScriptedServer(_handler(EXTENSIONS["bdat"])) as server:
        with connect(server) as session:
            result = session.sendmail("a@x.example", ["b@x.example"], NUL, binary=True)
        received = bytes(server.conns[0].received)
    assert result.accepted
    assert b"BODY=BINARYMIME" in received and b"\x00" in received


CONTROL_CASES: dict[str, Callable[[ScriptedServer], object]] = {
    "Session.sendmail, NEL in a recipient": lambda server: _with_session(
        server, lambda s: s.sendmail("a@x.example", ["b@x.example", "c\x85@x.example"], b"x\r\n")
    ),
    "Session.sendmail, RLO in the sender": lambda server: _with_session(
        server, lambda s: s.sendmail("\u202ea@x.example", ["b@x.example"], b"x\r\n")
    ),
    "Session.send_message, NEL in To": lambda server: _with_session(
        server, lambda s: s.send_message(_compat32(To="b\x85@x.example"))
    ),
    "send(), U+2028 in a recipient": lambda server: smtpclient.send(
        b"x\r\n",
        host="127.0.0.1",
        port=server.port,
        tls=TLSMode.NONE,
        timeouts=FAST,
        sender="a@x.example",
        recipients=["b\u2028@x.example"],
    ),
    "send(), bidi control in a From display name": lambda server: smtpclient.send(
        _compat32(From="Bank \u202egnp.exe\u202c <a@x.example>"),
        host="127.0.0.1",
        port=server.port,
        tls=TLSMode.NONE,
        timeouts=FAST,
    ),
    "Mailer.send, zero-width space in Cc": lambda server: _with_mailer(
        server, lambda mailer: mailer.send(_compat32(Cc="c\u200b@x.example"))
    ),
}


def _compat32(**headers: str) -> Message:
    message = Message()
    message["From"], message["To"] = "a@x.example", "b@x.example"
    for name, value in headers.items():
        del message[name]
        message[name] = value
    message.set_payload("x")
    return message


@pytest.mark.parametrize("case", list(CONTROL_CASES), ids=list(CONTROL_CASES))
def test_a_control_character_in_an_address_is_caller_input(case: str) -> None:
    # The server offers no SMTPUTF8: before the fix, NEL raised
    # ExtensionNotSupported (an OSError) instead of a ValueError.
    with ScriptedServer(_handler(EXTENSIONS["data"])) as server:
        with pytest.raises(InvalidAddressError) as info:
            CONTROL_CASES[case](server)
        assert isinstance(info.value, ValueError) and not isinstance(info.value, OSError)
        assert b"MAIL" not in _verbs(server)
