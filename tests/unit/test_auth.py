"""SASL mechanisms, sans-IO: the bytes each one produces, checked against the
RFCs' own examples; SASLprep; which mechanism is chosen; secrets kept out of
repr and messages."""

from __future__ import annotations

import base64
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpclient.auth import MECHANISMS, OAuth2, Password, SASLError, choose, saslprep
from smtpclient.errors import ExtensionNotSupported
from smtpclient.mechanisms import (
    CramMD5,
    Login,
    OAuthBearer,
    Plain,
    ScramSHA1,
    ScramSHA256,
    XOAuth2,
)

# --- PLAIN, LOGIN, CRAM-MD5 ---------------------------------------------------------


def test_plain_is_empty_authzid_user_and_password() -> None:
    # RFC 4616 §4 example, without an authorization identity.
    assert Plain(Password("tim", "tanstaaftanstaaf")).initial() == b"\0tim\0tanstaaftanstaaf"


def test_plain_sends_non_ascii_as_utf8() -> None:
    assert Plain(Password("jörg", "pässwörd")).initial() == (
        b"\0j\xc3\xb6rg\0p\xc3\xa4ssw\xc3\xb6rd"
    )


def test_plain_refuses_a_challenge_after_its_initial_response() -> None:
    with pytest.raises(SASLError):
        Plain(Password("u", "p")).respond(b"")


def test_login_answers_user_then_password_then_refuses() -> None:
    login = Login(Password("jörg", "secret"))
    assert login.initial() is None
    assert login.respond(b"Username:") == "jörg".encode()
    assert login.respond(b"Password:") == b"secret"
    with pytest.raises(SASLError, match="more than"):
        login.respond(b"Again:")


def test_cram_md5_matches_rfc_2195() -> None:
    # RFC 2195 §2 example.
    cram = CramMD5(Password("tim", "tanstaaftanstaaf"))
    assert cram.initial() is None
    response = cram.respond(b"<1896.697170952@postoffice.reston.mci.net>")
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(SASLError):
        cram.respond(b"<again>")


# --- SCRAM: RFC 5802 §5 and RFC 7677 §3 test vectors --------------------------------

SCRAM_VECTORS = [
    pytest.param(
        ScramSHA1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        id="RFC5802-SCRAM-SHA-1",
    ),
    pytest.param(
        ScramSHA256,
        "rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        id="RFC7677-SCRAM-SHA-256",
    ),
]


@pytest.mark.parametrize(
    ("cls", "nonce", "server_first", "client_final", "server_final"), SCRAM_VECTORS
)
def test_scram_reproduces_the_rfc_exchange(
    cls: type[ScramSHA1], nonce: str, server_first: str, client_final: str, server_final: str
) -> None:
    scram = cls(Password("user", "pencil"), nonce=nonce)
    assert scram.initial() == f"n,,n=user,r={nonce}".encode()
    assert scram.respond(server_first.encode()) == client_final.encode()
    assert scram.respond(server_final.encode()) == b""
    scram.finish()  # the server proved it knows the password


@pytest.mark.parametrize(
    ("cls", "nonce", "server_first", "client_final", "server_final"), SCRAM_VECTORS
)
def test_scram_rejects_a_wrong_server_signature(
    cls: type[ScramSHA1], nonce: str, server_first: str, client_final: str, server_final: str
) -> None:
    scram = cls(Password("user", "pencil"), nonce=nonce)
    scram.respond(server_first.encode())
    forged = "v=" + base64.b64encode(b"\0" * (20 if cls is ScramSHA1 else 32)).decode()
    with pytest.raises(SASLError, match="signature is wrong"):
        scram.respond(forged.encode())
    with pytest.raises(SASLError, match="without proving"):
        scram.finish()


@pytest.mark.parametrize(
    ("server_first", "message"),
    [
        ("r=someoneelse123,s=QSXCR+Q6sek8bf92,i=4096", "does not extend ours"),
        ("r=abc,s=QSXCR+Q6sek8bf92,i=4096", "does not extend ours"),  # nonce unchanged
        ("r=abcdef,s=QSXCR+Q6sek8bf92,i=0", "iteration count"),
        ("r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999", "iteration count"),
        ("r=abcdef,s=QSXCR+Q6sek8bf92", "malformed"),
        ("r=abcdef,s=not base64!,i=4096", "malformed"),
        ("m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096", "extension"),
        ("e=unknown-user", "unknown-user"),
    ],
)
def test_scram_refuses_a_bad_server_first_message(server_first: str, message: str) -> None:
    scram = ScramSHA256(Password("user", "pencil"), nonce="abc")
    with pytest.raises(SASLError, match=message):
        scram.respond(server_first.encode())


def test_scram_escapes_comma_and_equals_in_the_user_name() -> None:
    scram = ScramSHA256(Password("a,b=c", "pencil"), nonce="n0nce")
    assert scram.initial() == b"n,,n=a=2Cb=3Dc,r=n0nce"


def test_scram_nonces_are_fresh_and_printable() -> None:
    first = {ScramSHA256(Password("u", "p")).initial() for _ in range(20)}
    assert len(first) == 20
    for message in first:
        nonce = message.decode().split("r=", 1)[1]
        assert len(nonce) >= 24 and "," not in nonce and nonce.isprintable()


def test_scram_saslpreps_the_password() -> None:
    # "I\u00adX" and "IX" are the same password after SASLprep.
    a = ScramSHA1(Password("user", "I\u00adX"), nonce="fyko+d2lbbFgONRv9qkxdawL")
    b = ScramSHA1(Password("user", "IX"), nonce="fyko+d2lbbFgONRv9qkxdawL")
    first = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    assert a.respond(first) == b.respond(first)


def test_scram_refuses_a_bad_password_before_sending_and_without_quoting_it() -> None:
    with pytest.raises(SASLError) as info:
        ScramSHA256(Password("user", "bell\u0007"))
    assert "bell" not in str(info.value) and "U+0007" not in str(info.value)
    assert "password" in str(info.value)


# --- SASLprep (RFC 4013 §3 examples, and more) -------------------------------------


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),  # case is kept
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # ROMAN NUMERAL NINE, NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space becomes SPACE
        ("a\u200bb", "ab"),  # ZERO WIDTH SPACE is "mapped to nothing"
        ("pässwörd", "pässwörd"),
        ("\u0627\u0628", "\u0627\u0628"),  # all right-to-left is fine
        ("", ""),
    ],
)
def test_saslprep_maps(given_text: str, expected: str) -> None:
    assert saslprep(given_text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "\u0007",  # control character (RFC 4013 example)
        "a\u0000b",
        "\ue000",  # private use
        "\ufdd0",  # non-character
        "\u0627\u0031",  # RFC 4013 example: RTL followed by a digit
        "\u0627a\u0628",  # RTL mixed with LTR
        "\u0221",  # unassigned in Unicode 3.2
    ],
)
def test_saslprep_refuses(bad: str) -> None:
    with pytest.raises(SASLError):
        saslprep(bad)


@given(st.text(max_size=30))
def test_saslprep_is_idempotent_or_refuses(text: str) -> None:
    try:
        once = saslprep(text)
    except SASLError:
        return
    assert saslprep(once) == once


# --- OAuth mechanisms ----------------------------------------------------------------


def test_xoauth2_initial_response_is_googles_format() -> None:
    token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    mech = XOAuth2(OAuth2("someuser@example.com", token))
    assert mech.initial() == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    )
    # On failure: a JSON error challenge, answered with an empty response.
    assert mech.respond(b'{"status":"401","schemes":"bearer"}') == b""
    assert mech.failure_detail() == '{"status":"401","schemes":"bearer"}'
    with pytest.raises(SASLError):
        mech.respond(b"{}")


def test_oauthbearer_matches_rfc_7628() -> None:
    # RFC 7628 §4.1 example.
    credentials = OAuth2(
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    mech = OAuthBearer(credentials)
    assert mech.initial() == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01"
    )
    # §3.2.3: the error challenge is answered with a single 0x01.
    assert mech.respond(b'{"status":"invalid_token"}') == b"\x01"


def test_oauthbearer_escapes_the_user_name() -> None:
    mech = OAuthBearer(OAuth2("a,b=c", "tok"))
    assert mech.initial().startswith(b"n,a=a=2Cb=3Dc,\x01")


def test_a_token_callable_is_called_for_each_exchange() -> None:
    tokens = iter(["first", "second"])
    credentials = OAuth2("u", lambda: next(tokens))
    assert b"Bearer first" in XOAuth2(credentials).initial()
    assert b"Bearer second" in XOAuth2(credentials).initial()


@pytest.mark.parametrize("token", ["", "has space", "line\r\nbreak", "a\x01b"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        OAuth2("u", token).current_token()


def test_a_callable_returning_a_non_string_is_refused() -> None:
    with pytest.raises(TypeError):
        OAuth2("u", lambda: None).current_token()  # type: ignore[arg-type,return-value]


def test_oauth_user_names_may_not_hold_control_characters() -> None:
    with pytest.raises(ValueError, match="control"):
        OAuth2("a\x01b", "token")


# --- choosing a mechanism ------------------------------------------------------------

ALL = frozenset(MECHANISMS)
PASSWORD = Password("user", "secret")
TOKEN = OAuth2("user", "token")


@pytest.mark.parametrize(
    ("credentials", "offered", "expected"),
    [
        (PASSWORD, ALL, "SCRAM-SHA-256"),
        (PASSWORD, {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1"}, "SCRAM-SHA-1"),
        (PASSWORD, {"PLAIN", "LOGIN", "CRAM-MD5"}, "CRAM-MD5"),
        (PASSWORD, {"LOGIN", "PLAIN"}, "PLAIN"),
        (PASSWORD, {"LOGIN"}, "LOGIN"),
        (PASSWORD, {"LOGIN", "XOAUTH2", "OAUTHBEARER"}, "LOGIN"),  # never an OAuth one
        (PASSWORD, {"GSSAPI", "NTLM", "PLAIN"}, "PLAIN"),  # unknown ones are ignored
        (TOKEN, ALL, "OAUTHBEARER"),
        (TOKEN, {"XOAUTH2", "PLAIN", "LOGIN"}, "XOAUTH2"),  # never a password one
        (TOKEN, {"OAUTHBEARER", "PLAIN"}, "OAUTHBEARER"),
    ],
)
def test_the_strongest_fitting_mechanism_is_chosen(
    credentials: Password | OAuth2, offered: set[str], expected: str
) -> None:
    assert choose(credentials, frozenset(offered), None) == expected


@pytest.mark.parametrize(
    ("credentials", "offered", "expected"),
    [
        (PASSWORD, ALL, "PLAIN"),
        (PASSWORD, {"LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}, "SCRAM-SHA-256"),
        (PASSWORD, {"LOGIN", "CRAM-MD5"}, "CRAM-MD5"),
        (TOKEN, ALL, "OAUTHBEARER"),  # tokens keep their order
    ],
)
def test_over_verified_tls_plain_comes_first(
    credentials: Password | OAuth2, offered: set[str], expected: str
) -> None:
    assert choose(credentials, frozenset(offered), None, verified_tls=True) == expected


@pytest.mark.parametrize(
    ("credentials", "offered"),
    [
        (PASSWORD, {"XOAUTH2", "OAUTHBEARER"}),
        (PASSWORD, set()),
        (TOKEN, {"PLAIN", "LOGIN", "SCRAM-SHA-256"}),
    ],
)
def test_nothing_fitting_offered_is_extension_not_supported(
    credentials: Password | OAuth2, offered: set[str]
) -> None:
    with pytest.raises(ExtensionNotSupported) as info:
        choose(credentials, frozenset(offered), None)
    assert info.value.extension == "AUTH"


@pytest.mark.parametrize(("requested", "expected"), [("plain", "PLAIN"), ("LOGIN", "LOGIN")])
def test_a_named_mechanism_wins_over_strength(requested: str, expected: str) -> None:
    assert choose(PASSWORD, ALL, requested) == expected


@pytest.mark.parametrize(
    ("credentials", "requested", "error"),
    [
        (PASSWORD, "XOAUTH2", ValueError),  # wrong kind for a password
        (TOKEN, "PLAIN", ValueError),  # wrong kind for a token
        (PASSWORD, "GSSAPI", ValueError),  # not implemented here
        (PASSWORD, "CRAM-MD5", ExtensionNotSupported),  # not offered below
    ],
)
def test_a_named_mechanism_that_cannot_be_used_is_refused(
    credentials: Password | OAuth2, requested: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        choose(credentials, frozenset({"PLAIN", "LOGIN", "XOAUTH2"}), requested)


# --- secrets stay out of repr, str and messages --------------------------------------


def test_repr_never_shows_a_secret() -> None:
    assert "secret" not in repr(Password("user", "secret"))
    assert "tok3n" not in repr(OAuth2("user", "tok3n"))
    assert "user" in repr(Password("user", "secret"))


def test_mechanism_errors_never_quote_the_password() -> None:
    scram = ScramSHA256(Password("user", "hunter2"), nonce="abc")
    with pytest.raises(SASLError) as info:
        scram.respond(b"r=zzz,s=QSXCR+Q6sek8bf92,i=4096")
    assert "hunter2" not in str(info.value)


def test_credentials_are_frozen_values() -> None:
    credentials = Password("user", "secret")
    with pytest.raises(AttributeError):
        credentials.password = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(credentials)) == credentials


def test_credentials_types_are_checked() -> None:
    with pytest.raises(TypeError):
        Password("user", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL") as info:
        Password("user", "hunter\0two")  # would split PLAIN's message differently
    assert "hunter" not in str(info.value) and "two" not in str(info.value)
    with pytest.raises(ValueError, match="NUL"):
        Password("us\0er", "password")
    with pytest.raises(TypeError):
        OAuth2(None, "t")  # type: ignore[arg-type]
