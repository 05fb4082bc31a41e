"""One SMTP conversation: greeting, EHLO, STARTTLS, AUTH, then mail transactions.

``Session.connect(...)`` returns a session that has read the greeting, said
EHLO and, as the TLS mode asks, upgraded to TLS.  It is used by one thread at
a time (a second thread gets ``SessionBusyError``, never interleaved bytes)
and is a context manager that says QUIT on the way out.

Every wait has a deadline from ``Timeouts``; any lost connection, timeout or
protocol error closes the session at once (it is never reused, so a late
reply can never be paired with a later command), and a 421 reply at any
stage closes it without RSET.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar, cast

from smtpclient import auth as sasl
from smtpclient import fastpath, opening
from smtpclient.batch import send_batch
from smtpclient.body import Body, BodySource
from smtpclient.envelope import DSN, Envelope, Recipient
from smtpclient.errors import (
    ExtensionNotSupported,
    InsecureAuthError,
    SessionBusyError,
    SessionClosedError,
    SMTPClientError,
    TLSRequiredError,
)
from smtpclient.hostname import default_local_hostname
from smtpclient.message import prepare_message
from smtpclient.protocol import commands
from smtpclient.protocol.extensions import Extensions
from smtpclient.protocol.reply import Reply, ReplyLimits
from smtpclient.protocol.state import SessionState, Stage, check_allowed
from smtpclient.timeouts import Deadline, Timeouts
from smtpclient.tls import TLSInfo, TLSMode, verifying_context
from smtpclient.transaction import send_one
from smtpclient.transport import Transport
from smtpclient.wire import Wire

if TYPE_CHECKING:
    from smtpclient.results import SendResult

__all__ = ["Session"]

log = logging.getLogger(__name__)
transcript = logging.getLogger("smtpclient.transcript")

P = ParamSpec("P")
R = TypeVar("R")

# This process's id, kept current across fork(): os.getpid() is a system
# call, and every send asks (twice through a pool).
_pid = os.getpid()


def _forked() -> None:
    global _pid  # noqa: PLW0603 (one value per process)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def exclusive(
    method: Callable[Concatenate[Session, P], R],
) -> Callable[Concatenate[Session, P], R]:
    """Run *method* holding the session's lock; a second thread gets an error."""

    @functools.wraps(method)
    def wrapper(self: Session, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._pid != _pid:
            # Inherited across fork(): the parent owns this connection.
            self._drop()
            raise SessionClosedError("this session was opened by another process (fork)")
        if not self._lock.acquire(blocking=False):
            raise SessionBusyError(
                "this session is in use by another thread; use a Mailer or one session per thread"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()

    return cast("Callable[Concatenate[Session, P], R]", wrapper)


class Session(Wire):
    """A connected SMTP (or LMTP) session.  Create it with ``Session.connect``.

    Attributes:
        host, port: the server.
        greeting: the server's 220 greeting ``Reply``.
        extensions: what the latest EHLO advertised (``Extensions``).
        tls: ``TLSInfo`` once TLS is active, else None.
        timeouts: the ``Timeouts`` in force.
        lmtp: True for an LMTP session (LHLO, a reply per recipient).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        host: str,
        port: int,
        timeouts: Timeouts,
        local_hostname: str | None = None,
        server_hostname: str | None = None,
        lmtp: bool = False,
        use_pipelining: bool = True,
        use_chunking: bool = True,
        allow_insecure_auth: bool = False,
        reply_limits: ReplyLimits | None = None,
        max_recipients: int = 100,
    ) -> None:
        super().__init__(transport, host=host, timeouts=timeouts, reply_limits=reply_limits)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.port = port
        self.local_hostname = local_hostname or default_local_hostname(transport.local_address)
        self.server_hostname = server_hostname
        self.lmtp = lmtp
        self.use_pipelining = use_pipelining
        self.use_chunking = use_chunking
        self.max_recipients = max_recipients
        self.allow_insecure_auth = allow_insecure_auth
        self.greeting: Reply | None = None
        self.ehlo_reply: Reply | None = None
        self.extensions = Extensions()
        self.tls: TLSInfo | None = transport.tls
        self._verify_error: str | None = None  # why OPPORTUNISTIC gave up verifying
        self._plaintext_reason: str | None = None  # why OPPORTUNISTIC stayed plaintext
        self._tls_handshake_started = False
        self.authenticated = False
        self.created = time.monotonic()
        self.last_used = self.created
        self.messages_sent = 0
        self._fast_features: fastpath.Features | None = None  # for the current extensions

    # --- opening ----------------------------------------------------------------

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
        max_recipients: int = 100,
    ) -> Session:
        """Connect, read the greeting, say EHLO (LHLO for LMTP) and apply the TLS mode.

        *host* may be a Unix socket path (for LMTP).  With *tls* None, port
        465 means IMPLICIT and any other port OPPORTUNISTIC (a Unix socket:
        NONE).  *sock* is an already connected socket (a proxy tunnel).
        *use_pipelining* and *use_chunking* switch off PIPELINING and BDAT
        even when offered; *max_recipients* caps the recipients of one
        transaction (RFC 5321 §4.5.3.1.8 guarantees 100; more go in further
        transactions).

        Raises:
            ConnectError, SMTPTimeoutError: no connection within the deadlines.
            GreetingRefused: the greeting was not 220.
            HeloRefused: neither EHLO nor HELO was accepted.
            TLSError: TLS was required (STARTTLS, IMPLICIT) and failed; a
                ``CertificateVerifyError`` when the certificate did not verify,
                a ``TLSRequiredError`` when STARTTLS was not offered.
            ServiceClosing: the server answered 421.
        """
        return opening.connect(
            cls,
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            timeouts=timeouts,
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

    # --- EHLO, TLS, AUTH --------------------------------------------------------------

    def _hello(self) -> Reply:
        check_allowed("ehlo", self._state)
        if self._parser.buffered:
            # A reply before EHLO was sent (a second greeting, a server talking
            # out of turn): paired with EHLO it would shift every later reply.
            self._check_unsolicited(Stage.EHLO)
        name = self.local_hostname
        if self.lmtp:
            reply = self._command(commands.lhlo(name), Stage.EHLO)
        else:
            reply = self._command(commands.ehlo(name), Stage.EHLO)
            if reply.code in (500, 502):  # EHLO not recognised: an RFC 821 server
                reply = self._command(commands.helo(name), Stage.EHLO)
                if reply.code == 250:
                    self.ehlo_reply = reply
                    self.extensions = Extensions(reply.lines[0].split(" ", 1)[0], esmtp=False)
                    self._state = SessionState.READY
                    return reply
        if reply.code != 250:
            # RFC 5321 §4.3.2: success is 250 only; another 2xx (a repeated
            # 220 greeting) means the replies are out of step: ProtocolError.
            raise self._error(Stage.EHLO, reply)
        self.ehlo_reply = reply
        self.extensions = Extensions.parse(reply)
        self._state = SessionState.READY
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
        opening.starttls(self, ssl_context or verifying_context())
        assert self.tls is not None
        return self.tls

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
        credentials: sasl.Credentials | Callable[[], sasl.Credentials],
        *,
        mechanism: str | None = None,
    ) -> Reply:
        """Authenticate with ``Password`` or ``OAuth2`` credentials, or a callable
        returning them (so that long-lived objects need not hold secrets).

        Raises: as ``login``.
        """
        return self._authenticate(credentials, mechanism)

    def _authenticate(
        self,
        credentials: sasl.Credentials | Callable[[], sasl.Credentials],
        mechanism: str | None,
    ) -> Reply:
        check_allowed("auth", self._state)
        if not self.allow_insecure_auth and not (self.tls is not None and self.tls.verified):
            raise InsecureAuthError(self._insecure_auth_reason(), stage=Stage.AUTH, host=self.host)
        if "AUTH" not in self.extensions:
            raise ExtensionNotSupported(
                "the server does not offer AUTH", extension="AUTH", host=self.host
            )
        if callable(credentials) and not isinstance(credentials, sasl.Credentials):
            # A provider: asked only now, when the secret is about to be used.
            credentials = credentials()
        self._check_unsolicited(Stage.AUTH)
        reply = sasl.run(self, credentials, mechanism)
        self.authenticated = True
        return reply

    def _insecure_auth_reason(self) -> str:
        if self.tls is None:
            why = "the session is not encrypted"
            if self._plaintext_reason:
                why += f" ({self._plaintext_reason})"
            elif not self.extensions.starttls:
                why += " (the server did not offer STARTTLS)"
            fix = "connect with tls=TLSMode.STARTTLS (port 587) or tls=TLSMode.IMPLICIT (port 465)"
        else:
            why = "the server's TLS certificate was not verified"
            if self.tls.verify_error:
                why += f" ({self.tls.verify_error})"
            fix = "pass ssl_context= with the CA that signed it"
        return (
            f"refusing to send credentials: {why}; {fix}, or pass allow_insecure_auth=True "
            "to Session.connect() if you accept the risk"
        )

    # AUTH needs the raw wire; auth.run() drives these.
    def _auth_write(self, data: bytes, shown: str) -> None:
        self._write(data, Stage.AUTH, shown=shown)

    def _auth_read(self) -> Reply:
        return self._read(Stage.AUTH)

    def _auth_error(self, reply: Reply, message: str | None = None) -> SMTPClientError:
        return self._error(Stage.AUTH, reply, message)

    # --- sending ------------------------------------------------------------------------

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
            result = fastpath.sendmail(self, sender, recipients, data)
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
        return self._run(lambda: send_one(self, envelope, body, binary=binary))

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
        return self._run(lambda: send_one(self, envelope, body))

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
        return self._run(lambda: send_batch(self, list(messages)))

    def _run(self, work: Callable[[], R]) -> R:
        check_allowed("mail", self._state)
        self._total = Deadline(self.timeouts.total, Stage.MAIL) if self.timeouts.total else None
        try:
            return work()
        finally:
            self._total = None
            self.last_used = time.monotonic()

    # --- other commands -----------------------------------------------------------------

    @exclusive
    def execute(self, command: str, *, stage: Stage = Stage.COMMAND) -> Reply:
        """Send any single-line command (e.g. "ETRN example.com") and return the
        reply without judging it.  Control characters are refused.

        Raises:
            InvalidAddressError: *command* holds a control character.
            ServiceClosing: the reply was 421.
        """
        check_allowed("command", self._state)
        commands.check_text(command, "command")
        self._check_unsolicited(stage)
        return self._command((command + "\r\n").encode("utf-8"), stage)

    def _simple(self, line: bytes, stage: Stage = Stage.COMMAND) -> Reply:
        check_allowed("command", self._state)
        self._check_unsolicited(stage)
        reply = self._command(line, stage)
        if not reply.is_positive:
            raise self._error(stage, reply)
        return reply

    @exclusive
    def noop(self) -> Reply:
        """NOOP: check that the server is still there.  Raises CommandRefused on 4xx/5xx."""
        return self._simple(commands.noop())

    @exclusive
    def rset(self) -> Reply:
        """RSET: abandon the current transaction."""
        reply = self._simple(commands.rset(), Stage.RSET)
        self._state = SessionState.READY
        return reply

    def _reset_after_failure(self) -> None:
        """RSET after a failed transaction, so the session stays usable.

        Never raises: if RSET fails the session is closed (``usable`` False)
        and the refusal being handled stays the outcome.
        """
        if self._state not in (SessionState.READY, SessionState.IN_TRANSACTION):
            return
        try:
            reply = self._command(commands.rset(), Stage.RSET)
        except SMTPClientError as exc:
            # The refusal that led here is the message's outcome; the lost
            # RSET only means this connection is done (already closed).
            log.debug("%s: RSET after a refusal failed (%s); connection closed", self.host, exc)
            return
        if not reply.is_positive:
            self._abort()
            log.debug("%s: RSET after a refusal got %d; connection closed", self.host, reply.code)
            return
        self._state = SessionState.READY

    @exclusive
    def vrfy(self, address: str) -> Reply:
        """VRFY: ask whether *address* is deliverable; returns the reply as is
        (252 "cannot verify" is common)."""
        check_allowed("command", self._state)
        self._check_unsolicited(Stage.COMMAND)
        return self._command(commands.vrfy(address, utf8=self.extensions.smtputf8), Stage.COMMAND)

    @exclusive
    def expn(self, mailing_list: str) -> Reply:
        """EXPN: ask for the members of a list; returns the reply as is."""
        check_allowed("command", self._state)
        self._check_unsolicited(Stage.COMMAND)
        return self._command(
            commands.expn(mailing_list, utf8=self.extensions.smtputf8), Stage.COMMAND
        )

    @exclusive
    def help(self, topic: str | None = None) -> Reply:
        """HELP: returns the reply as is."""
        check_allowed("command", self._state)
        self._check_unsolicited(Stage.COMMAND)
        return self._command(commands.help_(topic), Stage.COMMAND)

    # --- closing ------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Where the session stands (``SessionState``)."""
        return self._state

    @property
    def usable(self) -> bool:
        """True while the session can send (not closed, broken or inherited)."""
        return (
            self._state in (SessionState.READY, SessionState.GREETED)
            and not self._transport.closed
            and self._pid == _pid
        )

    def idle_check(self) -> bool:
        """For pools: True when the session is usable and the server sent
        nothing while it sat idle (a 421, a hang-up or a stray reply all
        mean False).  Sends nothing; a session that fails it is closed."""
        if not self.usable:
            return False
        try:
            spoke = self._server_spoke(Stage.COMMAND)
        except SMTPClientError:
            return False
        if spoke:
            self._abort()
        return not spoke

    def quit(self) -> Reply | None:
        """Say QUIT and close.  Never raises: a failed QUIT cannot undo a
        delivered message.  Returns the server's reply if one came in time."""
        if self._pid != _pid:
            self._drop()
            return None
        if not self._lock.acquire(blocking=False):
            raise SessionBusyError("this session is in use by another thread")
        try:
            reply = None
            if self._state not in (SessionState.CLOSED, SessionState.BROKEN):
                try:
                    self._write(commands.quit_(), Stage.QUIT)
                    reply = self._read(Stage.QUIT)
                except SMTPClientError:
                    pass
            self._transport.close()
            self._state = SessionState.CLOSED
            return reply
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection without QUIT.  Safe to call any number of times."""
        self._transport.close()
        self._state = SessionState.CLOSED

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None or self.usable:
            self.quit()
        else:
            self.close()

    def __repr__(self) -> str:
        tls = f" {self.tls.version}" if self.tls else ""
        return f"<Session {self.host}:{self.port} {self._state.value}{tls}>"
