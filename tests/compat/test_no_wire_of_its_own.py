"""compat has no wire client of its own: no module of smtpclient/compat reads
or writes a socket itself (everything goes through the engine's Channel)."""

from __future__ import annotations

import ast
from pathlib import Path

import smtpclient.compat

COMPAT = Path(smtpclient.compat.__file__).parent
SOCKET_IO = {"recv", "recv_into", "recvfrom", "sendall", "sendto", "makefile", "sendfile"}


def _socket_io_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        owner = node.func.value
        # compat's own smtplib-style send() is called on self; any other .send() is IO.
        own = isinstance(owner, ast.Name) and owner.id == "self"
        if name in SOCKET_IO or (name == "send" and not own):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


def test_no_compat_module_reads_or_writes_a_socket() -> None:
    modules = sorted(COMPAT.glob("*.py"))
    assert len(modules) >= 5
    offenders = {
        path.name: calls
        for path in modules
        if (calls := _socket_io_calls(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def test_the_check_finds_socket_io() -> None:
    tree = ast.parse("sock.sendall(b'x')\nself.sock.recv(1)\nself.send('x')\n")
    assert _socket_io_calls(tree) == ["line 1: sock.sendall", "line 2: self.sock.recv"]
