"""How much TLS direct delivery demands of one MX host, and why.

``host_tls()`` is the single decision point: given the recipient domain,
the MX host and what is known about the domain's policies, it returns the
``TLSPolicy`` that applies (recorded in each outcome) with the TLS mode,
context and verification the session must use.  DANE (RFC 7672) takes
precedence over MTA-STS for a host (RFC 8461 §2): direct delivery asks
``dane.host_policy()`` first and comes here only when no usable, secure
TLSA records decide the host.

``DomainTLS`` holds one domain's MTA-STS state for a delivery: the policy
discovered (``mtasts_fetch.discover``), the filter that keeps an enforce
policy's non-matching MX hosts from ever being looked up, and the words
that name the policy in reasons.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from smtpclient.mtasts import PolicyCache, STSMode, STSPolicy
from smtpclient.mtasts_fetch import PolicyLookup, discover
from smtpclient.netpolicy import TargetPolicy
from smtpclient.resolver import Resolver
from smtpclient.tls import TLSInfo, TLSMode, shared_verifying_context
from smtpclient.tlspolicy import TLSPolicy

__all__ = ["DomainTLS", "HostTLS", "host_tls"]


@dataclass(frozen=True)
class HostTLS:
    """The TLS a session with one MX host must use.

    Attributes:
        policy: the ``TLSPolicy`` recorded in outcomes.
        mode: the session's ``TLSMode``.
        context: the SSL context (None: the session's default).
        required: True when a missing STARTTLS or an unverified
            certificate fails the host (no opportunistic fallback).
        mechanism: "mta-sts" (or "dane") when a domain policy decided,
            "" otherwise; deferral reasons name it.
    """

    policy: TLSPolicy
    mode: TLSMode
    context: ssl.SSLContext | None
    required: bool = False
    mechanism: str = ""


def _verifying(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """*context* if it verifies certificates and names, else certifi's."""
    if context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname:
        return context
    return shared_verifying_context()


def host_tls(
    domain: str,
    host: str,
    sts: STSPolicy | None,
    *,
    tls: TLSMode,
    ssl_context: ssl.SSLContext | None,
) -> HostTLS:
    """The TLS decision for MX *host* of *domain*.

    * MTA-STS ``enforce`` (RFC 8461 §4.2): STARTTLS required, certificate
      verified (PKIX, with *ssl_context* if it verifies, else certifi) for
      the MX name; a host that cannot do it is not delivered to.
    * MTA-STS ``testing``: the caller's *tls* mode; failures are recorded.
    * otherwise the caller's *tls* mode ("opportunistic" or "none").

    An address literal has no name to verify: no domain policy applies.
    """
    del domain  # the DANE lookup will key on it
    literal = host.startswith("[")
    if sts is not None and sts.mode is STSMode.ENFORCE and not literal:
        mode = TLSMode.IMPLICIT if tls is TLSMode.IMPLICIT else TLSMode.STARTTLS
        return HostTLS(TLSPolicy.MTA_STS_ENFORCE, mode, _verifying(ssl_context), True, "mta-sts")
    if sts is not None and sts.mode is STSMode.TESTING and not literal:
        return HostTLS(TLSPolicy.MTA_STS_TESTING, tls, ssl_context, False, "mta-sts")
    policy = TLSPolicy.NONE if tls is TLSMode.NONE else TLSPolicy.OPPORTUNISTIC
    return HostTLS(policy, tls, ssl_context)


class DomainTLS:
    """One recipient domain's transport-security state for a delivery."""

    def __init__(
        self,
        domain: str,
        lookup: PolicyLookup | None,
        *,
        tls: TLSMode,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.domain = domain
        self.lookup = lookup
        self.tls = tls
        self.ssl_context = ssl_context
        policy = lookup.policy if lookup is not None else None
        self.sts = policy if policy is not None and policy.mode is not STSMode.NONE else None

    @classmethod
    def discover(
        cls,
        domain: str,
        *,
        enabled: bool,
        resolver: Resolver,
        cache: PolicyCache,
        target_policy: TargetPolicy,
        fetch_context: ssl.SSLContext | None,
        port: int,
        tls: TLSMode,
        ssl_context: ssl.SSLContext | None,
    ) -> DomainTLS:
        """Look the domain's MTA-STS policy up (when *enabled* and the
        domain is a name, not an address literal); never raises for
        network trouble."""
        lookup = None
        if enabled and not domain.startswith("["):
            lookup = discover(
                domain,
                resolver=resolver,
                cache=cache,
                target_policy=target_policy,
                ssl_context=fetch_context,
                port=port,
            )
        return cls(domain, lookup, tls=tls, ssl_context=ssl_context)

    def describe(self) -> str:
        """One line on what discovery found, for traces and the CLI."""
        lookup = self.lookup
        if lookup is None:
            return ""
        if lookup.policy is None:
            text = "no policy"
        else:
            text = f"{lookup.policy.mode} ({lookup.source}): {lookup.policy}"
        return f"{text}; {lookup.note}" if lookup.note else text

    @property
    def policy(self) -> TLSPolicy:
        """The policy recorded for recipients no host decided for."""
        return host_tls(self.domain, self.domain, self.sts, tls=self.tls, ssl_context=None).policy

    @property
    def accept_host(self) -> Callable[[str], bool] | None:
        """Under enforce, the filter for MX host names; else None."""
        if self.sts is not None and self.sts.mode is STSMode.ENFORCE:
            return self.sts.matches
        return None

    def for_host(self, host: str) -> HostTLS:
        """``host_tls()`` for *host* of this domain."""
        return host_tls(self.domain, host, self.sts, tls=self.tls, ssl_context=self.ssl_context)

    def named(self, decision: HostTLS | None = None) -> str:
        """Words naming the policy, to start a reason: "mta-sts enforce
        policy of example.com"."""
        policy = decision.policy if decision is not None else self.policy
        return f"{policy} policy of {self.domain}"

    def no_match(self) -> str:
        """The reason when an enforce policy's patterns match no MX host."""
        assert self.sts is not None
        return (
            f"{self.named()}: no MX host matches the policy's mx patterns "
            f"({', '.join(self.sts.mx)}); not delivered"
        )

    def testing_failure(self, host: str, tls: TLSInfo | None) -> str | None:
        """What an enforce policy would have refused about a session with
        *host* under a testing policy (None: nothing)."""
        if self.sts is None or self.sts.mode is not STSMode.TESTING or host.startswith("["):
            return None
        problems = []
        if not self.sts.matches(host):
            problems.append(f"MX host {host} does not match the policy's mx patterns")
        if tls is None:
            problems.append(f"{host} did not use TLS")
        elif not tls.verified:
            problems.append(f"{host}'s certificate was not verified ({tls.verify_error or '?'})")
        return f"{self.named()}: {'; '.join(problems)}" if problems else None
