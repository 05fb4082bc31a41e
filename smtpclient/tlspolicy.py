"""Which transport-security policy applied to one delivery attempt.

Direct delivery decides, per recipient domain and mail host, how much TLS it
demands: nothing (``NONE``), STARTTLS when offered (``OPPORTUNISTIC``, RFC
7435), an MTA-STS policy (RFC 8461, ``MTA_STS_ENFORCE`` or
``MTA_STS_TESTING``) or DANE TLSA records (RFC 7672, ``DANE``).  The value
is recorded in each recipient's outcome (``Outcome.tls_policy``); its
``str()`` is the short name shown by reports and the command line.
"""

from __future__ import annotations

import enum

__all__ = ["TLSPolicy"]


class TLSPolicy(enum.Enum):
    """The TLS policy that applied to a delivery (``str()`` gives its name)."""

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    MTA_STS_ENFORCE = "mta-sts enforce"
    MTA_STS_TESTING = "mta-sts testing"
    DANE = "dane"

    def __str__(self) -> str:
        return self.value
