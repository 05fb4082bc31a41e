"""Django mail tests that read attributes internal to Django's SMTP backend.

Keyed by ``TestClass.test_method`` (the same names in every Django version);
the value is the reason, shown as the skip message.  docs/guide/webapps.md
lists the same tests.
"""

from __future__ import annotations

import os

_CONNECTION = "reads backend.connection, Django's smtplib.SMTP object (ours pools sessions)"
_MOCK_SMTPLIB = "mocks smtplib inside Django's backend module (ours does not use smtplib)"

EXCLUDED: dict[str, str] = {
    "SMTPBackendTests.test_server_open": _CONNECTION + " and backend._partial_connection",
    "SMTPBackendTests.test_reopen_connection": _CONNECTION,
    "SMTPBackendTests.test_reopen_replaces_partial_connection": (
        "reads backend._partial_connection, Django's half-opened smtplib.SMTP object"
    ),
    "SMTPBackendTests.test_connection_timeout_custom": _CONNECTION + " (its .timeout)",
    "SMTPBackendTests.test_smtp_connection_uses_timeout": _CONNECTION + " (its .timeout)",
    "SMTPBackendTests.test_serialized_message_uses_crlf_line_ending": (
        _CONNECTION + " (patches its sendmail method)"
    ),
    "SMTPBackendTests.test_send_messages_after_open_failed": (
        _CONNECTION + " (sets it to a mock and replaces open())"
    ),
    "SMTPBackendTests.test_email_tls_attempts_starttls": (
        _CONNECTION + "; also expects smtplib's message text"
    ),
    "SMTPBackendTests.test_email_ssl_attempts_ssl_connection": _CONNECTION,
    "SMTPBackendStoppedServerTests.test_fail_silently_on_connection_error": _CONNECTION,
    "SMTPBackendTests.test_smtp_connection_uses_host_and_port": _MOCK_SMTPLIB,
    "SMTPBackendTests.test_auth_attempted": _MOCK_SMTPLIB + " (smtplib.SMTP.login)",
    "SMTPBackendTests.test_ssl_context_uses_ssl_certfile_and_keyfile": (
        "reads backend.ssl_context with ssl.SSLContext mocked in Django's backend module"
    ),
}

if os.geteuid() == 0:
    # Not about the SMTP backend: root can write to a read-only directory.
    for _name in ("FileBackendTests", "FileBackendPathLibTests"):
        EXCLUDED[f"{_name}.test_error_if_file_path_is_not_writable"] = (
            "file backend test that cannot fail as root (run as root here)"
        )

EXCLUDED["SMTPBackendTests.test_email_msg_uses_crlf"] = (
    "patches smtplib.SMTP.send to capture the DATA (ours does not use smtplib; "
    "tests/integration/test_django_backend.py checks CRLF on the wire)"
)
