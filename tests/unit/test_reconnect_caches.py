"""The in-memory caches that make reconnecting cheap: SCRAM's derived keys
(RFC 5802 §5.1) and the bookkeeping of TLS sessions (the sessions themselves
are exercised against real servers in tests/integration/test_reconnect_cost.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl

import pytest

from smtpclient.credentials import Password
from smtpclient.mechanisms import ScramSHA256, create
from smtpclient.saslprep import SASLError
from smtpclient.scramcache import ScramKeyCache, ScramKeys, scram_keys
from smtpclient.tlsresume import SessionCache

SALT = b"0123456789abcdef"
ITERATIONS = 4096
SERVER = "mail.example.test:587"


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    scram_keys.clear()


class ScramServer:
    """Just enough of a SCRAM-SHA-256 server (RFC 5802 §3) to drive the client."""

    def __init__(self, password: str, salt: bytes = SALT) -> None:
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
        self.stored_key = hashlib.sha256(
            hmac.new(salted, b"Client Key", "sha256").digest()
        ).digest()
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.salt = salt

    def login(self, mechanism: ScramSHA256) -> bool:
        """Run one exchange; True if the proof was right (then finish() ran)."""
        first = mechanism.initial().decode()[3:]  # without "n,,"
        nonce = dict(p.split("=", 1) for p in first.split(","))["r"] + "server"
        salt = base64.b64encode(self.salt).decode()
        server_first = f"r={nonce},s={salt},i={ITERATIONS}"
        final = mechanism.respond(server_first.encode()).decode()
        without_proof, proof = final.rsplit(",p=", 1)
        message = f"{first},{server_first},{without_proof}".encode()
        signature = hmac.new(self.stored_key, message, "sha256").digest()
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if hashlib.sha256(client_key).digest() != self.stored_key:
            return False
        verifier = hmac.new(self.server_key, message, "sha256").digest()
        mechanism.respond(b"v=" + base64.b64encode(verifier))
        mechanism.finish()
        return True


def scram(password: str, server: str | None = SERVER) -> ScramSHA256:
    mechanism = create("SCRAM-SHA-256", Password("user", password), server=server)
    assert isinstance(mechanism, ScramSHA256)
    return mechanism


def test_a_successful_login_is_cached_and_the_next_one_skips_pbkdf2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ScramServer("secret")
    assert server.login(scram("secret"))
    assert len(scram_keys) == 1
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a, **k: pytest.fail("derived again"))
    assert server.login(scram("secret"))
    assert len(scram_keys) == 1


@pytest.mark.parametrize(
    "change",
    ["password", "server", "salt"],
)
def test_anything_else_is_a_miss(change: str) -> None:
    ScramServer("secret").login(scram("secret"))
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counted(*args: object) -> bytes:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    password, server, salt = "secret", SERVER, SALT
    if change == "password":
        password = "other"
    elif change == "server":
        server = "other.example:587"
    else:
        salt = b"another salt...."
    peer = ScramServer(password, salt=salt)  # derives its own keys first
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashlib, "pbkdf2_hmac", counted)
        assert peer.login(scram(password, server=server))
    assert calls == [1]


def test_a_refused_proof_drops_the_entry() -> None:
    ScramServer("secret").login(scram("secret"))
    # The server's stored credentials changed (same salt): the cached keys fail.
    assert not ScramServer("changed").login(scram("secret"))
    assert len(scram_keys) == 0


def test_a_wrong_server_signature_drops_the_entry() -> None:
    ScramServer("secret").login(scram("secret"))
    mechanism = scram("secret")
    first = mechanism.initial().decode()[3:]
    nonce = dict(p.split("=", 1) for p in first.split(","))["r"] + "x"
    mechanism.respond(f"r={nonce},s={base64.b64encode(SALT).decode()},i={ITERATIONS}".encode())
    with pytest.raises(SASLError):
        mechanism.respond(b"v=" + base64.b64encode(b"\0" * 32))
    assert len(scram_keys) == 0


def test_without_a_server_nothing_is_cached() -> None:
    assert ScramServer("secret").login(scram("secret", server=None))
    assert len(scram_keys) == 0


def test_the_scram_cache_is_bounded() -> None:
    cache = ScramKeyCache(limit=3)
    for i in range(5):
        keys = ScramKeys(b"c", b"s", SALT, i + 1)
        cache.keep(SERVER, "sha256", "user", b"pw", keys)
    assert len(cache) == 3
    assert cache.take(SERVER, "sha256", "user", b"pw", SALT, 1) is None
    assert cache.take(SERVER, "sha256", "user", b"pw", SALT, 5) is not None


def test_a_forked_child_starts_with_empty_caches() -> None:
    ScramServer("secret").login(scram("secret"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        os.write(write, str(len(scram_keys)).encode())
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 16) == b"0"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(scram_keys) == 1


def test_the_session_cache_needs_the_same_context_object() -> None:
    cache = SessionCache()
    one, two = ssl.create_default_context(), ssl.create_default_context()
    assert cache.take(one, "mx.example", "mx.example", 25) is None
    assert cache.take(two, "mx.example", "mx.example", 25) is None
