"""Which process owns the client end of a loopback TCP connection (Linux
/proc), so a test can kill exactly the worker that is mid-conversation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["pid_of_client_port"]


def _inode_of_local_port(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return fields[9]
    return None


def pid_of_client_port(port: int, candidates: Iterable[int]) -> int | None:
    """The PID among *candidates* holding the socket whose local port is *port*."""
    inode = _inode_of_local_port(port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return pid
    return None
