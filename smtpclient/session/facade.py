"""``Session``: one SMTP conversation -- greeting, EHLO, STARTTLS, AUTH, then
mail transactions -- used by one thread at a time; a context manager that
says QUIT on the way out.  Its commands and replies go through its
``Channel`` (deadlines, the unsolicited-data check, 421 handling).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from typing import TYPE_CHECKING, TypeVar

from smtpclient.body import Body, BodySource
from smtpclient.credentials import CredentialsProvider
from smtpclient.envelope import DSN, Envelope, Recipient
from smtpclient.errors import (
    SessionBusyError,
    TLSRequiredError,
)
from smtpclient.message import prepare_message
from smtpclient.options import DEFAULT_MAX_RECIPIENTS, ConnectOptions
from smtpclient.protocol import commands
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply, ReplyLimits
from smtpclient.protocol.state import Event, SessionState, Stage, check_allowed
from smtpclient.session import auth as sasl
from smtpclient.session import fastpath, opening
from smtpclient.session.batch import send_batch
from smtpclient.session.channel import Channel
from smtpclient.session.config import SendConfig
from smtpclient.session.guard import Guard, exclusive
from smtpclient.session.transaction import send_one
from smtpclient.timeouts import Timeouts
from smtpclient.tls import TLSInfo, TLSMode, shared_verifying_context
from smtpclient.transport import Transport

if TYPE_CHECKING:
    from smtpclient.results import SendResult

__all__ = ["Session"]

R = TypeVar("R")


class Session:
    """A connected SMTP (or LMTP) session.  Create it with ``Session.connect``.

    A Session is the public face of one conversation; it owns the
    ``Channel`` (``channel``) every command and reply of the conversation
    goes through, and the ``SendConfig`` (``config``) its sends run with.

    Attributes:
        host, port: the server.
        greeting: the server's 220 greeting ``Reply``.
        extensions: what the latest EHLO advertised (``Extensions``).
        timeouts: the ``Timeouts`` in force.
        lmtp: True for an LMTP session (LHLO, a reply per recipient).
        options: the ``ConnectOptions`` it was opened with.
        tls_outcome: what opening decided about TLS (``TLSOutcome``); ``tls``
            is its ``TLSInfo`` once TLS is active, else None.
    """

    def __init__(self, channel: Channel, options: ConnectOptions, opened: opening.Opened) -> None:
        self.channel = channel
        self.options = options
        self.guard = Guard()
        self.host = options.host
        self.port = options.port
        self.timeouts = options.timeouts
        self.local_hostname = opened.local_hostname
        self.server_hostname = options.server_hostname
        self.lmtp = options.lmtp
        self.use_pipelining = options.use_pipelining
        self.use_chunking = options.use_chunking
        self.max_recipients = options.max_recipients
        self.allow_insecure_auth = options.allow_insecure_auth
        self.greeting: Reply | None = opened.greeting
        self.tls_outcome = opened.tls
        self._tls = opened.tls.info
        self.authenticated = False
        self.created = time.monotonic()
        self._learn(opened.ehlo_reply, opened.extensions)

    def _learn(self, ehlo_reply: Reply, extensions: Extensions) -> None:
        """A new EHLO reply (or TLS): the send configuration follows it."""
        self.ehlo_reply: Reply | None = ehlo_reply
        self.extensions = extensions
        self._configure()

    def _configure(self) -> None:
        peer = self.channel.transport.peer
        self.config = SendConfig.build(self.extensions, self._tls, self.options, peer)

    @property
    def tls(self) -> TLSInfo | None:
        """``TLSInfo`` once TLS is active, else None (results carry it)."""
        return self._tls

    @tls.setter
    def tls(self, info: TLSInfo | None) -> None:
        self._tls = info
        self._configure()

    @property
    def messages_sent(self) -> int:
        """Mail transactions completed on this connection."""
        return self.channel.messages_sent

    @property
    def last_used(self) -> float:
        """``time.monotonic()`` when the session last finished sending (or opened)."""
        return max(self.channel.last_used, self.created)

    @classmethod
    def connect(
        cls,
        host: str,
        port: int = 25,
        *,
        tls: TLSMode | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeouts: Timeouts | float | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        sock: socket.socket | None = None,
        lmtp: bool = False,
        use_pipelining: bool = True,
        use_chunking: bool = True,
        allow_insecure_auth: bool = False,
        reply_limits: ReplyLimits | None = None,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    ) -> Session:
        """Connect, read the greeting, say EHLO (LHLO for LMTP) and apply the TLS mode.

        *host* may be a Unix socket path (for LMTP).  With *tls* None, port
        465 means IMPLICIT and any other port OPPORTUNISTIC (a Unix socket:
        NONE).  *sock* is an already connected socket (a proxy tunnel).
        *use_pipelining* and *use_chunking* switch off PIPELINING and BDAT
        even when offered; *max_recipients* caps the recipients of one
        transaction (RFC 5321 §4.5.3.1.8 guarantees 100; more go in further
        transactions); *reply_limits* bounds what a reply may hold.  The
        arguments make a ``ConnectOptions`` (``open`` takes one).

        Raises:
            TypeError, ValueError: a malformed argument; nothing was connected.
            ConnectError, SMTPTimeoutError: no connection within the deadlines.
            GreetingRefused: the greeting was not 220.
            HeloRefused: neither EHLO nor HELO was accepted.
            TLSError: TLS was required (STARTTLS, IMPLICIT) and failed; a
                ``CertificateVerifyError`` when the certificate did not verify,
                a ``TLSRequiredError`` when STARTTLS was not offered.
            ServiceClosing: the server answered 421.
        """
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
        )
        return cls.open(options)

    @classmethod
    def open(cls, options: ConnectOptions) -> Session:
        """``connect`` with its arguments as one ``ConnectOptions``.

        Raises: as ``connect``.
        """
        channel, opened = opening.open_channel(options)
        return cls(channel, options, opened)

    def _hello(self) -> Reply:
        reply, extensions = opening.hello(self.channel, self.local_hostname, lmtp=self.lmtp)
        self._learn(reply, extensions)
        return reply

    @exclusive
    def ehlo(self) -> Reply:
        """Say EHLO again (it resets any transaction) and refresh ``extensions``."""
        return self._hello()

    @exclusive
    def starttls(self, ssl_context: ssl.SSLContext | None = None) -> TLSInfo:
        """Upgrade to TLS now (usually ``connect(tls=...)`` does this for you).

        Raises:
            TLSRequiredError: the server did not offer STARTTLS.
            StartTLSError: the server answered STARTTLS with something other than 220.
            TLSError: the handshake failed (the session is closed).
        """
        if not self.extensions.starttls:
            raise TLSRequiredError("the server did not offer STARTTLS", host=self.host)
        if self._tls is not None:
            raise RuntimeError("TLS is already active on this session")
        info = opening.starttls(
            self.channel,
            ssl_context or shared_verifying_context(),
            self.server_hostname,
            verify_error=self.tls_outcome.verify_error,
        )
        self._tls = info
        self.extensions = Extensions()  # forget everything learnt before TLS
        self._hello()
        return info

    @exclusive
    def login(self, username: str, password: str, *, mechanism: str | None = None) -> Reply:
        """Authenticate with a user name and password.

        The mechanism is the strongest both sides support (SCRAM-SHA-256,
        SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN) unless *mechanism* names one.

        Raises:
            InsecureAuthError: the session is not verified TLS (pass
                ``allow_insecure_auth=True`` to Session.connect() to allow it).
            ExtensionNotSupported: the server offers no usable mechanism.
            AuthenticationFailed: 535, the credentials were refused.
            AuthenticationError: another refusal (transient or permanent).
        """
        return self._authenticate(sasl.Password(username, password), mechanism)

    @exclusive
    def authenticate(
        self,
        credentials: CredentialsProvider,
        *,
        mechanism: str | None = None,
    ) -> Reply:
        """Authenticate with ``Password`` or ``OAuth2`` credentials, or a callable
        returning them (so that long-lived objects need not hold secrets).

        Raises: as ``login``.
        """
        return self._authenticate(credentials, mechanism)

    def _authenticate(self, credentials: CredentialsProvider, mechanism: str | None) -> Reply:
        check_allowed("auth", self.channel.state)
        reply = sasl.authenticate(
            self.channel,
            self.extensions,
            self.tls_outcome,
            self._tls,
            credentials,
            mechanism,
            allow_insecure=self.allow_insecure_auth,
        )
        self.authenticated = True
        return reply

    @exclusive
    def sendmail(
        self,
        sender: str,
        recipients: str | Recipient | Iterable[str | Recipient],
        data: BodySource,
        *,
        mail_options: Iterable[str] = (),
        rcpt_options: Iterable[str] = (),
        dsn: DSN | None = None,
        size: int | None = None,
        eight_bit: bool | None = None,
        smtputf8: bool = False,
        requiretls: bool = False,
        binary: bool = False,
    ) -> SendResult:
        """Send one message; return its ``SendResult`` (partial success included).

        *data* is bytes, str, a seekable binary file or an iterable of bytes.
        For an iterable, *size* and *eight_bit* declare what cannot be
        scanned.  *dsn* adds RFC 3461 options; *requiretls* asks for RFC
        8689 REQUIRETLS; *binary* sends BODY=BINARYMIME with BDAT.

        Raises:
            InvalidAddressError, TypeError: bad input; nothing was sent.
            ExtensionNotSupported, MessageTooLarge: the server cannot take
                this message as it is; nothing was sent.
            SenderRefused, RecipientsRefused, DataRefused: refused; the
                exception's ``result`` has each recipient's reply.
            TransientError: connection lost or timed out; ``outcome_unknown``
                is True when it happened after the final "." .
        """
        if (
            type(data) is bytes
            and dsn is None
            and size is None
            and eight_bit is None
            and not (smtputf8 or requiretls or binary)
            and mail_options == ()
            and rcpt_options == ()
        ):
            # No options and small bytes (the usual call): the fast path,
            # unless it finds something that needs the general one.
            result = fastpath.sendmail(self.channel, self.config, sender, recipients, data)
            if result is not None:
                return result
        envelope = Envelope.build(
            sender,
            recipients,
            dsn=dsn,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            smtputf8=smtputf8,
            requiretls=requiretls,
        )
        body = Body(data, size=size, eight_bit=eight_bit)
        return self._run(lambda: send_one(self.channel, self.config, envelope, body, binary=binary))

    @exclusive
    def send_message(
        self,
        message: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        *,
        mail_options: Iterable[str] = (),
        rcpt_options: Iterable[str] = (),
        dsn: DSN | None = None,
        requiretls: bool = False,
        tls_optional: bool = False,
        reencode_8bit: bool = False,
    ) -> SendResult:
        """Send an ``email.message.Message``.

        The envelope comes from the headers unless given (Resent-* headers
        win when present, as RFC 5322 §3.6.6 asks); Bcc and Resent-Bcc are
        never transmitted.  The message is serialised with SMTPUTF8 when an
        address or header needs it and the server offers it (otherwise
        header domains become A-labels), and lines over 998 octets are
        re-encoded.  *requiretls* asks for RFC 8689 REQUIRETLS;
        *tls_optional* adds the opposite request, a ``TLS-Required: No``
        header (RFC 8689 §5).  *reencode_8bit* re-encodes 8-bit parts as
        quoted-printable or base64 when the server lacks 8BITMIME (without
        it such a message raises ``ExtensionNotSupported``).

        Raises: as ``sendmail``; ValueError for both *requiretls* and
        *tls_optional*.
        """
        envelope, body = prepare_message(
            message,
            self.extensions,
            from_addr=from_addr,
            to_addrs=to_addrs,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            dsn=dsn,
            requiretls=requiretls,
            tls_optional=tls_optional,
            reencode_8bit=reencode_8bit,
        )
        return self._run(lambda: send_one(self.channel, self.config, envelope, body))

    @exclusive
    def send_many(
        self, messages: Iterable[Message | tuple[str, Sequence[str] | str, BodySource]]
    ) -> list[SendResult | Exception]:
        """Send several messages, pipelining across them when the server allows.

        Each item is an ``email.message.Message`` or a ``(sender, recipients,
        data)`` tuple.  Returns one outcome per item, in order: a
        ``SendResult`` or the exception that message met.  Once the
        connection fails, the remaining items are not attempted and get a
        ``TransientError`` saying so.
        """
        return self._run(lambda: send_batch(self.channel, self.config, list(messages)))

    def _run(self, work: Callable[[], R]) -> R:
        channel = self.channel
        channel.start_mail(self.timeouts.total)
        try:
            return work()
        finally:
            channel.finish()

    @exclusive
    def execute(self, command: str, *, stage: Stage = Stage.COMMAND) -> Reply:
        """Send any single-line command (e.g. "ETRN example.com") and return the
        reply without judging it.  Control characters are refused.

        Raises:
            InvalidAddressError: *command* holds a control character.
            ServiceClosing: the reply was 421.
        """
        commands.check_text(command, "command")
        return self._ask((command + "\r\n").encode("utf-8"), stage)

    def _ask(self, line: bytes, stage: Stage = Stage.COMMAND) -> Reply:
        """One command outside a transaction; its reply, not judged."""
        channel = self.channel
        check_allowed("command", channel.state)
        channel.check_unsolicited(stage)
        return channel.command(line, stage)

    def _simple(self, line: bytes, stage: Stage = Stage.COMMAND) -> Reply:
        reply = self._ask(line, stage)
        if not reply.is_positive:
            raise self.channel.error(stage, reply)
        return reply

    @exclusive
    def noop(self) -> Reply:
        """NOOP: check that the server is still there.  Raises CommandRefused on 4xx/5xx."""
        return self._simple(commands.noop())

    @exclusive
    def rset(self) -> Reply:
        """RSET: abandon the current transaction."""
        reply = self._simple(commands.rset(), Stage.RSET)
        self.channel.transition(Event.RESET)
        return reply

    @exclusive
    def vrfy(self, address: str) -> Reply:
        """VRFY: ask whether *address* is deliverable; returns the reply as is
        (252 "cannot verify" is common)."""
        return self._ask(commands.vrfy(address, utf8=self.extensions.smtputf8))

    @exclusive
    def expn(self, mailing_list: str) -> Reply:
        """EXPN: ask for the members of a list; returns the reply as is."""
        return self._ask(commands.expn(mailing_list, utf8=self.extensions.smtputf8))

    @exclusive
    def help(self, topic: str | None = None) -> Reply:
        """HELP: returns the reply as is."""
        return self._ask(commands.help_(topic))

    @property
    def state(self) -> SessionState:
        """Where the session stands (``SessionState``)."""
        return self.channel.state

    @property
    def usable(self) -> bool:
        """True while the session can send (not closed, broken or inherited)."""
        return self.channel.usable and not self.guard.inherited

    def idle_check(self) -> bool:
        """For pools: True when the session is usable and the server sent
        nothing while it sat idle (a 421, a hang-up or a stray reply all
        mean False).  Sends nothing; a session that fails it is closed."""
        return self.usable and self.channel.idle_check()

    def quit(self) -> Reply | None:
        """Say QUIT and close.  Never raises: a failed QUIT cannot undo a
        delivered message.  Returns the server's reply if one came in time."""
        guard = self.guard
        if guard.inherited:
            self.drop()
            return None
        if not guard.lock.acquire(blocking=False):
            raise SessionBusyError("this session is in use by another thread")
        try:
            return self.channel.quit()
        finally:
            guard.lock.release()

    def close(self) -> None:
        """Close the connection without QUIT.  Safe to call any number of times."""
        self.channel.close()

    def drop(self) -> None:
        """After fork: close this process's copy of the connection only (no
        QUIT, no TLS close_notify), leaving the parent's connection alone."""
        self.channel.close()

    # Names pool.py and poolparts.py still use (until they move to the public ones).
    _drop = drop

    @property
    def _transport(self) -> Transport:
        return self.channel.transport

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None or self.usable:
            self.quit()
        else:
            self.close()

    def __repr__(self) -> str:
        tls = f" {self.tls.version}" if self.tls else ""
        return f"<Session {self.host}:{self.port} {self.channel.state.value}{tls}>"
