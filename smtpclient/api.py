"""``smtpclient.send``: one message, one connection, in one call."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from typing import TYPE_CHECKING

from smtpclient.body import BodySource
from smtpclient.credentials import Credentials, login_credentials
from smtpclient.envelope import DSN
from smtpclient.errors import InsecureAuthError
from smtpclient.options import DEFAULT_MAX_RECIPIENTS, ConnectOptions
from smtpclient.protocol.reply import ReplyLimits
from smtpclient.results import SendResult
from smtpclient.server import naming_the_call
from smtpclient.session import Session
from smtpclient.session.budget import overall
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSMode

if TYPE_CHECKING:
    from smtpclient.dkim import DKIMSigner

__all__ = ["send"]


def send(
    message: Message | BodySource,
    *,
    host: str,
    port: int = 587,
    tls: TLSMode | None = None,
    ssl_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    credentials: Credentials | Callable[[], Credentials] | None = None,
    timeouts: Timeouts | float | None = None,
    local_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Iterable[str] = (),
    rcpt_options: Iterable[str] = (),
    dsn: DSN | None = None,
    allow_insecure_auth: bool = False,
    sock: socket.socket | None = None,
    lmtp: bool = False,
    use_pipelining: bool = True,
    use_chunking: bool = True,
    reply_limits: ReplyLimits | None = None,
    max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    auth_mechanism: str | None = None,
    dkim: DKIMSigner | Sequence[DKIMSigner] | None = None,
) -> SendResult:
    """Connect to *host*, log in if credentials are given, send, and QUIT.

    *message* is an ``email.message.Message`` (the envelope comes from its
    headers unless *sender*/*recipients* are given) or raw content (bytes,
    str, a binary file, an iterable of bytes) with *sender* and *recipients*.
    The connection options are ``Session.connect``'s (one ``ConnectOptions``
    is made of them); *auth_mechanism* chooses the SASL mechanism.
    ``timeouts.total`` bounds the whole call, from the first connect attempt
    through the final reply (the wait after the final "." keeps the
    ``data_done`` floor).
    *dkim* (a ``DKIMSigner`` or several) signs the message before it is
    sent (``smtpclient.dkim``; raw content must then be bytes or str).

    Raises:
        TypeError, ValueError: bad arguments (a ``DKIMError`` among them);
            nothing was sent.
        SMTPClientError: as ``Session.connect``, ``Session.login`` and
            ``Session.sendmail`` raise them.
    """
    credentials = login_credentials(username, password, credentials)
    if not isinstance(message, Message) and (sender is None or recipients is None):
        # Checked before connecting: nothing is sent for a call that cannot work.
        raise ValueError("raw message data needs sender= and recipients=")
    if dkim is not None:
        # Signed before connecting: the same bytes whatever the server offers.
        from smtpclient.dkim import sign_message, sign_raw, signers_from  # noqa: PLC0415

        signers = signers_from(dkim)
        if isinstance(message, Message):
            sender, recipients, message = sign_message(
                message, signers, sender=sender, recipients=recipients
            )
        elif signers:
            message = sign_raw(message, signers)
    options = ConnectOptions(
        host,
        port,
        tls=tls,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        timeouts=Timeouts.coerce(timeouts),
        local_hostname=local_hostname,
        source_address=source_address,
        sock=sock,
        lmtp=lmtp,
        use_pipelining=use_pipelining,
        use_chunking=use_chunking,
        allow_insecure_auth=allow_insecure_auth,
        reply_limits=reply_limits,
        max_recipients=max_recipients,
        auth_mechanism=auth_mechanism,
    )
    # One total for the whole call: connect, AUTH and the send (not per step).
    with overall(options.timeouts.total), Session.open(options) as session:
        if credentials is not None:
            try:
                session.authenticate(credentials, mechanism=options.auth_mechanism)
            except InsecureAuthError as exc:
                raise naming_the_call(exc, "smtpclient.send()") from None
        if isinstance(message, Message):
            return session.send_message(
                message,
                sender,
                recipients,
                mail_options=mail_options,
                rcpt_options=rcpt_options,
                dsn=dsn,
            )
        assert sender is not None  # checked above
        assert recipients is not None
        return session.sendmail(
            sender,
            recipients,
            message,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            dsn=dsn,
        )
