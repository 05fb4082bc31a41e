"""Fuzz targets: each takes arbitrary bytes and either returns or raises
``AssertionError`` (an invariant broke) or an unexpected exception (a bug).

The library's own errors for bad input are expected and swallowed here:
``ProtocolError`` for what a server sends, ``InvalidArgumentError`` (and
``TypeError``) for what a caller passes.  Anything else escaping a target
is a bug in smtpclient.

The same targets serve the atheris campaign (``python -m fuzz.run``), the
corpus replay in the normal test suite, and the hypothesis properties.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

from smtpclient import errors
from smtpclient.errors import InvalidArgumentError, NulOctetError, ProtocolError
from smtpclient.protocol import commands
from smtpclient.protocol.data import BodyScanner, DataEncoder, Framing
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply, ReplyParser
from smtpclient.protocol.state import Stage
from smtpclient.protocol.status import error_for

__all__ = [
    "TARGETS",
    "check_reply",
    "commands_target",
    "data_target",
    "ehlo_target",
    "reply_target",
]


def _pieces(data: bytes, seed: int) -> list[bytes]:
    """Cut *data* into pieces whose sizes follow from *seed* (1..16 bytes)."""
    size = (seed % 16) + 1
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def _printable(text: str) -> bool:
    return text.isprintable() and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def check_reply(reply: Reply) -> None:
    """Everything a caller may do with a reply read from a hostile server."""
    assert 200 <= reply.code <= 599
    assert len(reply.lines) == len(reply.raw) >= 1
    enhanced = reply.enhanced
    if enhanced is not None:
        assert enhanced[0] == str(reply.code)[0]
        assert reply.lines[0].startswith(enhanced)
    _ = (reply.text, reply.message, reply.raw_text, repr(reply), str(reply))
    assert pickle.loads(pickle.dumps(reply)) == reply  # noqa: S301 (our own bytes)
    ehlo = Extensions.parse(reply)
    _ = (ehlo.max_size, ehlo.auth_mechanisms, ehlo.pipelining, ehlo.smtputf8, list(ehlo))
    for stage in (Stage.GREETING, Stage.EHLO, Stage.AUTH, Stage.MAIL, Stage.RCPT, Stage.DATA_DONE):
        cls = error_for(stage, reply)
        if cls is ProtocolError:
            continue
        exc: errors.SMTPClientError
        if issubclass(cls, errors.RecipientsRefused):
            exc = cls(reply=reply, stage=stage, host="fuzz.test", recipients={"r@x": reply})
        else:
            exc = cls(reply=reply, stage=stage, host="fuzz.test")
        assert isinstance(exc, errors.SMTPClientError)
        assert _printable(str(exc)), repr(str(exc))
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
        # A 421 is a stage-specific subclass of the class error_for names.
        assert isinstance(exc, cls)
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)


def reply_target(data: bytes) -> None:
    """The reply parser, fed in pieces, against the same bytes fed whole."""
    if not data:
        return
    seed, wire = data[0], data[1:]

    def parse(pieces: list[bytes]) -> list[Reply] | str:
        parser = ReplyParser()
        out: list[Reply] = []
        try:
            for piece in pieces:
                parser.feed(piece)
                while (reply := parser.next_reply()) is not None:
                    out.append(reply)
        except ProtocolError as exc:
            message = str(exc)
        else:
            return out
        assert _printable(message), repr(message)
        return "error"

    split, whole = parse(_pieces(wire, seed)), parse([wire])
    assert split == whole, (split, whole)
    if isinstance(split, list):
        for reply in split:
            check_reply(reply)


def ehlo_target(data: bytes) -> None:
    """Extensions.parse on any text a 250 reply can carry: never raises."""
    lines = tuple(data.decode("utf-8", "replace").replace("\r", "\n").split("\n"))
    ext = Extensions.parse(Reply(250, lines))
    size = ext.max_size
    assert size is None or (isinstance(size, int) and size > 0)
    for keyword in ext:
        assert keyword == keyword.upper()
        assert keyword in ext
        if keyword.isascii():  # EHLO keywords are ASCII (RFC 5321 §4.1.1.1)
            assert keyword.lower() in ext
    _ = (ext.auth_mechanisms, ext.starttls, ext.chunking, ext.dsn, ext.requiretls)


def _unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n"), wire[-10:]
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines[:-1])


def _normalise(body: bytes) -> bytes:
    text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def data_target(data: bytes) -> None:
    """The streaming encoder: any cut gives the same wire, no bare CR/LF,
    exactly one end marker, and the server's unstuffing gives the body back."""
    if not data:
        return
    seed, body = data[0], data[1:]
    framing = (Framing.DATA, Framing.BDAT, Framing.BINARY)[seed % 3]
    if b"\x00" in body and framing is not Framing.BINARY:
        # NUL only in BINARYMIME: refused before the chunk holding it is encoded.
        encoder = DataEncoder(framing)
        out = b""
        try:
            for piece in _pieces(body, seed >> 2):
                out += encoder.feed(piece)
        except NulOctetError:
            assert b"\x00" not in out
            return
        raise AssertionError("a NUL octet went through the encoder")
    encoder = DataEncoder(framing)
    wire = b"".join(encoder.feed(p) for p in _pieces(body, seed >> 2)) + encoder.finish()
    whole = DataEncoder(framing)
    assert wire == whole.feed(body) + whole.finish()
    scanner = BodyScanner()
    for piece in _pieces(body, seed >> 4):
        scanner.feed(piece)
    if framing is Framing.BINARY:
        assert wire == body
        return
    assert wire.count(b"\n") == wire.count(b"\r\n") == wire.count(b"\r")
    canonical = _normalise(body)
    assert scanner.size == len(canonical)
    complete = DataEncoder(framing).encode_complete(canonical)
    assert complete == wire
    if framing is Framing.BDAT:
        assert wire == canonical
    else:
        assert (b"\r\n" + wire).count(b"\r\n.\r\n") == 1
        assert _unstuff(wire) == canonical


def _clean_line(wire: bytes, utf8: bool) -> None:
    assert wire.endswith(b"\r\n")
    body = wire[:-2]
    for forbidden in (b"\r", b"\n", b"\x00"):
        assert forbidden not in body, wire
    if not utf8:
        assert body.isascii()
    text = body.decode("utf-8")
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text), text


def commands_target(data: bytes) -> None:
    """Every command encoder on any text: one clean line, or a refusal."""
    if not data:
        return
    utf8 = bool(data[0] & 1)
    text = data[1:].decode("utf-8", "replace")
    half = len(text) // 2
    builders: list[Callable[[], bytes]] = [
        lambda: commands.mail(text, utf8=utf8),
        lambda: commands.rcpt(text, utf8=utf8),
        lambda: commands.rcpt(f"{text[:half]}@{text[half:]}", utf8=utf8),
        lambda: commands.mail("a@b.example", {text[:half] or "X": text[half:] or None}, utf8=utf8),
        lambda: commands.ehlo(text),
        lambda: commands.vrfy(text, utf8=utf8),
        lambda: commands.help_(text),
        lambda: commands.auth(text[:half], text[half:]),
        lambda: (commands.xtext(text) + "\r\n").encode("ascii"),
    ]
    for build in builders:
        try:
            wire = build()
        except InvalidArgumentError:
            continue  # the caller's mistake: a ValueError, never an OSError
        _clean_line(wire, utf8)
        if wire.startswith(b"EHLO "):
            name = wire[5:-2]
            # An address literal keeps its brackets; a domain has none.
            assert name.startswith(b"[") == name.endswith(b"]"), name
            assert not any(bracket in name[1:-1] for bracket in (b"[", b"]")), name


TARGETS: dict[str, Callable[[bytes], None]] = {
    "reply": reply_target,
    "ehlo": ehlo_target,
    "data": data_target,
    "commands": commands_target,
}
