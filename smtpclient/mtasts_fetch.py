"""MTA-STS policy discovery (RFC 8461 §3, §5.1): DNS, then HTTPS, then the cache.

``discover(domain, ...)`` looks up ``_mta-sts.<domain>`` TXT through the
library's ``Resolver``; when it names a policy id the cache does not hold,
the policy is fetched from
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` and cached.

The fetch is deliberately narrow:

* the host name is resolved by the library's resolver (never the system's
  ``getaddrinfo``) and its addresses must pass the target policy (the
  domain owner picks that address: it is an SSRF vector like any MX);
* TLS is verified against certifi's CA bundle (or the caller's context),
  with SNI and the name check for ``mta-sts.<domain>``;
* one GET, HTTP/1.1, ``Connection: close``; only ``200`` with
  ``Content-Type: text/plain`` counts -- redirects are not followed (§3.3);
* at most ``MAX_POLICY_BYTES`` (64 KiB) of body, and one deadline for
  everything (connect, handshake, headers, body), enforced by shutting the
  socket down when it passes.

Failures follow §5.1: a policy still in the cache keeps applying; without
one, the domain is treated as having none (the failure is noted).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from smtpclient.dnslookup import DNSError, ascii_name
from smtpclient.errors import InvalidAddressError, PolicyFetchError  # re-exported here
from smtpclient.mtasts import (
    MAX_POLICY_BYTES,
    MTASTSError,
    PolicyCache,
    STSPolicy,
    parse_policy,
    parse_txt,
)
from smtpclient.netpolicy import TargetPolicy
from smtpclient.resolver import Resolver
from smtpclient.session.budget import CALL_DEADLINE
from smtpclient.tls import verifying_context

__all__ = [
    "FETCH_TIMEOUT",
    "PolicyFetchError",
    "PolicyLookup",
    "default_policy_cache",
    "discover",
    "fetch_policy",
]

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 20.0  # seconds for one whole policy fetch
POLICY_PATH = "/.well-known/mta-sts.txt"


@dataclass(frozen=True)
class PolicyLookup:
    """What discovery found for one domain.

    Attributes:
        policy: the policy that applies, or None.
        source: "fetched", "cached" or "none".
        note: why a policy was not fetched when one was announced (or
            the TXT record could not be read), for the report; "" if none.
    """

    policy: STSPolicy | None
    source: str
    note: str = ""


_default_cache: list[PolicyCache] = []
_default_lock = threading.Lock()


def default_policy_cache() -> PolicyCache:
    """The process-wide in-memory policy cache, made on first use."""
    with _default_lock:
        if not _default_cache:
            _default_cache.append(PolicyCache())
        return _default_cache[0]


def discover(
    domain: str,
    *,
    resolver: Resolver,
    cache: PolicyCache,
    target_policy: TargetPolicy = "public",
    ssl_context: ssl.SSLContext | None = None,
    port: int = 443,
    timeout: float = FETCH_TIMEOUT,
) -> PolicyLookup:
    """The MTA-STS policy that applies to *domain* now (RFC 8461 §5.1).
    Never raises for DNS, network or policy trouble: see ``note``."""
    cached = cache.get(domain)
    try:
        policy_id = parse_txt(resolver.txt(f"_mta-sts.{domain}"))
    except (DNSError, InvalidAddressError) as exc:
        note = f"_mta-sts TXT lookup failed: {exc}"
        return PolicyLookup(cached, "cached", note) if cached else PolicyLookup(None, "none", note)
    if policy_id is None:  # no (usable) record: a cached policy still applies
        return PolicyLookup(cached, "cached") if cached else PolicyLookup(None, "none")
    if cached is not None and cached.policy_id == policy_id:
        return PolicyLookup(cached, "cached")
    try:
        text = fetch_policy(
            domain,
            resolver=resolver,
            target_policy=target_policy,
            ssl_context=ssl_context,
            port=port,
            timeout=timeout,
        )
        policy = parse_policy(text, policy_id)
    except MTASTSError as exc:
        log.info("%s: MTA-STS policy %s not had: %s", domain, policy_id, exc.message)
        note = f"MTA-STS policy fetch failed: {exc.message}"
        return PolicyLookup(cached, "cached", note) if cached else PolicyLookup(None, "none", note)
    cache.put(domain, policy)
    return PolicyLookup(policy, "fetched")


def fetch_policy(
    domain: str,
    *,
    resolver: Resolver,
    target_policy: TargetPolicy = "public",
    ssl_context: ssl.SSLContext | None = None,
    port: int = 443,
    timeout: float = FETCH_TIMEOUT,
) -> str:
    """GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the text.

    Raises:
        PolicyFetchError: anything but a verified 200 text/plain answer of
            at most ``MAX_POLICY_BYTES`` within *timeout* seconds (fewer
            when the calling ``deliver()`` has less time left).
    """
    deadline = time.monotonic() + timeout
    call = CALL_DEADLINE.get()  # a deliver() deadline counts the fetch too
    if call is not None:
        deadline = min(deadline, call.expires)
    try:
        host = ascii_name(f"mta-sts.{domain}")
        addresses = resolver.host_addresses(host, target_policy=target_policy)
    except (DNSError, InvalidAddressError) as exc:
        raise PolicyFetchError(f"mta-sts.{domain}: {exc}", host=domain) from exc
    context = ssl_context if ssl_context is not None else verifying_context()
    failures: list[str] = []
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            raw = socket.create_connection((address, port), timeout=left)
        except OSError as exc:
            failures.append(f"{address}: {exc}")
            continue
        with raw:
            return _get(raw, context, host, port, deadline)
    detail = "; ".join(failures) or "out of time"
    raise PolicyFetchError(f"could not connect to {host} port {port}: {detail}", host=host)


def _get(raw: socket.socket, context: ssl.SSLContext, host: str, port: int, deadline: float) -> str:
    """One GET over *raw*; a timer shuts the socket down at *deadline* so
    that no stalled or dripping peer can hold the fetch longer (and what
    arrived by then is discarded: a cut-off policy is no policy).  The
    socket is closed only after the timer is stopped."""
    tls = context.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    fired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (tls, fired))
    watchdog.daemon = True
    watchdog.start()
    late = f"{host}: no complete answer within the time limit"
    try:
        tls.settimeout(max(0.001, deadline - time.monotonic()))
        tls.do_handshake()
        text = _exchange(tls, host, port, deadline)
    except ssl.SSLCertVerificationError as exc:
        raise PolicyFetchError(
            f"{host}: certificate not valid: {exc.verify_message}", host=host
        ) from exc
    except PolicyFetchError as exc:
        if fired.is_set():
            raise PolicyFetchError(late, host=host) from exc
        raise
    except (OSError, http.client.HTTPException) as exc:
        if fired.is_set() or isinstance(exc, TimeoutError):
            raise PolicyFetchError(late, host=host) from exc
        raise PolicyFetchError(f"{host}: {exc!r}", host=host) from exc
    finally:
        watchdog.cancel()
        watchdog.join()
        tls.close()
    if fired.is_set():
        raise PolicyFetchError(late, host=host)
    return text


def _shutdown(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    # The plain socket's shutdown: the TLS object belongs to the other thread.
    with contextlib.suppress(OSError):  # already closed: nothing to stop
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _exchange(tls: ssl.SSLSocket, host: str, port: int, deadline: float) -> str:
    connection = http.client.HTTPConnection(host, port, timeout=deadline - time.monotonic())
    connection.sock = tls  # http.client uses a socket it is given as it is
    authority = host if port == 443 else f"{host}:{port}"
    try:
        connection.putrequest("GET", POLICY_PATH, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", authority)
        connection.putheader("Accept", "text/plain")
        connection.putheader("Connection", "close")
        connection.putheader("User-Agent", "smtpclient-mta-sts")
        connection.endheaders()
        response = connection.getresponse()
        if response.status != 200:
            where = response.getheader("Location")
            extra = f" (to {where[:100]}; redirects are not followed)" if where else ""
            raise PolicyFetchError(f"{host}: HTTP {response.status}{extra}", host=host)
        media = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if media != "text/plain":
            raise PolicyFetchError(f"{host}: Content-Type {media!r}, not text/plain", host=host)
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_POLICY_BYTES:
            raise PolicyFetchError(f"{host}: policy of {length} bytes is too large", host=host)
        body = bytearray()
        while len(body) <= MAX_POLICY_BYTES:  # the watchdog bounds the time
            chunk = response.read(min(16384, MAX_POLICY_BYTES + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyFetchError(f"{host}: policy larger than {MAX_POLICY_BYTES} bytes")
    finally:
        connection.sock = None  # the caller closes the socket
        connection.close()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFetchError(f"{host}: policy is not UTF-8 text") from exc
