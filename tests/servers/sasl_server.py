"""The server side of SASL for scripted servers: checks what the client proves
(PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256 with a real server signature,
XOAUTH2, OAUTHBEARER) so that a test sees a complete, honest exchange.

``serve_with_auth(conn, users=..., tokens=...)`` answers commands like
``serve_normally`` and handles AUTH; ``conn.auth_lines`` (set here) keeps
each AUTH command line the client sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from servers.scripted import Conn

SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _challenge(conn: Conn, data: bytes | str) -> bytes:
    """Send 334 with *data*; return the client's decoded answer."""
    conn.send(f"334 {_b64(data)}\r\n".encode())
    line = conn.line()
    if line == b"*":
        raise _Cancelled
    return base64.b64decode(line)


class _Cancelled(Exception):
    pass


def _scram(conn: Conn, mechanism: str, first: bytes, users: dict[str, str]) -> bool:
    name = SCRAM_HASHES[mechanism]
    first_text = first.decode()
    assert first_text.startswith("n,,"), first_text
    bare = first_text[3:]
    fields = dict(part.split("=", 1) for part in bare.split(","))
    user = fields["n"].replace("=2C", ",").replace("=3D", "=")
    nonce = fields["r"] + secrets.token_urlsafe(12)
    salt, iterations = secrets.token_bytes(16), 4096
    server_first = f"r={nonce},s={_b64(salt)},i={iterations}"
    final = _challenge(conn, server_first).decode()
    without_proof, proof = final.rsplit(",p=", 1)
    assert without_proof == f"c=biws,r={nonce}", without_proof
    password = users.get(user)
    if password is None:
        return False
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored_key = hashlib.new(name, client_key).digest()
    signature = hmac.new(stored_key, auth_message, name).digest()
    given = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
    if hashlib.new(name, given).digest() != stored_key:
        return False
    server_key = hmac.new(salted, b"Server Key", name).digest()
    verifier = hmac.new(server_key, auth_message, name).digest()
    assert _challenge(conn, f"v={_b64(verifier)}") == b""
    return True


def check_auth(conn: Conn, line: bytes, users: dict[str, str], tokens: dict[str, str]) -> bool:
    """Run the exchange that AUTH *line* starts; True if the client proved itself."""
    parts = line.decode().split(" ")
    mechanism = parts[1].upper()
    initial = base64.b64decode(parts[2]) if len(parts) > 2 and parts[2] != "=" else None
    if mechanism == "PLAIN":
        data = initial if initial is not None else _challenge(conn, b"")
        _, user, password = data.decode().split("\0")
        return users.get(user) == password
    if mechanism == "LOGIN":
        user = _challenge(conn, b"Username:").decode()
        password = _challenge(conn, b"Password:").decode()
        return users.get(user) == password
    if mechanism == "CRAM-MD5":
        challenge = f"<{secrets.token_hex(8)}@scripted.test>".encode()
        user, digest = _challenge(conn, challenge).decode().rsplit(" ", 1)
        password = users.get(user)
        expected = hmac.new((password or "").encode(), challenge, hashlib.md5).hexdigest()
        return password is not None and hmac.compare_digest(digest, expected)
    if mechanism in SCRAM_HASHES:
        assert initial is not None
        return _scram(conn, mechanism, initial, users)
    if mechanism in ("XOAUTH2", "OAUTHBEARER"):
        data = initial if initial is not None else _challenge(conn, b"")
        text = data.decode()
        if mechanism == "XOAUTH2":
            user = text.split("\x01")[0].removeprefix("user=")
        else:
            user = text.split(",")[1].removeprefix("a=")
        token = text.split("auth=Bearer ", 1)[1].split("\x01")[0]
        return tokens.get(user) == token
    raise AssertionError(f"unexpected mechanism {mechanism}")


def serve_with_auth(
    conn: Conn,
    *,
    users: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
    data_reply: str = "250 2.0.0 Ok: queued as SASL",
) -> None:
    """Answer like a plain server, with AUTH checked against *users*/*tokens*."""
    conn.auth_lines = []  # type: ignore[attr-defined]
    while True:
        line = conn.line()
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"AUTH":
            conn.auth_lines.append(line)  # type: ignore[attr-defined]
            try:
                ok = check_auth(conn, line, users or {}, tokens or {})
            except _Cancelled:
                conn.reply("501 5.7.0 cancelled")
                continue
            conn.reply("235 2.7.0 Authentication successful" if ok else "535 5.7.8 bad credentials")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            conn.reply("250 2.0.0 Ok")
        elif verb == b"DATA":
            conn.reply("354 go ahead")
            conn.read_data()
            conn.reply(data_reply)
        elif verb == b"QUIT":
            conn.reply("221 2.0.0 Bye")
            return
        else:
            conn.reply("502 5.5.2 not implemented")
