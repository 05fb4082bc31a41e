"""DKIM signing (RFC 6376; Ed25519 per RFC 8463), with dkimpy (the ``dkim`` extra).

``DKIMSigner`` holds one domain's key.  ``sign_message`` and ``sign_raw``
make the bytes that go out and put one DKIM-Signature per signer at the
top; the faces (``send()``, ``Mailer``, ``deliver()``, the Django backend,
the CLI) send exactly those bytes.

What is signed is what goes on the wire, before dot-stuffing: a message
object is serialised once in a form every server takes -- 8-bit body parts
re-encoded as quoted-printable or base64 (RFC 6376 §5.3 asks signers to do
so), non-ASCII header text as RFC 2047 encoded words, non-ASCII domains as
A-labels; UTF-8 headers only when an address needs SMTPUTF8, which a
server without it could not take anyway -- so the bytes never depend on
the server and are signed once, for every MX host and every retry.  Raw
content (bytes or str) is signed with its line ends made CRLF, as it will
be sent.  dkimpy is imported on first use, so ``import smtpclient`` stays
light.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from email.message import Message
from typing import Any

from smtpclient.body import BodySource, check_content
from smtpclient.errors import DKIMError
from smtpclient.message import envelope_addresses, serialise
from smtpclient.protocol.commands import normalise_domain
from smtpclient.protocol.data import canonicalise

__all__ = [
    "ALGORITHMS",
    "DKIMSigner",
    "Signers",
    "dns_txt_function",
    "key_algorithm",
    "sign_item",
    "sign_message",
    "sign_raw",
    "signed_for_delivery",
    "signers_from",
]

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
_CANONICALIZATIONS = ("simple", "relaxed")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_RSA_OID = bytes.fromhex("06092a864886f70d010101")  # 1.2.840.113549.1.1.1
_ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112
_ED25519_SEED = bytes.fromhex("04220420")  # OCTET STRING { OCTET STRING (32) }


class DKIMSigner:
    """One signing key: ``DKIMSigner(domain, selector, private_key, *,
    algorithm="rsa-sha256", headers=None, canonicalization="relaxed/relaxed")``.

    *private_key* is a PEM private key (bytes or str): PKCS#8 ("BEGIN
    PRIVATE KEY"), RSA or Ed25519, or PKCS#1 ("BEGIN RSA PRIVATE KEY").
    *algorithm* must match the key.  *headers* are the header fields to
    sign (default: dkimpy's list of the usual ones; "From" is always
    included, RFC 6376 §5.4).  *canonicalization* is "header/body", each
    "simple" or "relaxed".  The public key to publish is ``dns_record()``
    at ``record_name``.  Safe to share between threads.

    Raises:
        ImportError: dkimpy (or, for Ed25519, PyNaCl) is not installed:
            ``pip install smtpclient[dkim]``.
        ValueError: a malformed domain, selector or canonicalization, an
            unknown algorithm, a key that cannot be read, is not of
            *algorithm*'s type, or is an RSA key under 1024 bits.
    """

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key: bytes | str,
        *,
        algorithm: str = "rsa-sha256",
        headers: Sequence[str] | None = None,
        canonicalization: str = "relaxed/relaxed",
    ) -> None:
        _dkimpy(algorithm)
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        self.domain = normalise_domain(domain).lower()
        if not isinstance(selector, str) or not _SELECTOR.fullmatch(selector):
            raise ValueError(f"a DKIM selector is one or more DNS labels, not {selector!r}")
        self.selector = selector
        self.algorithm = algorithm
        header_c, _, body_c = canonicalization.partition("/")
        body_c = body_c or "simple"  # RFC 6376 §3.5: "c=relaxed" is relaxed/simple
        if header_c not in _CANONICALIZATIONS or body_c not in _CANONICALIZATIONS:
            raise ValueError(
                "canonicalization is 'header/body', each 'simple' or 'relaxed', "
                f"not {canonicalization!r}"
            )
        self.canonicalization = f"{header_c}/{body_c}"
        if headers is not None:
            if isinstance(headers, str):
                raise TypeError("headers must be a sequence of header names, not one string")
            names = [str(name).strip() for name in headers]
            if "from" not in {name.lower() for name in names}:
                names.insert(0, "From")
            self.headers: tuple[str, ...] | None = tuple(names)
        else:
            self.headers = None
        kind, self._key, self._public = _read_key(private_key)
        if (kind == "ed25519") != (algorithm == "ed25519-sha256"):
            raise ValueError(
                f"the key is an {kind.upper()} key but algorithm is {algorithm!r}; pass "
                f"algorithm={'ed25519-sha256' if kind == 'ed25519' else 'rsa-sha256'!r}"
            )

    @property
    def record_name(self) -> str:
        """Where the public key is published: ``<selector>._domainkey.<domain>``."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at ``record_name`` (RFC 6376 §3.6.1)."""
        kind = "ed25519" if self.algorithm == "ed25519-sha256" else "rsa"
        return f"v=DKIM1; k={kind}; p={base64.b64encode(self._public).decode('ascii')}"

    def sign(self, message: bytes) -> bytes:
        """The DKIM-Signature header field (CRLF-terminated, folded) for
        *message*, CRLF bytes exactly as they will be sent.

        Raises:
            DKIMError: dkimpy could not sign it (no From header, say).
        """
        import dkim  # type: ignore[import-untyped]  # noqa: PLC0415 (optional extra)

        header_c, body_c = self.canonicalization.split("/")
        try:
            field: bytes = dkim.sign(
                message,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self._key,
                canonicalize=(header_c.encode("ascii"), body_c.encode("ascii")),
                signature_algorithm=self.algorithm.encode("ascii"),
                include_headers=(
                    None if self.headers is None else [h.encode("ascii") for h in self.headers]
                ),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:
            raise DKIMError(f"DKIM signing for {self.domain} failed: {exc}") from exc
        return field

    def __repr__(self) -> str:  # never the key
        return f"<DKIMSigner d={self.domain} s={self.selector} a={self.algorithm}>"


Signers = tuple[DKIMSigner, ...]


def key_algorithm(private_key: bytes | str) -> str:
    """The algorithm for a PEM private key: "ed25519-sha256" or "rsa-sha256".

    Raises:
        ValueError: not a PEM private key of either kind.
    """
    return "ed25519-sha256" if _read_key(private_key)[0] == "ed25519" else "rsa-sha256"


def signers_from(dkim: DKIMSigner | Sequence[DKIMSigner] | None) -> Signers:
    """The ``dkim=`` argument as a tuple (empty: no signing).

    Raises:
        TypeError: something other than DKIMSigner objects.
    """
    if dkim is None:
        return ()
    found = (dkim,) if isinstance(dkim, DKIMSigner) else tuple(dkim)
    for signer in found:
        if not isinstance(signer, DKIMSigner):
            raise TypeError(f"dkim= takes DKIMSigner objects, not {type(signer).__name__}")
    return found


def sign_message(
    message: Message,
    signers: Signers,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    tls_optional: bool = False,
) -> tuple[str, list[str], bytes]:
    """The envelope and the signed bytes of *message* (see the module docstring).

    Raises:
        ValueError: as ``envelope_addresses`` and ``serialise``
            (``HeaderInjectionError`` included); ``DKIMError``.
    """
    sender, rcpts = envelope_addresses(message, sender, recipients)
    international = not all(_local(a).isascii() for a in [sender, *rcpts])
    data = serialise(
        message,
        utf8=international,
        seven_bit=True,
        extra_headers=[("TLS-Required", "No")] if tls_optional else (),
        signers=signers,
    )
    return sender, rcpts, data


def sign_raw(data: BodySource, signers: Signers) -> bytes:
    """Raw content with its line ends made CRLF (as it is sent) and signed.

    Raises:
        TypeError: *data* is not bytes or str (a file or iterable cannot be
            signed before it is sent).
        NulOctetError, HeaderInjectionError: see ``body.check_content``.
        DKIMError: dkimpy could not sign it.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
    else:
        raise TypeError("DKIM signing needs the message in memory: a Message, bytes or str")
    check_content(data)
    canonical = canonicalise(data)
    if canonical and not canonical.endswith(b"\r\n"):
        canonical += b"\r\n"  # what the encoder adds on the wire
    return b"".join([signer.sign(canonical) for signer in signers]) + canonical


def sign_item(
    item: Message | tuple[str, Sequence[str] | str, BodySource], signers: Signers
) -> tuple[str, Sequence[str] | str, bytes]:
    """A ``send_many`` item (a Message or a ``(sender, recipients, data)``
    tuple) as a signed raw tuple.

    Raises: as ``sign_message`` and ``sign_raw``; TypeError for anything else.
    """
    if isinstance(item, Message):
        return sign_message(item, signers)
    if isinstance(item, tuple) and len(item) == 3:
        sender, recipients, data = item
        return sender, recipients, sign_raw(data, signers)
    raise TypeError("send_many() items are Messages or (sender, recipients, data) tuples")


def signed_for_delivery(
    message: Message | BodySource,
    dkim: DKIMSigner | Sequence[DKIMSigner],
    sender: str | None,
    recipients: str | Sequence[str] | None,
) -> tuple[bytes, str | None, str | Sequence[str] | None]:
    """``deliver()``'s content, envelope signed: (data, sender, recipients).

    Raises: as ``sign_message`` and ``sign_raw``.
    """
    signers = signers_from(dkim)
    if isinstance(message, Message):
        sender, rcpts, data = sign_message(message, signers, sender=sender, recipients=recipients)
        return data, sender, rcpts
    return sign_raw(message, signers), sender, recipients


def dns_txt_function(resolver: Any) -> Callable[..., bytes | None]:
    """A ``dnsfunc`` for ``dkim.verify`` that looks TXT records up through
    the library's ``Resolver`` (its ``txt()``)."""

    def lookup(name: bytes, timeout: float = 5.0) -> bytes | None:
        records = resolver.txt(name.decode("ascii").rstrip("."))
        return records[0].encode("utf-8") if records else None

    return lookup


def _local(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _dkimpy(algorithm: str) -> None:
    try:
        import dkim  # noqa: F401, PLC0415

        if algorithm == "ed25519-sha256":
            import nacl.signing  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ImportError(
            "DKIM signing needs the 'dkim' extra: pip install smtpclient[dkim]"
        ) from exc


def _read_key(private_key: bytes | str) -> tuple[str, bytes, bytes]:
    """("rsa" or "ed25519", the key as dkimpy takes it, the public key DER/raw).

    Raises:
        ValueError: not a PEM private key of either kind, or RSA under 1024 bits.
    """
    pem = private_key.encode("ascii") if isinstance(private_key, str) else bytes(private_key)
    found = _PEM.search(pem)
    if found is None:
        raise ValueError("private_key must be a PEM private key ('-----BEGIN PRIVATE KEY-----')")
    try:
        der = base64.b64decode(b"".join(found.group(2).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the PEM private key is not valid base64: {exc}") from exc
    label = found.group(1)
    if label == b"PRIVATE KEY" and _ED25519_OID in der[:16]:
        start = der.find(_ED25519_SEED)
        seed = der[start + 4 : start + 36] if start >= 0 else b""
        if len(seed) != 32:
            raise ValueError("the Ed25519 private key could not be read (PKCS#8 expected)")
        import nacl.signing  # noqa: PLC0415

        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        return "ed25519", base64.b64encode(seed), public
    if label not in (b"PRIVATE KEY", b"RSA PRIVATE KEY") or (
        label == b"PRIVATE KEY" and _RSA_OID not in der[:32]
    ):
        raise ValueError("private_key must be an RSA or Ed25519 private key in PEM")
    from dkim.crypto import (  # type: ignore[import-untyped]  # noqa: PLC0415
        UnparsableKeyError,
        parse_private_key,
    )

    try:
        key = parse_private_key(der)
    except UnparsableKeyError as exc:
        raise ValueError(f"the RSA private key could not be read: {exc}") from exc
    modulus, exponent = int(key["modulus"]), int(key["publicExponent"])
    if modulus.bit_length() < 1024:
        raise ValueError("RSA keys under 1024 bits are refused (RFC 8301 §3.2)")
    clean = b"-----BEGIN " + label + b"-----\n" + base64.encodebytes(der) + b"-----END "
    return "rsa", clean + label + b"-----\n", _rsa_public_der(modulus, exponent)


def _rsa_public_der(modulus: int, exponent: int) -> bytes:
    """SubjectPublicKeyInfo (RFC 5280) for an RSA public key, DER."""
    key = _der(0x30, _der_int(modulus) + _der_int(exponent))
    algorithm = _der(0x30, _RSA_OID + b"\x05\x00")
    return _der(0x30, algorithm + _der(0x03, b"\x00" + key))


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0: positive
    return _der(0x02, body)


def _der(tag: int, body: bytes) -> bytes:
    length = len(body)
    if length < 0x80:
        return bytes([tag, length]) + body
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body
