"""``SMTP_SSL`` (TLS from the first byte) and ``LMTP`` (RFC 2033), as in smtplib."""

from __future__ import annotations

import ssl
import sys
from typing import Any

from smtpclient.compat._client import SMTP, default_timeout
from smtpclient.compat._commands import Reply
from smtpclient.compat._link import exclusive, namespace
from smtpclient.compat._secure import context_for
from smtpclient.errors.compat import AlreadyConnectedError
from smtpclient.tls import verifying_context

__all__ = ["LMTP", "LMTP_PORT", "SMTP_SSL", "SMTP_SSL_PORT"]

SMTP_SSL_PORT = 465
LMTP_PORT = 2003


class SMTP_SSL(SMTP):
    """SMTP over TLS from the first byte (port 465 by default).

    Without *context* the certificate is verified against certifi's CAs
    and the host name (smtplib verifies nothing by default).
    """

    default_port = SMTP_SSL_PORT
    context: ssl.SSLContext

    if sys.version_info >= (3, 12):

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            *,
            timeout: float | None = default_timeout,
            source_address: tuple[str, int] | None = None,
            context: ssl.SSLContext | None = None,
        ) -> None:
            self.context = context if context is not None else verifying_context()
            super().__init__(host, port, local_hostname, timeout, source_address)

    else:

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            keyfile: str | None = None,
            certfile: str | None = None,
            timeout: float | None = default_timeout,
            source_address: tuple[str, int] | None = None,
            context: ssl.SSLContext | None = None,
        ) -> None:
            chosen = context_for(context, keyfile, certfile)
            self.keyfile = keyfile
            self.certfile = certfile
            self.context = chosen if chosen is not None else verifying_context()
            super().__init__(host, port, local_hostname, timeout, source_address)

    def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
        """Connect (through ``SMTP._get_socket``) and complete the TLS handshake.

        Raises:
            ssl.SSLError: the handshake or the certificate check failed.
            OSError: as ``SMTP._get_socket``.
        """
        if self.debuglevel > 0:
            self._print_debug("connect:", (host, port))
        plain = super()._get_socket(host, port, timeout)
        try:
            return self.context.wrap_socket(plain, server_hostname=self._tls_hostname(host))
        except BaseException:
            plain.close()
            raise


class LMTP(SMTP):
    """LMTP (RFC 2033): LHLO instead of EHLO, TCP or a Unix socket path
    (a host starting with "/").

    After the message, LMTP gives one reply per accepted recipient.
    smtplib reads only the first and leaves the rest to be mistaken for
    the replies of later commands; here all are read, ``data()`` returns
    the first success (or the first failure when none succeeded) and
    ``sendmail()`` adds the recipients refused after the data to the
    dict it returns.
    """

    ehlo_msg = "lhlo"

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = default_timeout,
    ) -> None:
        super().__init__(
            host,
            port,
            local_hostname=local_hostname,
            source_address=source_address,
            timeout=timeout,
        )

    @exclusive
    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> Reply:
        """Connect over TCP, or to a Unix socket when *host* starts with "/".

        Raises:
            AlreadyConnectedError: this object is connected.
            ValueError: a timeout of 0.
            OSError: the connection failed.
        """
        if host[0] != "/":
            return super().connect(host, port, source_address=source_address)
        if self._connected():
            raise AlreadyConnectedError(
                "already connected: call quit() or close() before connect()"
            )
        if self.timeout is not None and not self.timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        socket_module = namespace().socket
        sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
        try:
            if self.timeout is not default_timeout:
                sock.settimeout(self.timeout)
            sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._print_debug("connect fail:", host)
            sock.close()
            self.close()
            raise
        self._attach(sock, host)
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("connect:", msg)
        return code, msg

    def _final_replies(self) -> int:
        # RFC 2033 §4.2: one reply per recipient accepted since MAIL.
        return len(self._accepted) or 1

    def _final_reply(self) -> Reply:
        outcomes = []
        for recipient in self._accepted or [""]:
            outcomes.append((recipient, super()._final_reply()))
        self._late_refusals = {
            recipient: reply for recipient, reply in outcomes if reply[0] != 250 and recipient
        }
        for _, reply in outcomes:
            if reply[0] == 250:
                return reply
        return outcomes[0][1]
