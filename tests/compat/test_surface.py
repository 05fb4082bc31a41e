"""smtpclient.compat has the running interpreter's smtplib surface: names,
signatures, exception classes, constants, helpers and the hooks that proxy
libraries and test suites replace."""

from __future__ import annotations

import inspect
import smtplib
import socket
import ssl
import types
from typing import Any

import pytest
import trustme
from servers.smtpd import AiosmtpdServer

import smtpclient.compat as compat

CLASSES = ("SMTP", "SMTP_SSL", "LMTP")
EXCEPTIONS = [
    name
    for name in dir(smtplib)
    if isinstance(getattr(smtplib, name), type)
    and issubclass(getattr(smtplib, name), BaseException)
]


def test_every_public_name_of_smtplib_exists() -> None:
    public = [name for name in dir(smtplib) if not name.startswith("_")]
    assert len(public) > 30
    assert [name for name in public if not hasattr(compat, name)] == []


def test_all_is_smtplibs() -> None:
    assert compat.__all__ == smtplib.__all__
    for name in compat.__all__:
        assert hasattr(compat, name)


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exception_classes_are_smtplibs_own(name: str) -> None:
    assert getattr(compat, name) is getattr(smtplib, name)


@pytest.mark.parametrize(
    "name", ["SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "CRLF", "bCRLF", "_MAXLINE"]
)
def test_constants_match(name: str) -> None:
    assert getattr(compat, name) == getattr(smtplib, name)


def test_oldstyle_auth_pattern_matches_the_same_lines() -> None:
    for line in ["AUTH=PLAIN LOGIN", "auth=cram-md5", "AUTH PLAIN", "SIZE 10"]:
        ours, theirs = compat.OLDSTYLE_AUTH.match(line), smtplib.OLDSTYLE_AUTH.match(line)
        assert (ours and ours.groups()) == (theirs and theirs.groups())


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (annotations differ: ours are typed)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _public_callables(cls: type) -> list[str]:
    return sorted(
        name
        for name in dir(cls)
        if (
            callable(getattr(cls, name))
            and (not name.startswith("_") or name in ("__init__", "__enter__", "__exit__"))
        )
        or name in ("_get_socket", "_print_debug", "_rset")
    )


@pytest.mark.parametrize("cls", CLASSES)
def test_constructor_signatures_match_the_running_python(cls: str) -> None:
    ours, theirs = getattr(compat, cls), getattr(smtplib, cls)
    assert _shape(ours.__init__) == _shape(theirs.__init__)


def test_the_default_timeout_is_sockets_own_marker() -> None:
    default = inspect.signature(compat.SMTP).parameters["timeout"].default
    assert default is socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", CLASSES)
def test_every_method_exists_with_the_same_signature(cls: str) -> None:
    ours, theirs = getattr(compat, cls), getattr(smtplib, cls)
    names = _public_callables(theirs)
    assert {"sendmail", "send_message", "starttls", "login", "auth_login", "vrfy"} <= set(names)
    for name in names:
        assert hasattr(ours, name), name
        assert _shape(getattr(ours, name)) == _shape(getattr(theirs, name)), name


@pytest.mark.parametrize(
    "attribute",
    [
        "debuglevel",
        "sock",
        "file",
        "helo_resp",
        "ehlo_resp",
        "does_esmtp",
        "ehlo_msg",
        "default_port",
    ],
)
@pytest.mark.parametrize("cls", CLASSES)
def test_class_attributes_match(cls: str, attribute: str) -> None:
    assert getattr(getattr(compat, cls), attribute) == getattr(getattr(smtplib, cls), attribute)


def test_instance_attributes_before_connecting() -> None:
    names = ["timeout", "source_address", "local_hostname", "command_encoding", "esmtp_features"]
    theirs = smtplib.SMTP(local_hostname="client.test", timeout=3, source_address=("127.0.0.1", 0))
    ours = compat.SMTP(local_hostname="client.test", timeout=3, source_address=("127.0.0.1", 0))
    assert [getattr(ours, n) for n in names] == [getattr(theirs, n) for n in names]
    assert ours.sock is None and ours.file is None


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "Name <user@example.com>",
        "<user@example.com>",
        "",
        "<>",
        "bare",
        "a@b@c",
    ],
)
def test_quoteaddr_matches(address: str) -> None:
    assert compat.quoteaddr(address) == smtplib.quoteaddr(address)


@pytest.mark.parametrize("text", ["a\nb", ".dot\r\n.\r", "x\rz\n.\n", ""])
def test_quotedata_matches(text: str) -> None:
    assert compat.quotedata(text) == smtplib.quotedata(text)


class _RecordingSocketModule(types.ModuleType):
    """Stands in for the socket module the way proxy libraries' shims do."""

    def __init__(self) -> None:
        super().__init__("fake_socket")
        self.connections: list[tuple[Any, ...]] = []
        self.fqdn_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    def create_connection(self, address: Any, timeout: Any, source: Any) -> socket.socket:
        self.connections.append((address, timeout, source))
        return socket.create_connection(address, timeout, source)

    def getfqdn(self, name: str = "") -> str:
        self.fqdn_calls += 1
        return "client.via-hook.test"


def test_replacing_the_module_socket_redirects_connections(
    smtpd: AiosmtpdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _RecordingSocketModule()
    monkeypatch.setattr(compat, "socket", fake)
    with compat.SMTP("127.0.0.1", smtpd.port, timeout=5) as client:
        assert client.ehlo()[0] == 250
        # The default EHLO name came from the replaced module, at call time.
        assert client.local_hostname == "client.via-hook.test"
    assert fake.connections == [(("127.0.0.1", smtpd.port), 5, None)]
    assert fake.fqdn_calls == 1


def test_get_socket_override_is_how_every_connection_is_made(smtpd: AiosmtpdServer) -> None:
    calls = []

    class ThroughProxy(compat.SMTP):
        def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
            # A proxying subclass: the requested address is only forwarded.
            calls.append((host, port, timeout))
            return socket.create_connection(("127.0.0.1", smtpd.port), timeout)

    with ThroughProxy("mail.example.invalid", 2525, local_hostname="c.test", timeout=4) as c:
        assert c.noop() == (250, b"OK")
    assert calls == [("mail.example.invalid", 2525, 4)]


def test_ssl_subclass_wraps_what_get_socket_returns(
    implicit_tls_server: AiosmtpdServer, tls: Any
) -> None:
    class ThroughProxy(compat.SMTP_SSL):
        def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
            raw = socket.create_connection(("127.0.0.1", implicit_tls_server.port), timeout)
            return self.context.wrap_socket(raw, server_hostname="localhost")

    with ThroughProxy(
        "mail.example.invalid", local_hostname="c.test", timeout=5, context=tls.client_context()
    ) as client:
        assert client.noop() == (250, b"OK")
        assert client.sock is not None and client.sock.version() is not None


@pytest.mark.parametrize("lib", [smtplib, compat], ids=["smtplib", "compat"])
def test_keyfile_and_certfile_exist_only_where_smtplib_has_them(lib: Any, tmp_path: Any) -> None:
    client_pem = tmp_path / "client.pem"
    trustme.CA().issue_cert("client.test").private_key_and_cert_chain_pem.write_to_path(
        str(client_pem)
    )
    context = ssl.create_default_context()
    if "keyfile" in inspect.signature(smtplib.SMTP_SSL).parameters:  # Python 3.11
        with pytest.raises(ValueError, match="mutually exclusive"):
            lib.SMTP_SSL(keyfile=str(client_pem), context=context)
        with pytest.raises(ValueError, match="mutually exclusive"):
            lib.SMTP_SSL(certfile=str(client_pem), context=context)
        with pytest.warns(DeprecationWarning, match="keyfile and certfile are deprecated"):
            client = lib.SMTP_SSL(certfile=str(client_pem), local_hostname="c.test")
        assert client.certfile == str(client_pem) and client.keyfile is None
        assert inspect.signature(lib.SMTP.starttls).parameters["keyfile"].kind.name == (
            "POSITIONAL_OR_KEYWORD"
        )
    else:  # 3.12 and later: gone, and what followed them is keyword-only
        with pytest.raises(TypeError):
            lib.SMTP_SSL(keyfile=str(client_pem))
        with pytest.raises(TypeError):
            lib.SMTP_SSL("", 0, None, None)
        assert "keyfile" not in inspect.signature(lib.SMTP.starttls).parameters


def test_default_contexts_verify() -> None:
    ours = compat.SMTP_SSL(local_hostname="c.test")
    assert ours.context.verify_mode == ssl.CERT_REQUIRED and ours.context.check_hostname
    theirs = smtplib.SMTP_SSL(local_hostname="c.test")
    assert theirs.context.verify_mode == ssl.CERT_NONE  # what compat fixes
