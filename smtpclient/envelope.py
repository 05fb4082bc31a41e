"""The envelope: sender, recipients and their per-message and per-recipient options.

DSN (RFC 3461) options are typed here and encoded (xtext) in the protocol
layer; they are only sent to a server that advertises DSN.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from smtpclient.errors import InvalidAddressError
from smtpclient.protocol.commands import check_text

__all__ = ["DSN", "NOTIFY_VALUES", "Envelope", "Recipient", "parse_options"]

NOTIFY_VALUES = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})


def _check_notify(notify: Sequence[str] | None) -> tuple[str, ...] | None:
    if notify is None:
        return None
    if isinstance(notify, str):
        notify = [part.strip() for part in notify.split(",")]
    values = tuple(dict.fromkeys(item.upper() for item in notify))
    unknown = set(values) - NOTIFY_VALUES
    if unknown or not values:
        raise ValueError(f"NOTIFY takes NEVER or any of SUCCESS, FAILURE, DELAY: {notify!r}")
    if "NEVER" in values and len(values) > 1:
        raise ValueError("NOTIFY=NEVER cannot be combined with other values (RFC 3461 §4.1)")
    return values


@dataclass(frozen=True)
class DSN:
    """Delivery status notification options (RFC 3461).

    ``ret`` is "FULL" or "HDRS"; ``envid`` an envelope id returned in the
    report; ``notify`` the default NOTIFY for every recipient (NEVER, or
    any of SUCCESS, FAILURE, DELAY); ``orcpt`` adds ORCPT=rfc822;<address>
    for each recipient.  With ``required=False`` the options are dropped,
    rather than refused, when the server does not offer DSN.

    Raises:
        ValueError: an option is outside what RFC 3461 allows.
    """

    ret: str | None = None
    envid: str | None = None
    notify: tuple[str, ...] | None = None
    orcpt: bool = False
    required: bool = True

    def __post_init__(self) -> None:
        if self.ret is not None:
            if self.ret.upper() not in ("FULL", "HDRS"):
                raise ValueError(f"DSN ret must be 'FULL' or 'HDRS', not {self.ret!r}")
            object.__setattr__(self, "ret", self.ret.upper())
        object.__setattr__(self, "notify", _check_notify(self.notify))

    @property
    def empty(self) -> bool:
        """True when no option is set."""
        return self.ret is None and self.envid is None and self.notify is None and not self.orcpt


_NO_DSN = DSN()  # immutable: one instance serves every envelope without options


@dataclass(frozen=True)
class Recipient:
    """A recipient with its own options (the plain address string is enough
    when there are none)."""

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None  # original recipient; sent as ORCPT=rfc822;xtext(orcpt)
    params: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Control and format characters first, before SMTPUTF8 is considered.
        check_text(self.address, "recipient address", InvalidAddressError)
        if self.notify is not None:
            object.__setattr__(self, "notify", _check_notify(self.notify))


@dataclass(frozen=True)
class Envelope:
    """Everything MAIL FROM and RCPT TO carry for one message."""

    sender: str
    recipients: tuple[Recipient, ...]
    dsn: DSN = field(default_factory=DSN)
    mail_params: Mapping[str, str | None] = field(default_factory=dict)
    smtputf8: bool = False  # the caller (or the message) needs SMTPUTF8
    requiretls: bool = False

    @classmethod
    def build(
        cls,
        sender: str,
        recipients: str | Recipient | Iterable[str | Recipient],
        *,
        dsn: DSN | None = None,
        mail_options: Iterable[str] = (),
        rcpt_options: Iterable[str] = (),
        smtputf8: bool = False,
        requiretls: bool = False,
    ) -> Envelope:
        """Normalise the many ways callers name recipients.

        Raises:
            TypeError: an address is not a str (or Recipient).
            InvalidAddressError: an address holds a control or format character.
            ValueError: there are no recipients.
        """
        check_text(sender, "sender", InvalidAddressError)  # also the TypeError for a non-str
        if isinstance(recipients, (str, Recipient)):
            recipients = [recipients]
        rcpt_params = parse_options(rcpt_options) if rcpt_options != () else {}
        items: list[Recipient] = []
        for item in recipients:
            if type(item) is str and not rcpt_params:
                items.append(_plain_recipient(item))
            elif isinstance(item, Recipient):
                items.append(item)
            elif isinstance(item, str):
                items.append(Recipient(item, params=rcpt_params))
            else:
                raise TypeError(f"recipients must be str or Recipient, not {type(item).__name__}")
        if not items:
            raise ValueError("no recipients given")
        params = parse_options(mail_options) if mail_options != () else {}
        if params and "SMTPUTF8" in {key.upper() for key in params}:
            smtputf8 = True
            params = {k: v for k, v in params.items() if k.upper() != "SMTPUTF8"}
        return cls(sender, tuple(items), dsn or _NO_DSN, params, smtputf8, requiretls)

    @classmethod
    def plain(cls, sender: str, addresses: list[str]) -> Envelope:
        """What ``build(sender, addresses)`` makes for str addresses and no
        options, for a caller that has checked their types already (the
        plain-message shortcut of ``send_many``)."""
        return cls(sender, tuple(map(_plain_recipient, addresses)), _NO_DSN, {}, False, False)


@functools.lru_cache(maxsize=4096)
def _plain_recipient(address: str) -> Recipient:
    """A recipient without options; immutable, so one instance serves every
    envelope to that address (the same recipients recur)."""
    return Recipient(address, params=MappingProxyType({}))


def parse_options(options: Iterable[str] | Mapping[str, str | None]) -> dict[str, str | None]:
    """Turn smtplib-style option strings ("BODY=8BITMIME", "SMTPUTF8") into a mapping.

    Raises:
        TypeError: *options* is a single string (a common slip) or holds non-strings.
    """
    if options == ():  # the default: nothing to parse
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    if isinstance(options, (str, bytes)):
        raise TypeError("options must be a sequence of strings, not one string")
    parsed: dict[str, str | None] = {}
    for option in options:
        if not isinstance(option, str):
            raise TypeError(f"ESMTP options must be str, not {type(option).__name__}")
        key, sep, value = option.partition("=")
        parsed[key] = value if sep else None
    return parsed
