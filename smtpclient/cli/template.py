"""The recipients CSV and the message template of ``send --bulk``.

The CSV has a header row; the recipient's address is in the column named
``email`` (or ``address`` or ``to``; else the first column).  Every column
can be used in the template as ``${column}`` (``$column`` works too; ``$$``
is a literal dollar sign), in any header and in any text part, whatever its
transfer encoding.  A template that names a column the CSV does not have is
refused before anything is sent.

Each rendered message gets its own Message-ID, a Date if the template has
none, and a To header naming the recipient if the template has none.
"""

from __future__ import annotations

import copy
import csv
import email.utils
import io
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from string import Template

from smtpclient.cli.common import EX_DATAERR, fail

__all__ = ["ADDRESS_COLUMNS", "Row", "check_template", "read_rows", "render"]

ADDRESS_COLUMNS = ("email", "address", "to")


@dataclass(frozen=True)
class Row:
    """One recipient: its position in the file, address and every column."""

    index: int
    address: str
    values: Mapping[str, str]


def read_rows(data: bytes, source: str) -> list[Row]:
    """Parse the recipients CSV.

    Raises:
        CommandError: not UTF-8, no header row, or no rows (EX_DATAERR).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        fail(f"{source} is not UTF-8 text", EX_DATAERR)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [name.strip() for name in reader.fieldnames or [] if name]
    if not fields:
        fail(f"{source} has no header row (e.g. 'email,name')", EX_DATAERR)
    lowered = {name.lower(): name for name in fields}
    column = next((lowered[c] for c in ADDRESS_COLUMNS if c in lowered), fields[0])
    rows = []
    for number, record in enumerate(reader, start=2):
        values = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k}
        address = values.get(column, "")
        if not address and not any(values.values()):
            continue  # a blank line
        rows.append(Row(number, address, values))
    if not rows:
        fail(f"{source} lists no recipients", EX_DATAERR)
    return rows


def _placeholders(text: str) -> set[str]:
    return set(Template(text).get_identifiers())


def check_template(template: EmailMessage, columns: set[str], source: str) -> None:
    """Refuse a template naming a column that is not in the CSV.

    Raises:
        CommandError: an unknown ``${name}`` (EX_DATAERR).
    """
    used: set[str] = set()
    for _, value in template.items():
        used |= _placeholders(str(value))
    for part in _text_parts(template):
        used |= _placeholders(str(part.get_content()))
    missing = sorted(used - columns)
    if missing:
        names = ", ".join("${" + name + "}" for name in missing)
        fail(
            f"{source} uses {names}, but the CSV has no such column "
            f"(it has: {', '.join(sorted(columns))})",
            EX_DATAERR,
        )


def _text_parts(message: EmailMessage) -> list[EmailMessage]:
    parts = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.is_attachment():
            continue
        assert isinstance(part, EmailMessage)
        parts.append(part)
    return parts


def render(template: EmailMessage, row: Row, domain: str | None) -> EmailMessage:
    """The template filled in for *row*.

    Raises:
        ValueError: a value would put a line break into a header.
    """

    def fill(text: str) -> str:
        return Template(text).substitute(row.values) if "$" in text else text

    message = copy.deepcopy(template)
    headers = [(name, str(value)) for name, value in message.items()]
    if any("$" in value for _, value in headers):
        filled = [(name, fill(value)) for name, value in headers]
        for name, value in filled:
            if "\r" in value or "\n" in value:
                raise ValueError(f"a CSV value would put a line break into the {name} header")
        for name in {name for name, _ in headers}:
            del message[name]
        for name, value in filled:  # in the template's order
            message[name] = value
    for part in _text_parts(message):
        content = str(part.get_content())
        if "$" in content:
            part.set_content(fill(content), subtype=part.get_content_subtype())
    if "To" not in message:
        message["To"] = row.address
    del message["Message-ID"]
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    if "Date" not in message:
        message["Date"] = email.utils.formatdate(localtime=True)
    return message
