"""AUTH (smtplib's ``auth``, ``login`` and the ``auth_*`` helpers) and STARTTLS."""

from __future__ import annotations

import base64
import hmac
import ssl
import sys
import warnings
from collections.abc import Callable
from smtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPNotSupportedError,
)

from smtpclient.compat._commands import CommandClient, Reply
from smtpclient.compat._link import exclusive
from smtpclient.errors import SMTPClientError, StartTLSError
from smtpclient.errors.compat import AlreadyEncryptedError
from smtpclient.protocol.reply import Reply as WireReply
from smtpclient.protocol.state import Stage
from smtpclient.tls import verifying_context

__all__ = ["SecureClient", "context_for"]

_MAXCHALLENGE = 5  # AUTH challenges answered before giving up, as smtplib
AuthObject = Callable[..., "str | None"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class SecureClient(CommandClient):
    """AUTH and STARTTLS on top of the plain commands."""

    user: str
    password: str
    _host: str
    _auth_challenge_count: int

    # --- AUTH ---------------------------------------------------------------------------

    @exclusive
    def auth(
        self, mechanism: str, authobject: AuthObject, *, initial_response_ok: bool = True
    ) -> Reply:
        """Run one SASL exchange: ``authobject(challenge)`` returns each response
        as str (``authobject()`` the initial one, or None).

        Raises:
            SMTPAuthenticationError: the result was neither 235 nor 503.
            SMTPException: the server kept sending challenges.
        """
        mechanism = mechanism.upper()
        self._auth_depth += 1
        try:
            initial = authobject() if initial_response_ok else None
            if initial is not None:
                code, resp = self.docmd("AUTH", f"{mechanism} {_b64(initial)}")
                self._auth_challenge_count = 1
            else:
                code, resp = self.docmd("AUTH", mechanism)
                self._auth_challenge_count = 0
            while code == 334:
                self._auth_challenge_count += 1
                answer = authobject(base64.decodebytes(resp))
                code, resp = self.docmd(_b64(answer or ""))
                if self._auth_challenge_count > _MAXCHALLENGE:
                    raise SMTPException(
                        "Server AUTH mechanism infinite loop. Last response: " + repr((code, resp))
                    )
        finally:
            self._auth_depth -= 1
        if code in (235, 503):
            return code, resp
        raise SMTPAuthenticationError(code, resp)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """CRAM-MD5 response (needs ``user`` and ``password``); no initial response."""
        if challenge is None:
            return None
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """PLAIN response (needs ``user`` and ``password``)."""
        return f"\0{self.user}\0{self.password}"

    def auth_login(self, challenge: bytes | None = None) -> str:
        """LOGIN responses: the user name first, then the password."""
        if challenge is None or self._auth_challenge_count < 2:
            return self.user
        return self.password

    @exclusive
    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> Reply:
        """AUTH with the first of CRAM-MD5, PLAIN, LOGIN the server offers,
        trying the next after a refusal.

        Like smtplib this authenticates on a plaintext connection too: call
        ``starttls()`` first.

        Raises:
            SMTPHeloError: neither EHLO nor HELO was accepted.
            SMTPNotSupportedError: AUTH is not offered.
            SMTPException: no offered mechanism is supported.
            SMTPAuthenticationError: every mechanism tried was refused.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        offered = self.esmtp_features["auth"].split()
        usable = [name for name in ("CRAM-MD5", "PLAIN", "LOGIN") if name in offered]
        if not usable:
            raise SMTPException("No suitable authentication method found.")
        self.user, self.password = user, password
        last_error: SMTPAuthenticationError | None = None
        for name in usable:
            method = getattr(self, "auth_" + name.lower().replace("-", "_"))
            try:
                code, resp = self.auth(name, method, initial_response_ok=initial_response_ok)
            except SMTPAuthenticationError as exc:
                last_error = exc
                continue
            if code in (235, 503):
                return code, resp
        assert last_error is not None
        raise last_error

    # --- TLS ----------------------------------------------------------------------------

    if sys.version_info >= (3, 12):

        @exclusive
        def starttls(self, *, context: ssl.SSLContext | None = None) -> Reply:
            """STARTTLS, then TLS with *context* (default: verifying, certifi CAs).

            Raises:
                SMTPNotSupportedError: the server does not offer STARTTLS.
                SMTPResponseException: STARTTLS was refused.
                ssl.SSLError: the handshake or certificate check failed
                    (the connection is closed).
            """
            return self._starttls(context)

    else:

        @exclusive
        def starttls(
            self,
            keyfile: str | None = None,
            certfile: str | None = None,
            context: ssl.SSLContext | None = None,
        ) -> Reply:
            """STARTTLS, then TLS with *context* (default: verifying, certifi CAs).

            *keyfile*/*certfile* (deprecated, as in smtplib) add a client
            certificate to the default context.

            Raises:
                ValueError: *context* together with *keyfile* or *certfile*.
                SMTPNotSupportedError: the server does not offer STARTTLS.
                SMTPResponseException: STARTTLS was refused.
                ssl.SSLError: the handshake or certificate check failed
                    (the connection is closed).
            """
            # Checked before STARTTLS is sent (smtplib checks after, leaving
            # the server waiting for a handshake that never comes).
            return self._starttls(context_for(context, keyfile, certfile))

    def _starttls(self, context: ssl.SSLContext | None) -> Reply:
        channel = self._live_channel()
        if isinstance(self.sock, ssl.SSLSocket) or channel.transport.tls is not None:
            raise AlreadyEncryptedError("the connection is already under TLS; nothing was sent")
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            # The server may still expect a handshake, or be confused: the
            # connection cannot be trusted in plaintext any more.
            self.close()
            raise StartTLSError(
                "STARTTLS refused; the connection is closed",
                reply=WireReply.from_wire(code, tuple(reply.split(b"\n"))),
                stage=Stage.STARTTLS,
                host=channel.host,
            )
        if context is None:
            context = verifying_context()
        # RFC 3207 §4.2: bytes that came before the handshake are unprotected
        # (possibly injected) and must never be read as a reply under TLS.
        dropped = channel.discard_received()
        if dropped and self.debuglevel > 0:
            self._print_debug("starttls: discarded", dropped, "bytes received before TLS")
        try:
            channel.transport.start_tls(
                context, self._tls_hostname(), channel.deadline(Stage.STARTTLS)
            )
        except SMTPClientError as exc:
            self.close()
            # smtplib raises the ssl module's own errors: so does compat.
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise cause from None
            raise
        self.sock = channel.transport.sock
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return code, reply

    def _tls_hostname(self, host: str | None = None) -> str | None:
        # smtplib uses the constructor's host only, which is "" after
        # SMTP() + connect(host): then the host actually connected to.
        return host or self._peer_host or self._host or None


def context_for(
    context: ssl.SSLContext | None, keyfile: str | None, certfile: str | None
) -> ssl.SSLContext | None:
    """The 3.11 keyfile/certfile arguments, checked and warned about as smtplib does.

    Raises:
        ValueError: *context* together with *keyfile* or *certfile*.
    """
    if context is not None and keyfile is not None:
        raise ValueError("context and keyfile arguments are mutually exclusive")
    if context is not None and certfile is not None:
        raise ValueError("context and certfile arguments are mutually exclusive")
    if keyfile is None and certfile is None:
        return context
    warnings.warn(
        "keyfile and certfile are deprecated, use a custom context instead",
        DeprecationWarning,
        stacklevel=3,
    )
    context = verifying_context()
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context
