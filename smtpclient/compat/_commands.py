"""The commands of smtplib's ``SMTP`` that need no TLS or AUTH: greeting,
EHLO parsing, RSET/NOOP/VRFY/EXPN/HELP and the MAIL/RCPT/DATA steps.

Addresses go through the engine's address code (``_addresses.path``) and
the content rules (lines over 998 octets, 8-bit bytes without 8BITMIME)
are checked with the engine's ``BodyScanner`` before anything is sent."""

from __future__ import annotations

import contextlib
import email.utils
import re
import smtplib
from collections.abc import Sequence
from smtplib import (
    SMTPDataError,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPServerDisconnected,
)

from smtpclient.body import check_content as check_raw_content
from smtpclient.compat._addresses import path
from smtpclient.compat._link import LinkClient, exclusive
from smtpclient.errors import ServiceClosing
from smtpclient.errors.compat import EightBitContentError, LongLineError, MalformedReplyError
from smtpclient.protocol.data import BodyScanner, DataEncoder, Framing
from smtpclient.protocol.state import Stage
from smtpclient.session.transcript import content_shown

__all__ = [
    "MAX_LINE_OCTETS",
    "OLDSTYLE_AUTH",
    "CommandClient",
    "Reply",
    "canonical_body",
    "check_content_rules",
    "parse_features",
]

OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)
_FEATURE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*) ?")
_LINE_END = re.compile(rb"\r\n|\r|\n")

Reply = tuple[int, bytes]
MAX_LINE_OCTETS = 998  # RFC 5322 §2.1.1, without the CRLF

# smtplib 3.13 writes "mail from:"/"rcpt to:", earlier releases "FROM:"/"TO:";
# servers do not care, but transcripts and tests compare them: follow the
# running interpreter's smtplib.
_LOWER_PATHS = any(
    isinstance(constant, str) and constant.startswith("from:")
    for constant in smtplib.SMTP.mail.__code__.co_consts
)
_FROM = "from:" if _LOWER_PATHS else "FROM:"
_TO = "to:" if _LOWER_PATHS else "TO:"


def canonical_body(msg: str | bytes | bytearray | memoryview) -> bytes:
    """The message as ASCII bytes with every line ending CRLF (smtplib does
    this for str only; bare CR/LF in bytes are what SMTP smuggling uses).

    Raises:
        UnicodeEncodeError: a str message holds non-ASCII characters.
        NulOctetError, HeaderInjectionError: see ``body.check_content``
            (the library's check of raw content, as below every native path).
    """
    data = msg.encode("ascii") if isinstance(msg, str) else bytes(msg)
    check_raw_content(data)
    return _LINE_END.sub(b"\r\n", data)


def _frame(canonical: bytes) -> bytes:
    """Dot-stuff and terminate; an empty body is one empty line, as in smtplib."""
    if not canonical:
        return b"\r\n.\r\n"
    encoder = DataEncoder(Framing.DATA)
    return encoder.feed(canonical) + encoder.finish()


def _address_only(text: str) -> str:
    name, address = email.utils.parseaddr(text)
    return text if (name, address) == ("", "") else address


def check_content_rules(canonical: bytes, *, eight_bit_ok: bool) -> None:
    """The engine's content rules, decided before MAIL.

    Raises:
        LongLineError: a line over 998 octets.
        EightBitContentError: 8-bit bytes and not *eight_bit_ok*.
    """
    scanner = BodyScanner()
    scanner.feed(canonical)
    if scanner.max_line > MAX_LINE_OCTETS:
        raise LongLineError(
            f"a line of the message has {scanner.max_line} octets (at most "
            f"{MAX_LINE_OCTETS}, RFC 5322 §2.1.1); nothing was sent"
        )
    if scanner.eight_bit and not eight_bit_ok:
        raise EightBitContentError(
            "the message has 8-bit bytes and the server offers neither 8BITMIME nor "
            "SMTPUTF8; nothing was sent (encode it as quoted-printable or base64)"
        )


def parse_features(ehlo_text: bytes) -> dict[str, str]:
    """smtplib's ``esmtp_features``: lower-case keyword -> parameter string.

    AUTH parameters accumulate (the old ``AUTH=`` form included), each
    addition prefixed with a space, exactly as smtplib builds them.
    """
    features: dict[str, str] = {}
    for line in ehlo_text.decode("latin-1").split("\n")[1:]:
        old_style = OLDSTYLE_AUTH.match(line)
        if old_style is not None:
            features["auth"] = features.get("auth", "") + " " + old_style.group(1)
            continue
        found = _FEATURE.match(line)
        if found is None:
            continue
        keyword = found.group(1).lower()
        params = line[found.end(1) :].strip()
        if keyword == "auth":
            features["auth"] = features.get("auth", "") + " " + params
        else:
            features[keyword] = params
    return features


class CommandClient(LinkClient):
    """The plain commands; ``SMTP`` adds connecting, TLS, AUTH and sendmail."""

    helo_resp: bytes | None = None
    ehlo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    does_esmtp = False
    local_hostname: str
    esmtp_features: dict[str, str]
    _accepted: list[str]  # recipients accepted since MAIL (LMTP replies)
    _late_refusals: dict[str, Reply]  # LMTP: refused after the data

    # --- greeting and simple commands ---------------------------------------------------

    @exclusive
    def helo(self, name: str = "") -> Reply:
        """Say HELO; the reply text is kept in ``helo_resp``."""
        self.putcmd("helo", name or self.local_hostname)
        code, msg = self.getreply()
        self.helo_resp = msg
        return code, msg

    @exclusive
    def ehlo(self, name: str = "") -> Reply:
        """Say EHLO (``ehlo_msg``); on 250 fill ``esmtp_features`` and set ``does_esmtp``.

        Raises:
            SMTPServerDisconnected: the server hung up instead of answering.
        """
        self.esmtp_features = {}
        self.putcmd(self.ehlo_msg, name or self.local_hostname)
        code, msg = self.getreply()
        self.ehlo_resp = msg
        if code != 250:
            return code, msg
        self.does_esmtp = True
        self.esmtp_features = parse_features(msg)
        return code, msg

    def has_extn(self, opt: str) -> bool:
        """True if the server advertised extension *opt* (any case)."""
        return opt.lower() in self.esmtp_features

    @exclusive
    def help(self, args: str = "") -> bytes:
        """HELP; returns the reply text only."""
        self.putcmd("help", args)
        return self.getreply()[1]

    @exclusive
    def rset(self) -> Reply:
        """RSET: abort the mail transaction."""
        self.command_encoding = "ascii"
        self._accepted = []
        return self.docmd("rset")

    def _rset(self) -> None:
        # After a failed transaction, as the engine's reset_after_failure: the
        # refusal being handled stays the outcome; if RSET fails (lost
        # connection, stale or malformed reply, 421) the connection is closed
        # and that surfaces on the next command.
        with contextlib.suppress(SMTPServerDisconnected, MalformedReplyError, ServiceClosing):
            self.rset()

    @exclusive
    def noop(self) -> Reply:
        """NOOP."""
        return self.docmd("noop")

    @exclusive
    def verify(self, address: str) -> Reply:
        """VRFY *address* (a display name is dropped)."""
        self.putcmd("vrfy", _address_only(address))
        return self.getreply()

    vrfy = verify

    @exclusive
    def expn(self, address: str) -> Reply:
        """EXPN *address*."""
        self.putcmd("expn", _address_only(address))
        return self.getreply()

    @exclusive
    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO, falling back to HELO, unless one was already said.

        Raises:
            SMTPHeloError: neither was accepted.
        """
        if self.helo_resp is not None or self.ehlo_resp is not None:
            return
        if not 200 <= self.ehlo()[0] <= 299:
            code, resp = self.helo()
            if not 200 <= code <= 299:
                raise SMTPHeloError(code, resp)

    # --- the mail transaction -------------------------------------------------------

    def _utf8_asked(self, options: Sequence[str]) -> bool:
        """True when *options* ask for SMTPUTF8 (checked against the server).

        Raises:
            SMTPNotSupportedError: SMTPUTF8 asked for but not offered.
        """
        if not (options and self.does_esmtp):
            return False
        if not any(option.lower() == "smtputf8" for option in options):
            return False
        if not self.has_extn("smtputf8"):
            raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
        return True

    @exclusive
    def mail(self, sender: str, options: Sequence[str] = ()) -> Reply:
        """MAIL FROM; *options* are sent only to an ESMTP server.

        Raises:
            SMTPNotSupportedError: SMTPUTF8 asked for but not offered.
            UnicodeEncodeError: a non-ASCII local part without SMTPUTF8
                (``AddressNeedsSMTPUTF8``); nothing is sent.
            ValueError: a control character or a malformed address
                (``InvalidAddressError``); nothing is sent.
        """
        utf8 = self._utf8_asked(options)
        reverse_path = path(sender, utf8=utf8, sender=True)
        option_text = " " + " ".join(options) if options and self.does_esmtp else ""
        if utf8:
            self.command_encoding = "utf-8"
        self._accepted = []
        self.putcmd("mail", f"{_FROM}{reverse_path}{option_text}")
        return self.getreply()

    @exclusive
    def rcpt(self, recip: str, options: Sequence[str] = ()) -> Reply:
        """RCPT TO for one recipient.

        Raises:
            UnicodeEncodeError, ValueError: as ``mail``; nothing is sent.
        """
        forward_path = path(recip, utf8=self.command_encoding == "utf-8")
        option_text = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"{_TO}{forward_path}{option_text}")
        code, msg = self.getreply()
        if code in (250, 251):
            self._accepted.append(recip)
        return code, msg

    def _eight_bit_ok(self) -> bool:
        """True when the server takes 8-bit content (8BITMIME or SMTPUTF8)."""
        return self.has_extn("8bitmime") or self.has_extn("smtputf8")

    @exclusive
    def data(self, msg: str | bytes | bytearray | memoryview) -> Reply:
        """DATA, then the message (line ends made CRLF, dots stuffed); return
        the reply to the final ".".

        Unlike smtplib, bytes get their line ends normalised too, and the
        content rules are checked before DATA is sent.

        Raises:
            UnicodeEncodeError: a str message is not ASCII.
            LongLineError, EightBitContentError: see ``check_content``
                (``ValueError``); nothing is sent.
            SMTPDataError: DATA was not answered with 354.
        """
        canonical = canonical_body(msg)
        check_content_rules(canonical, eight_bit_ok=self._eight_bit_ok())
        return self._data(canonical)

    def _data(self, canonical: bytes) -> Reply:
        payload = _frame(canonical)
        self.putcmd("data")
        code, repl = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, repl))
        if code != 354:
            raise SMTPDataError(code, repl)
        self._late_refusals = {}
        self._send(
            payload,
            Stage.DATA_BLOCK,
            check=False,
            replies=self._final_replies(),
            reply_stage=Stage.DATA_DONE,
            shown=content_shown,
        )
        return self._final_reply()

    def _final_replies(self) -> int:
        """How many replies follow the end of the data (LMTP: one per recipient)."""
        return 1

    def _final_reply(self) -> Reply:
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, msg))
        return code, msg
