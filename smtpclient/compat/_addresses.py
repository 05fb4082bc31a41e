"""Addresses for MAIL and RCPT: smtplib's ``quoteaddr`` forms, checked by the engine.

smtplib accepts ``"Name <addr>"`` and bare addresses and sends what
``email.utils.parseaddr`` makes of them; a CR LF inside a quoted local part
or a display name then splits the command, and parseaddr may return another
address than the one written.  Here a control or format character anywhere
is an ``InvalidAddressError`` (a ``ValueError``), the address parseaddr
finds must appear as written, and the result goes through the engine's
``encode_address`` (syntax, IDNA).
"""

from __future__ import annotations

import email.utils
import functools
import re

from smtpclient.errors import InvalidAddressError
from smtpclient.errors.compat import AddressNeedsSMTPUTF8
from smtpclient.protocol.commands import check_text, encode_address

__all__ = ["path"]

_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _refuse_lists(address: str) -> None:
    """parseaddr keeps the first of several addresses and drops the rest."""
    unquoted = _QUOTED_STRING.sub('""', address)
    if unquoted.count("<") > 1 or len(email.utils.getaddresses([address])) > 1:
        raise InvalidAddressError(
            f"not exactly one address (give each one separately): {address!r}"
        )


def path(address: str, *, utf8: bool = False, sender: bool = False) -> str:
    """``<address>`` as it goes after ``FROM:``/``TO:``.

    Accepts what ``smtplib.quoteaddr`` accepts: ``"Name <user@host>"``,
    ``user@host``, ``<user@host>``, ``<>`` (the null sender) and a bare
    local part (``tester``, sent as ``<tester>`` as smtplib and the native
    API do).

    Raises:
        TypeError: *address* is not a str.
        AddressNeedsSMTPUTF8: a non-ASCII local part without *utf8* (also a
            ``UnicodeEncodeError``, as smtplib raises).
        InvalidAddressError: a control or format character anywhere, a
            malformed address, more than one address, or one parseaddr
            would read as another.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be str, not {type(address).__name__}")
    return _path(address, utf8, sender)


# The same few addresses recur on every message (and sendmail checks each
# before MAIL, then encodes it for its command): remember the answers.
# Errors are not cached; they are raised again.
@functools.lru_cache(maxsize=4096)
def _path(address: str, utf8: bool, sender: bool) -> str:
    # The engine's rule, on the whole text: parseaddr below may drop a
    # display name (and what it holds) before encode_address sees it.
    check_text(address, "address", InvalidAddressError)
    if address.strip() == "<>":
        if sender:
            return "<>"
        raise InvalidAddressError("the null path <> is only allowed as the sender")
    _refuse_lists(address)
    name, found = email.utils.parseaddr(address)
    if (name, found) == ("", ""):
        candidate = address.strip()
    elif found and found in address:
        candidate = found
    else:
        raise InvalidAddressError(
            f"cannot tell which address is meant (it would be sent as {found!r}): {address!r}"
        )
    bare = candidate[1:-1] if candidate.startswith("<") and candidate.endswith(">") else candidate
    local = bare[: bare.rfind("@")] if "@" in bare else bare
    if not utf8 and not local.isascii():
        raise AddressNeedsSMTPUTF8(candidate)
    return f"<{encode_address(candidate, utf8=utf8, allow_empty=sender)}>"
