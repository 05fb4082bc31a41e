"""``--transcript``: print the SMTP conversation as it happens.

The library logs every line it sends ("C:") and receives ("S:") on the
``smtpclient.transcript`` logger at DEBUG, with AUTH exchanges already
replaced by ``<redacted>`` and message content by its size.  This handler
prints those records; as a second guard it also blanks any secret the CLI
itself knows (the password it was given), in case one ever reached a log line.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = ["TranscriptPrinter", "transcript"]

LOGGER = "smtpclient.transcript"


class TranscriptPrinter(logging.Handler):
    """Write transcript records to *stream*, one line each.

    With ``show_host`` False the leading host name is dropped (one server,
    no need to repeat it); direct delivery talks to many hosts and keeps it.
    """

    def __init__(
        self, stream: TextIO, *, show_host: bool = True, secrets: Iterable[str] = ()
    ) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.show_host = show_host
        self.secrets = _variants(secrets)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            args = record.args
            fmt = record.msg
            if (
                not self.show_host
                and isinstance(args, tuple)
                and isinstance(fmt, str)
                and fmt.startswith("%s ")
            ):
                line = fmt[3:] % args[1:]
            else:
                line = record.getMessage()
            for secret in self.secrets:
                line = line.replace(secret, "<redacted>")
            self.stream.write(f"  {line}\n")
            self.stream.flush()
        except Exception:  # a broken pipe must not break the send
            self.handleError(record)


def _variants(secrets: Iterable[str]) -> list[str]:
    """Each secret as typed and base64-encoded (the shapes it could take on the wire)."""
    out = []
    for secret in secrets:
        if len(secret) >= 4:
            out += [secret, base64.b64encode(secret.encode("utf-8")).decode("ascii")]
    return out


@contextlib.contextmanager
def transcript(
    enabled: bool,
    stream: TextIO | None = None,
    *,
    show_host: bool = True,
    secrets: Iterable[str] = (),
) -> Iterator[None]:
    """While the block runs, print the transcript to *stream* (stderr) if *enabled*."""
    if not enabled:
        yield
        return
    logger = logging.getLogger(LOGGER)
    handler = TranscriptPrinter(stream or sys.stderr, show_host=show_host, secrets=secrets)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
