"""Finding and opening a server's sockets: bounded name resolution and one
TCP connect within a deadline.

``getaddrinfo`` has no timeout of its own, so a name lookup runs in a
short-lived daemon thread that is waited for no longer than the deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading

from smtpclient.errors import ConnectError, SMTPTimeoutError
from smtpclient.protocol.state import Stage
from smtpclient.timeouts import Deadline

__all__ = [
    "Address",
    "ack_at_once",
    "format_sockaddr",
    "is_ip_literal",
    "local_ip",
    "open_socket",
    "peer_name",
    "peer_port",
    "resolve",
]

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux

# (family, sockaddr) as getaddrinfo gives them.
Address = tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int] | str]


def is_ip_literal(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 when *host* is an IP address ("[...]" allowed
    around one), else None."""
    bare = host.strip("[]")
    # inet_pton is strict (no "1.2.3", no leading zeros) and costs a
    # fraction of ipaddress's parsing; a scoped address ("%zone") falls
    # through to ipaddress.
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, bare)
        except (OSError, ValueError):
            continue
        return family
    if "%" not in bare:
        return None
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def resolve(host: str, port: int, deadline: Deadline) -> list[Address]:
    """Resolve *host* to socket addresses within *deadline*.

    ``getaddrinfo`` has no timeout of its own, so a name lookup runs in a
    short-lived daemon thread that is waited for no longer than the deadline.

    Raises:
        ConnectError: the name does not resolve.
        SMTPTimeoutError: resolution took longer than the deadline.
    """
    family = is_ip_literal(host)
    if family is not None:
        bare = host.strip("[]")
        if family == socket.AF_INET6:
            return [(family, (bare, port, 0, 0))]
        return [(family, (bare, port))]
    outcome: list[object] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name="smtpclient-getaddrinfo", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if not outcome:
        raise SMTPTimeoutError(f"resolving {host!r} timed out", stage=Stage.DNS, host=host)
    result = outcome[0]
    if isinstance(result, OSError):
        raise ConnectError(f"cannot resolve {host!r}: {result}", stage=Stage.DNS, host=host)
    assert isinstance(result, list)
    seen: list[Address] = []
    for family_, _type, _proto, _name, sockaddr in result:
        item = (family_, sockaddr)
        if item not in seen:
            seen.append(item)
    return seen


def open_socket(
    family: socket.AddressFamily,
    sockaddr: object,
    deadline: Deadline,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """Open and connect one TCP socket within *deadline*; closes it on failure."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.remaining())
        if source_address is not None:
            sock.bind(source_address)
        sock.connect(sockaddr)  # type: ignore[arg-type]
        # Commands are written in complete groups: never wait for Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def format_sockaddr(sockaddr: object) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = sockaddr[0], sockaddr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(sockaddr)


def local_ip(sock: socket.socket) -> str | None:
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return str(name[0]) if isinstance(name, tuple) else None


def peer_name(sock: socket.socket) -> str:
    try:
        return format_sockaddr(sock.getpeername())
    except OSError:
        return "?"


def peer_port(sock: socket.socket) -> int:
    """The peer's TCP port (0 for a Unix socket or an unconnected one)."""
    try:
        name = sock.getpeername()
    except OSError:
        return 0
    return int(name[1]) if isinstance(name, tuple) else 0


def ack_at_once(sock: socket.socket) -> None:
    """Acknowledge the next segments received at once rather than after the
    delayed-ACK timer (Linux TCP_QUICKACK; elsewhere nothing).

    Why: right after a TLS 1.3 handshake the server sends its session
    tickets and, with Nagle's algorithm on (Postfix leaves it on), holds
    its next small write -- the reply we wait for -- until the tickets are
    acknowledged.  When our command left before the tickets arrived, no
    reply carries that acknowledgement and Linux delays it by 40 ms.  The
    option is not sticky (the kernel leaves quick-ack mode by itself), so
    it is set again where it matters.
    """
    if _QUICKACK is None or sock.family not in _TCP_FAMILIES:
        return
    with contextlib.suppress(OSError):  # only a speed-up
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
