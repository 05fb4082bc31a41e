"""``ConnectOptions``: how to open one SMTP (or LMTP) session, as one frozen value.

Every face that opens a session builds one -- ``Session.connect``,
``smtpclient.send``, ``Mailer`` (through ``ServerSettings``, whose pool key
is made from it) and the Django backend -- from the same keyword arguments,
so an option accepted by one is accepted by all and checked in one place.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from smtpclient.protocol import commands
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.sockets import is_ip_literal
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode, default_mode

__all__ = ["DEFAULT_MAX_RECIPIENTS", "ConnectOptions"]

DEFAULT_MAX_RECIPIENTS = 100  # per transaction (RFC 5321 §4.5.3.1.8 guarantees 100)


@dataclass(frozen=True)
class ConnectOptions:
    """Where to connect and how to talk: ``Session.connect``'s arguments.

    *host* may be a Unix socket path (LMTP); *sock* an already connected
    socket (a proxy tunnel).  *tls* None means the port's default (465:
    IMPLICIT, any other port: OPPORTUNISTIC, a Unix socket: NONE);
    ``tls_mode`` is the mode in force.  *timeouts* may be given as a number
    of seconds (every stage) and is stored as ``Timeouts``.
    *server_hostname* defaults to *host* (an IP literal: its address).
    *auth_mechanism* is used by the faces that log in for the caller.

    Raises:
        TypeError, ValueError: a malformed option (nothing was connected);
            ``InvalidAddressError`` (a ``ValueError``) for a host or
            *local_hostname* holding control characters.
    """

    host: str
    port: int = 25
    tls: TLSMode | None = None
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts.submission)
    local_hostname: str | None = None
    source_address: tuple[str, int] | None = None
    sock: socket.socket | None = None
    lmtp: bool = False
    use_pipelining: bool = True
    use_chunking: bool = True
    allow_insecure_auth: bool = False
    reply_limits: ReplyLimits | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    auth_mechanism: str | None = None

    def __post_init__(self) -> None:
        host, port = self.host, self.port
        if not isinstance(host, str) or not host:
            raise TypeError("host must be a non-empty str")
        commands.check_text(host, "host")  # before any lookup: "\r\n" is no name
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be an int between 1 and 65535, not {port!r}")
        if self.local_hostname is not None:
            commands.ehlo(self.local_hostname)  # refused here, before connecting
        recipients = self.max_recipients
        if not isinstance(recipients, int) or isinstance(recipients, bool) or recipients < 1:
            raise ValueError(f"max_recipients must be a positive int, not {recipients!r}")
        if self.tls is not None and not isinstance(self.tls, TLSMode):
            raise TypeError(f"tls must be a TLSMode, not {type(self.tls).__name__}")
        given: object = self.timeouts  # a plain number is accepted, as everywhere
        if not isinstance(given, Timeouts):
            object.__setattr__(self, "timeouts", Timeouts.coerce(given))  # type: ignore[arg-type]
        if self.server_hostname is None and not self.is_unix:
            # The certificate is checked against this name (and it is sent as
            # SNI); an IP literal is checked against the certificate's IP
            # entries (ssl sends no SNI for an address).
            name = host.strip("[]") if is_ip_literal(host) is not None else host
            object.__setattr__(self, "server_hostname", name)

    @property
    def is_unix(self) -> bool:
        """True when *host* is a Unix socket path."""
        return self.host.startswith("/")

    @property
    def tls_mode(self) -> TLSMode:
        """The TLS mode in force (the port's default when ``tls`` is None)."""
        if self.tls is not None:
            return self.tls
        return TLSMode.NONE if self.is_unix else default_mode(self.port)
