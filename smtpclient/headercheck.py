"""The last look at a header block before it goes out (no IO).

Two checks, one for each kind of content a caller can give:

* ``check_message_header(data, names)``: *data* is what the library made
  from a message object (plus the header fields it adds itself, such as a
  DKIM-Signature).  Its header block -- everything before the first empty
  line -- must hold exactly the fields *names*, in that order, each line a
  field (``name:``) or a folded continuation (starting with SP or HTAB),
  every line ending in CRLF, no bare CR or LF and no NUL.  Whatever the
  ``email`` package's generator did with a header value (a compat32 value
  with CRLF in it, or CVE-2024-6923's encoded word that decodes to CRLF on
  unpatched interpreters), a header line the message object does not have
  cannot pass.
* ``check_raw_header(data)``: *data* is raw content from the caller, which
  the library sends with its line ends made CRLF (bare CR and bare LF
  included: a file with LF line ends works).  There is no message object
  to compare with, so the rule is about line ends only: the leading header
  block (the lines that look like header fields or their continuations)
  ends every line the same way, all CRLF or all LF, and a bare CR there is
  refused -- so a value with a lone CR or LF in a CRLF template (or with
  CR in an LF one) is caught.  What cannot be caught is a value that uses
  the template's own line end: raw content is only as safe as the code
  that built it, and a message object is the way to be sure.

Both raise ``HeaderInjectionError`` (a ``ValueError``) before anything is
sent.  The header blocks of MIME parts are not examined: they cannot add
fields to the message's own header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from smtpclient.errors import HeaderInjectionError

__all__ = [
    "RAW_HEAD_LIMIT",
    "check_message_header",
    "check_raw_header",
    "header_block",
]

# How much of raw content is examined for its header block.
RAW_HEAD_LIMIT = 64 * 1024

_FIELD = rb"[!-9;-~]+[ \t]*:"  # RFC 5322 ftext, with the obsolete WSP before ":"
_FIELD_START = re.compile(_FIELD)
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
# Line starts in a CRLF header block ("^" also matches after a bare LF,
# which the line-end count catches).
_FIELD_NAMES = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_CONTINUATIONS = re.compile(rb"^[ \t]", re.MULTILINE)
_BLOCK_CRLF = re.compile(rb"(?:" + _FIELD + rb"[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+")
_BLOCK_LF = re.compile(rb"(?:" + _FIELD + rb"[^\r\n]*\n(?:[ \t][^\r\n]*\n)*)+")
_LINE_END = re.compile(rb"[\r\n]")


def header_block(data: bytes) -> bytes:
    """The header block of CRLF content: the octets before the first empty line
    (all of *data* when there is none)."""
    if data.startswith(b"\r\n"):
        return b""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def check_message_header(data: bytes, names: Sequence[str]) -> None:
    """Check that the header block of *data* holds exactly the fields *names*.

    Raises:
        HeaderInjectionError: a NUL, a bare CR or LF, a line that is neither
            a field nor a continuation, or fields other than *names* (in
            order, names compared without regard to case).
    """
    block = header_block(data)
    crlf = block.count(b"\r\n")
    lines = crlf + (1 if block and not block.endswith(b"\r\n") else 0)
    found = _FIELD_NAMES.findall(block)
    clean = (
        b"\x00" not in block
        and block.count(b"\r") == block.count(b"\n") == crlf
        and len(found) + len(_CONTINUATIONS.findall(block)) == lines
        and block[:1] not in (b" ", b"\t")
    )
    if not clean:
        _explain(block)
    if [name.lower() for name in found] != [
        name.lower().encode("ascii", "replace") for name in names
    ]:
        _unexpected([name.decode("ascii") for name in found], names)


def _explain(block: bytes) -> None:
    """Raise the error for a header block that failed the quick check."""
    if b"\x00" in block:
        raise HeaderInjectionError("a header of the message contains a NUL octet")
    for number, line in enumerate(block.split(b"\r\n"), 1):
        if b"\r" in line or b"\n" in line:
            raise HeaderInjectionError(
                f"header line {number} contains a bare CR or LF: {_shown(line)}"
            )
        if line and not (_FIELD_NAME.match(line) or (number > 1 and line[:1] in (b" ", b"\t"))):
            raise HeaderInjectionError(
                f"header line {number} is neither a header field nor a folded "
                f"continuation (a header value with a line break in it?): {_shown(line)}"
            )
    raise HeaderInjectionError("the header block is malformed")


def _unexpected(found: list[str], names: Sequence[str]) -> None:
    expected = [name.lower() for name in names]
    extra = [name for name in found if name.lower() not in expected]
    detail = f"unexpected {', '.join(extra)}" if extra else f"found {', '.join(found)}"
    raise HeaderInjectionError(
        "the serialised header does not hold exactly the message's header fields "
        f"({detail}; expected {', '.join(names)}): a header value injected a line"
    )


def check_raw_header(data: bytes, *, complete: bool = True) -> None:
    """Check the line ends of the header block at the start of raw content.

    *data* is the whole content, or (``complete=False``) its first octets
    (then a CR at the very end is not judged).

    Only the first ``RAW_HEAD_LIMIT`` octets are examined (a header block
    is never longer), so the cost is bounded whatever the content.

    Raises:
        HeaderInjectionError: a header line ends with a bare CR, or the
            block mixes CRLF and LF line ends.
    """
    if len(data) > RAW_HEAD_LIMIT:
        data = data[:RAW_HEAD_LIMIT]
        complete = False
    match = _BLOCK_CRLF.match(data)
    if match is None:
        match = _BLOCK_LF.match(data)
    end = match.end() if match is not None else 0
    # The line after the block: if it still looks like a header line, its
    # line end is what stopped the match -- a bare CR, or the other kind.
    line_end = _LINE_END.search(data, end)
    if line_end is not None:
        at = line_end.start()
        line = data[end:at]
        header_like = _FIELD_START.match(line) is not None or (
            match is not None and line[:1] in (b" ", b"\t")
        )
        known = complete or at + 1 < len(data) or data[at : at + 1] == b"\n"
        if header_like and known:
            raise HeaderInjectionError(
                "a header line of the content ends with a bare CR or LF, or the header "
                f"mixes CRLF and LF line ends: {_shown(line)}"
            )


def _shown(line: bytes) -> str:
    return repr(line[:80])
