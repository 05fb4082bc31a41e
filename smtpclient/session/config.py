"""Frozen values handed between the engine's parts.

``SendConfig`` is what a send needs to know about the session it runs on
(what the server offers, what the caller switched off, the TLS in force),
made once per EHLO so that the transaction code, ``send_many`` and the fast
path read the same facts without reaching into ``Session``.
``TLSOutcome`` is what the opening procedure decided about TLS.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpclient.options import ConnectOptions
from smtpclient.protocol.extensions import Extensions
from smtpclient.tls import TLSInfo

__all__ = ["SendConfig", "TLSOutcome"]


@dataclass(frozen=True, slots=True)
class TLSOutcome:
    """What opening a session decided about TLS.

    ``info`` is None for a plaintext session; then ``plaintext_reason`` says
    why (OPPORTUNISTIC: STARTTLS not offered, refused, or broken on an
    earlier connection).  ``verify_error`` says why an OPPORTUNISTIC session
    gave up verifying the certificate (it is in ``info.verify_error`` too).
    """

    info: TLSInfo | None = None
    plaintext_reason: str | None = None
    verify_error: str | None = None


@dataclass(frozen=True, slots=True)
class SendConfig:
    """The per-send facts of one session, fixed until the next EHLO or TLS change.

    ``pipelined`` and ``chunked`` are what is in force: offered by the server
    and not switched off by the caller (``use_pipelining``/``use_chunking``).
    """

    extensions: Extensions
    tls: TLSInfo | None
    host: str
    address: str  # the peer's address, for SendResult
    lmtp: bool
    max_recipients: int
    use_pipelining: bool
    use_chunking: bool
    pipelined: bool
    chunked: bool
    eightbitmime: bool
    size_offered: bool
    max_size: int | None

    @classmethod
    def build(
        cls,
        extensions: Extensions,
        tls: TLSInfo | None,
        options: ConnectOptions,
        address: str,
    ) -> SendConfig:
        """The configuration for *extensions* (the latest EHLO), *tls* and
        the caller's *options*, on a connection to *address*."""
        return cls(
            extensions=extensions,
            tls=tls,
            host=options.host,
            address=address,
            lmtp=options.lmtp,
            max_recipients=options.max_recipients,
            use_pipelining=options.use_pipelining,
            use_chunking=options.use_chunking,
            pipelined=options.use_pipelining and extensions.pipelining,
            chunked=options.use_chunking and extensions.chunking,
            eightbitmime=extensions.eightbitmime,
            size_offered="SIZE" in extensions,
            max_size=extensions.max_size,
        )
