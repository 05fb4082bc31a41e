"""The server's EHLO reply parsed into a frozen ``Extensions`` (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from smtpclient.protocol.reply import Reply

__all__ = ["Extensions"]


@dataclass(frozen=True)
class Extensions:
    """What the server advertised.  Keywords compare case-insensitively.

    ``Extensions.parse(reply)`` reads an EHLO reply; ``Extensions()`` is the
    empty set a HELO-only server has.  Lookups: ``"PIPELINING" in ext``,
    ``ext.params("AUTH")``, and typed properties for the ones the library
    acts on.
    """

    server_name: str = ""
    features: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    esmtp: bool = False  # False after a HELO fallback

    @classmethod
    def parse(cls, reply: Reply) -> Extensions:
        """Read the capability lines of a 250 reply to EHLO/LHLO.

        The first line is the server's name and greeting; every further line
        is a keyword with optional space-separated parameters.  The obsolete
        ``AUTH=PLAIN LOGIN`` form some servers still send is folded into
        ``AUTH``.  Runs in time linear in the reply size.
        """
        features: dict[str, tuple[str, ...]] = {}
        first = reply.lines[0].split(None, 1) if reply.lines else []
        server_name = first[0] if first else ""
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            keyword = words[0].upper()
            params = tuple(words[1:])
            if keyword.startswith("AUTH="):
                # "AUTH=LOGIN PLAIN": mechanisms after "=" and in the rest.
                extra = tuple(p for p in (keyword[5:], *params) if p)
                keyword, params = "AUTH", features.get("AUTH", ()) + extra
            elif keyword == "AUTH" and keyword in features:
                params = features[keyword] + params
            features[keyword] = params
        return cls(server_name, MappingProxyType(features), esmtp=True)

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self.features

    def __iter__(self) -> Iterator[str]:
        return iter(self.features)

    def params(self, keyword: str) -> tuple[str, ...]:
        """The parameters of *keyword*, or () if it was not advertised."""
        return self.features.get(keyword.upper(), ())

    @property
    def max_size(self) -> int | None:
        """SIZE limit in octets; None when SIZE is absent, 0 or has no value (no limit)."""
        values = self.features.get("SIZE")
        # ASCII digits only: str.isdigit() is also true for "²", which int()
        # refuses, and int() would read other scripts' digits ("٣").
        if not values or not (values[0].isascii() and values[0].isdigit()):
            return None
        limit = int(values[0])
        return limit or None

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """The SASL mechanisms offered, upper-cased."""
        return frozenset(m.upper() for m in self.params("AUTH"))

    # The typed properties below look keywords up directly (they are stored
    # upper-cased): they are asked on every message.

    @property
    def pipelining(self) -> bool:
        """PIPELINING (RFC 2920)."""
        return "PIPELINING" in self.features

    @property
    def chunking(self) -> bool:
        """CHUNKING: BDAT (RFC 3030)."""
        return "CHUNKING" in self.features

    @property
    def binarymime(self) -> bool:
        """BINARYMIME (RFC 3030); only meaningful with CHUNKING."""
        return "BINARYMIME" in self.features

    @property
    def eightbitmime(self) -> bool:
        """8BITMIME (RFC 6152)."""
        return "8BITMIME" in self.features

    @property
    def smtputf8(self) -> bool:
        """SMTPUTF8 (RFC 6531)."""
        return "SMTPUTF8" in self.features

    @property
    def dsn(self) -> bool:
        """DSN (RFC 3461)."""
        return "DSN" in self.features

    @property
    def starttls(self) -> bool:
        """STARTTLS (RFC 3207)."""
        return "STARTTLS" in self.features

    @property
    def requiretls(self) -> bool:
        """REQUIRETLS (RFC 8689)."""
        return "REQUIRETLS" in self.features

    @property
    def enhanced_status_codes(self) -> bool:
        """ENHANCEDSTATUSCODES (RFC 2034)."""
        return "ENHANCEDSTATUSCODES" in self.features
