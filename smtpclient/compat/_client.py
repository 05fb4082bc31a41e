"""``SMTP``: smtplib's client class, command for command, on the engine.

Return values, exceptions and side effects follow smtplib (the exception
classes are smtplib's own, or subclasses of them).  Deliberate differences,
each for safety, are listed in docs/migrating.md: every conversation runs
through the engine's Channel (deadlines, reply caps, the unsolicited-data
check), addresses and content are checked before MAIL, header injection is
refused, one thread at a time, certificates verified by default.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from email.message import Message
from smtplib import (
    SMTPConnectError,
    SMTPDataError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from typing import Any, Self

from smtpclient.compat._addresses import path
from smtpclient.compat._commands import Reply, canonical_body, check_content_rules
from smtpclient.compat._link import exclusive, namespace
from smtpclient.compat._message import envelope, flatten, needs_smtputf8
from smtpclient.compat._secure import SecureClient
from smtpclient.errors import ServerDisconnected
from smtpclient.errors.compat import AlreadyConnectedError

__all__ = ["SMTP", "SMTP_PORT", "default_timeout"]

SMTP_PORT = 25
# socket's "no timeout given" marker; smtplib uses the very same object.
default_timeout: Any = vars(sys.modules["socket"])["_GLOBAL_DEFAULT_TIMEOUT"]


class SMTP(SecureClient):
    """A connection to an SMTP server, with smtplib's ``SMTP`` interface.

    ``SMTP(host, port)`` connects at once and raises ``SMTPConnectError``
    unless the greeting is 220.  ``local_hostname`` defaults to
    ``socket.getfqdn()`` (or an address literal), computed when the object
    is made.  ``timeout`` bounds the connect and each whole reply.
    """

    default_port = SMTP_PORT

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = default_timeout,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self._setup_link()
        self._host = host
        self.timeout = timeout
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self._accepted: list[str] = []  # recipients accepted since MAIL (LMTP replies)
        self._late_refusals: dict[str, Reply] = {}  # LMTP: refused after the data
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, msg)
        self.local_hostname = (
            local_hostname if local_hostname is not None else _default_local_hostname()
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        """QUIT and close.

        Raises:
            SMTPResponseException: QUIT was not answered with 221 (the
                connection is closed all the same).
        """
        try:
            code, message = self.docmd("QUIT")
            if code != 221:
                raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    @exclusive
    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> Reply:
        """Connect to *host* (``"host:port"`` works when *port* is 0); return the greeting.

        Raises:
            AlreadyConnectedError: this object is connected (``close()``
                or ``quit()`` first); nothing is opened.
            OSError: the port in ``"host:port"`` is not a number, or the
                connection failed.
            SMTPServerDisconnected: the server closed before greeting.
        """
        if self._connected():
            raise AlreadyConnectedError(
                "already connected: call quit() or close() before connect()"
            )
        if source_address:
            self.source_address = source_address
        if not port and host.count(":") == 1:
            host, _, port_text = host.partition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        sys.audit("smtplib.connect", self, host, port)
        self._attach(self._get_socket(host, port, self.timeout), host)
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(msg))
        return code, msg

    @exclusive
    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes | bytearray | memoryview,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, Reply]:
        """Send one message; return ``{recipient: (code, text)}`` for refused recipients.

        SIZE is declared when the server offers it.  After a refusal the
        transaction is reset (RSET), or the connection closed after a 421.

        Raises:
            SMTPHeloError: neither EHLO nor HELO was accepted.
            SMTPSenderRefused: MAIL FROM was refused.
            SMTPRecipientsRefused: every recipient was refused.
            SMTPDataError: DATA or the message was refused.
            SMTPNotSupportedError: SMTPUTF8 asked for but not offered.
            UnicodeEncodeError: a str message is not ASCII, or an address
                has a non-ASCII local part without SMTPUTF8.
            ValueError: a malformed address or one with a control character
                (``InvalidAddressError``), a line over 998 octets
                (``LongLineError``), 8-bit content the server does not take
                (``EightBitContentError``).
            (Each of these before MAIL is sent.)
        """
        self.ehlo_or_helo_if_needed()
        body = canonical_body(msg)
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        # Decided before MAIL, so a refusal never leaves a transaction open.
        utf8 = self._utf8_asked(mail_options)
        path(from_addr, utf8=utf8, sender=True)
        for recipient in recipients:
            path(recipient, utf8=utf8)
        check_content_rules(body, eight_bit_ok=self._eight_bit_ok())
        esmtp_options: list[str] = []
        if self.does_esmtp:
            if self.has_extn("size"):
                esmtp_options.append(f"size={len(body)}")
            esmtp_options.extend(mail_options)
        code, resp = self.mail(from_addr, esmtp_options)
        if code != 250:
            self._after_refusal(code)
            raise SMTPSenderRefused(code, resp, from_addr)
        refused: dict[str, Reply] = {}
        for recipient in recipients:
            code, resp = self.rcpt(recipient, rcpt_options)
            if code not in (250, 251):
                refused[recipient] = (code, resp)
            if code == 421:
                self.close()
                raise SMTPRecipientsRefused(refused)
        if len(refused) == len(recipients):
            self._rset()
            raise SMTPRecipientsRefused(refused)
        try:
            code, resp = self._data(body)
        except SMTPDataError as exc:
            # smtplib leaves the transaction open here; reset it (or drop a
            # closing connection) so the next sendmail() is not refused.
            self._after_refusal(exc.smtp_code)
            raise
        if code != 250:
            self._after_refusal(code)
            raise SMTPDataError(code, resp)
        refused.update(self._late_refusals)
        return refused

    def _after_refusal(self, code: int) -> None:
        if code == 421:
            self.close()
        else:
            self._rset()

    @exclusive
    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, Reply]:
        """Send an ``email.message.Message``: the envelope comes from its headers
        unless given (Resent-* headers first), Bcc headers are not transmitted.

        Raises:
            ValueError: more than one block of Resent- headers.
            HeaderInjectionError: a header value holds a CR or LF that is
                not folding (a ``ValueError``); checked before MAIL.
            SMTPNotSupportedError: a non-ASCII address without SMTPUTF8.
            The exceptions of ``sendmail``.
        """
        self.ehlo_or_helo_if_needed()
        sender, recipients = envelope(msg, from_addr, to_addrs)
        international = needs_smtputf8(sender, recipients)
        if international:
            if not self.has_extn("smtputf8"):
                raise SMTPNotSupportedError(
                    "One or more source or delivery addresses require internationalized "
                    "email support, but the server does not advertise the required "
                    "SMTPUTF8 capability"
                )
            mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
        data = flatten(msg, international=international)
        return self.sendmail(sender, recipients, data, mail_options, rcpt_options)

    # --- ending -------------------------------------------------------------------------

    @exclusive
    def quit(self) -> Reply:
        """QUIT, then close; EHLO must be said again after a new connect().

        A server that answers QUIT by closing the connection has done what
        QUIT asks: that is a clean close, returned as ``(221, b"")``.

        Raises:
            SMTPServerDisconnected: not connected.
        """
        try:
            result = self.docmd("quit")
        except ServerDisconnected:
            # Raised only once connected (before, smtplib's own class is).
            result = (221, b"")
        finally:
            self.ehlo_resp = self.helo_resp = None
            self.esmtp_features = {}
            self.does_esmtp = False
            self.close()
        return result


def _default_local_hostname() -> str:
    """``socket.getfqdn()``, or an address literal when it is not qualified.

    Looked up in ``smtpclient.compat`` at call time, as smtplib does.
    """
    sock_module = namespace().socket
    fqdn: str = sock_module.getfqdn()
    if "." in fqdn:
        return fqdn
    address = "127.0.0.1"
    with contextlib.suppress(sock_module.gaierror):
        address = sock_module.gethostbyname(sock_module.gethostname())
    return f"[{address}]"
