"""SASLprep (RFC 4013): the stringprep profile SCRAM applies to user names
and passwords, so that "the same" string typed on two systems compares equal.
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable

from smtpclient.errors import SASLError  # defined there; re-exported here

__all__ = ["SASLError", "saslprep"]


# RFC 4013 §2.3: prohibited output (RFC 3454 tables C.1.2 to C.9).
_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, secret: bool = False) -> str:
    """Prepare *text* as RFC 4013 asks: non-ASCII spaces become SPACE, the
    "commonly mapped to nothing" characters go, NFKC; then prohibited,
    unassigned (RFC 4013 treats stored strings strictly) and badly mixed
    bidirectional characters are refused.

    With *secret* (a password) the error does not name the character, so
    that no part of a password reaches a log or an exception message.

    Raises:
        SASLError: *text* cannot be prepared.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    what = "the password" if secret else repr(text)

    def refuse(why: str, ch: str) -> SASLError:
        detail = "" if secret else f" U+{ord(ch):04X}"
        return SASLError(f"SASLprep (RFC 4013): {what} holds {why}{detail}")

    for ch in normal:
        if any(check(ch) for check in _PROHIBITED):
            raise refuse("a prohibited character", ch)
        if stringprep.in_table_a1(ch):
            raise refuse("an unassigned code point", ch)
    if any(stringprep.in_table_d1(ch) for ch in normal):
        # RFC 3454 §6: right-to-left text must be wholly so, and start and end with it.
        for ch in normal:
            if stringprep.in_table_d2(ch):
                raise refuse("left-to-right characters mixed with right-to-left", ch)
        if not (stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1])):
            raise refuse("right-to-left text that does not start and end so", normal[0])
    return normal
