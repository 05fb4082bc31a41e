"""The name we give in EHLO/HELO, worked out once per process.

``socket.getfqdn()`` can block on a reverse lookup for seconds, so it runs
once, in a bounded way, and its answer is remembered.  When the machine has
no fully qualified name, the EHLO argument is an address literal of the
connection's own local address (RFC 5321 §4.1.4), which needs no lookup.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading

__all__ = ["address_literal", "default_local_hostname", "machine_fqdn"]

_LOOKUP_SECONDS = 2.0
_lock = threading.Lock()
_cached: list[str | None] = []


def _looks_qualified(name: str) -> bool:
    if not name or "." not in name or name.endswith((".localdomain", ".local", ".")):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name.isascii()
    return False


def machine_fqdn() -> str | None:
    """This machine's fully qualified name, or None; looked up once per process."""
    with _lock:
        if _cached:
            return _cached[0]
    found: list[str] = []

    def lookup() -> None:
        with contextlib.suppress(OSError):
            found.append(socket.getfqdn())

    name = socket.gethostname()
    if not _looks_qualified(name):
        worker = threading.Thread(target=lookup, name="smtpclient-getfqdn", daemon=True)
        worker.start()
        worker.join(_LOOKUP_SECONDS)
        name = found[0] if found else ""
    result = name if _looks_qualified(name) else None
    with _lock:
        if not _cached:
            _cached.append(result)
        return _cached[0]


def address_literal(address: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` for an IP address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


def default_local_hostname(local_address: str | None = None) -> str:
    """The machine's FQDN if it has one, else an address literal of
    *local_address* (the connection's own address), else ``[127.0.0.1]``."""
    fqdn = machine_fqdn()
    if fqdn is not None:
        return fqdn
    if local_address:
        try:
            return address_literal(local_address)
        except ValueError:
            pass
    return "[127.0.0.1]"
