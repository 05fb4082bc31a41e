"""The commands of smtplib's ``SMTP`` that need no TLS or AUTH: greeting,
EHLO parsing, RSET/NOOP/VRFY/EXPN/HELP and the MAIL/RCPT/DATA steps."""

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
    quoteaddr,
)

from smtpclient.body import check_content
from smtpclient.compat._wire import WireClient
from smtpclient.protocol.data import DataEncoder, Framing

__all__ = ["OLDSTYLE_AUTH", "CommandClient", "Reply", "canonical_body", "parse_features"]

OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)
_FEATURE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*) ?")
_LINE_END = re.compile(rb"\r\n|\r|\n")

Reply = tuple[int, bytes]

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
        NulOctetError, HeaderInjectionError: see ``body.check_content``.
    """
    data = msg.encode("ascii") if isinstance(msg, str) else bytes(msg)
    check_content(data)
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


class CommandClient(WireClient):
    """The plain commands; ``SMTP`` adds connecting, TLS, AUTH and sendmail."""

    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    local_hostname: str
    esmtp_features: dict[str, str]
    _accepted: list[str]  # recipients accepted since MAIL (LMTP replies)
    _late_refusals: dict[str, Reply]  # LMTP: refused after the data

    # --- greeting and simple commands ---------------------------------------------------

    def helo(self, name: str = "") -> Reply:
        """Say HELO; the reply text is kept in ``helo_resp``."""
        self.putcmd("helo", name or self.local_hostname)
        code, msg = self.getreply()
        self.helo_resp = msg
        return code, msg

    def ehlo(self, name: str = "") -> Reply:
        """Say EHLO (``ehlo_msg``); on 250 fill ``esmtp_features`` and set ``does_esmtp``.

        Raises:
            SMTPServerDisconnected: the server hung up instead of answering.
        """
        self.esmtp_features = {}
        self.putcmd(self.ehlo_msg, name or self.local_hostname)
        code, msg = self.getreply()
        if code == -1 and not msg:
            self.close()
            raise SMTPServerDisconnected("Server not connected")
        self.ehlo_resp = msg
        if code != 250:
            return code, msg
        self.does_esmtp = True
        self.esmtp_features = parse_features(msg)
        return code, msg

    def has_extn(self, opt: str) -> bool:
        """True if the server advertised extension *opt* (any case)."""
        return opt.lower() in self.esmtp_features

    def help(self, args: str = "") -> bytes:
        """HELP; returns the reply text only."""
        self.putcmd("help", args)
        return self.getreply()[1]

    def rset(self) -> Reply:
        """RSET: abort the mail transaction."""
        self.command_encoding = "ascii"
        self._accepted = []
        return self.docmd("rset")

    def _rset(self) -> None:
        # After a failed transaction: a lost connection surfaces on the next command.
        with contextlib.suppress(SMTPServerDisconnected):
            self.rset()

    def noop(self) -> Reply:
        """NOOP."""
        return self.docmd("noop")

    def verify(self, address: str) -> Reply:
        """VRFY *address* (a display name is dropped)."""
        self.putcmd("vrfy", _address_only(address))
        return self.getreply()

    vrfy = verify

    def expn(self, address: str) -> Reply:
        """EXPN *address*."""
        self.putcmd("expn", _address_only(address))
        return self.getreply()

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

    def mail(self, sender: str, options: Sequence[str] = ()) -> Reply:
        """MAIL FROM; *options* are sent only to an ESMTP server.

        Raises:
            SMTPNotSupportedError: SMTPUTF8 asked for but not offered.
        """
        option_text = ""
        if options and self.does_esmtp:
            if any(option.lower() == "smtputf8" for option in options):
                if not self.has_extn("smtputf8"):
                    raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
                self.command_encoding = "utf-8"
            option_text = " " + " ".join(options)
        self._accepted = []
        self.putcmd("mail", f"{_FROM}{quoteaddr(sender)}{option_text}")
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> Reply:
        """RCPT TO for one recipient."""
        option_text = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"{_TO}{quoteaddr(recip)}{option_text}")
        code, msg = self.getreply()
        if code in (250, 251):
            self._accepted.append(recip)
        return code, msg

    def data(self, msg: str | bytes | bytearray | memoryview) -> Reply:
        """DATA, then the message (line ends made CRLF, dots stuffed); return
        the reply to the final ".".

        Unlike smtplib, bytes get their line ends normalised too, and a
        non-ASCII str fails before DATA is sent.

        Raises:
            UnicodeEncodeError: a str message is not ASCII.
            SMTPDataError: DATA was not answered with 354.
        """
        payload = _frame(canonical_body(msg))
        self.putcmd("data")
        code, repl = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, repl))
        if code != 354:
            raise SMTPDataError(code, repl)
        self._late_refusals = {}
        self.send(payload)
        return self._final_reply()

    def _final_reply(self) -> Reply:
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, msg))
        return code, msg
