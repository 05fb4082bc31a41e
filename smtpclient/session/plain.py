"""The plain-message rules, shared by ``Session.sendmail``'s fast path and
``send_many``: a message without options, small in-memory bytes, plain
ASCII addresses.

For such a message the general path's ``Envelope.build`` and ``build_plan``
do much work to reach a result these functions reach directly, by the same
rules: the same public encoders of ``protocol.commands``, the size rule of
``plan.size_parameter``, the 8BITMIME and line-length rules.  Each function
returns None for anything outside those rules, and the caller then takes
the general path (which sends the message or raises its error, with nothing
written).  ``tests/hostile/test_fast_path.py`` checks that a plan made here
equals the general one field by field.
"""

from __future__ import annotations

from smtpclient.body import BLOCK_SIZE, Body
from smtpclient.envelope import Envelope
from smtpclient.errors import InvalidAddressError, MessageTooLarge
from smtpclient.plan import Plan, content_params, content_size, size_parameter
from smtpclient.protocol import commands
from smtpclient.protocol.data import MAX_LINE_LENGTH, Framing
from smtpclient.session.config import SendConfig

__all__ = ["plain_addresses", "plain_lines", "plain_plan"]

_plain_mail, _plain_rcpt = commands.plain_mail, commands.plain_rcpt


def plain_addresses(sender: object, recipients: object) -> list[str] | None:
    """The recipients as a new list when *sender* and *recipients* are of
    the plain kinds (a str, or a list or tuple of them; ASCII); else None."""
    if type(sender) is not str or not sender.isascii():
        return None
    if type(recipients) is str:
        addresses: list[str] = [recipients]
    elif type(recipients) is list or type(recipients) is tuple:
        addresses = list(recipients)
    else:
        return None
    for address in addresses:  # a loop, not all(): no call
        if type(address) is not str or not address.isascii():
            return None
    return addresses if addresses else None


def plain_lines(
    config: SendConfig, sender: str, addresses: list[str], canonical: bytes, longest: int
) -> tuple[bytes, list[bytes]] | None:
    """The MAIL line and the RCPT lines of a plain message whose canonical
    content is *canonical* (longest line *longest*), by ``build_plan``'s
    rules; None when the general path must decide (it refuses the message:
    a line too long, 8-bit content without 8BITMIME, over SIZE, a malformed
    address)."""
    if longest > MAX_LINE_LENGTH:
        return None
    eight_bit = not canonical.isascii()
    if eight_bit and not config.eightbitmime:
        return None
    declared = None
    if config.size_offered:
        try:
            declared = size_parameter(content_size(canonical), config.max_size, True)
        except MessageTooLarge:
            return None  # the general path refuses it
    try:
        if eight_bit or declared is not None:
            mail = commands.mail(
                sender, content_params("8BITMIME" if eight_bit else None, declared)
            )
        else:
            mail = _plain_mail(sender, False)
        rcpts = []
        for address in addresses:
            rcpts.append(_plain_rcpt(address, False))
    except InvalidAddressError:
        return None
    return mail, rcpts


def plain_plan(config: SendConfig, sender: object, recipients: object, data: object) -> Plan | None:
    """The ``Plan`` that ``build_plan(Envelope.build(sender, recipients),
    Body(data), ...)`` makes for a plain message (without options, bytes of
    at most ``BLOCK_SIZE``); None for any other message."""
    if type(data) is not bytes or len(data) > BLOCK_SIZE:
        return None
    addresses = plain_addresses(sender, recipients)
    if addresses is None:
        return None
    body = Body(data)
    info = body.info()
    canonical = body.canonical
    if canonical is None or info.max_line is None:
        return None
    lines = plain_lines(config, str(sender), addresses, canonical, info.max_line)
    if lines is None:
        return None
    mail, rcpts = lines
    return Plan(
        Envelope.plain(str(sender), addresses),
        body,
        info,
        mail,
        list(zip(addresses, rcpts, strict=True)),
        Framing.BDAT if config.chunked else Framing.DATA,
    )
