"""What differs between the Django versions the backend supports (4.2 LTS
to 6.1): message serialisation, and 6.1's deprecations and errors.  Django
6.1-only names are imported where they are used."""

from __future__ import annotations

import email.policy
import functools
import inspect
import re
import warnings
from typing import Any

__all__ = [
    "invalid_mailer",
    "message_bytes",
    "quiet_deprecated_setting_reads",
    "warn_direct_construction",
]


def message_bytes(message: Any) -> tuple[bytes, list[str]]:
    """A Django ``EmailMessage`` as it goes on the wire (CRLF line ends),
    and the names of its header fields in order."""
    if _modern_message(message.__class__):
        # Django 6.0+: a stdlib email.message.EmailMessage (its as_bytes()
        # takes no linesep); the SMTP policy gives CRLF, as Django's backend.
        built = message.message(policy=email.policy.SMTP)
        return bytes(built.as_bytes()), list(built.keys())
    built = message.message()
    return bytes(built.as_bytes(linesep="\r\n")), list(built.keys())


@functools.lru_cache(maxsize=64)
def _modern_message(cls: Any) -> bool:
    try:
        return "policy" in inspect.signature(cls.message).parameters
    except (TypeError, ValueError):
        return False


def warn_direct_construction() -> None:
    """Django 6.1's deprecation warning for a backend made outside mail.mailers."""
    # Django 6.1 deprecates creating backends outside mail.mailers (its own
    # SMTP backend warns the same way); get_connection() warns itself.
    from django.utils.deprecation import (  # noqa: PLC0415 (6.1+ only)
        RemovedInDjango2028Warning,
        warn_about_external_use,
    )

    warn_about_external_use(
        "Directly creating EmailBackend instances is deprecated. Use mail.mailers instead.",
        RemovedInDjango2028Warning,
        skip_name_prefixes="smtpclient.contrib.django",
    )


_QUIET_MESSAGE = r"The EMAIL_\w+ setting is deprecated\."


def quiet_deprecated_setting_reads(module: str) -> None:
    """Silence Django 6.1's warning for ``EMAIL_*`` reads made by *module*."""
    # Django 6.1 warns when code outside Django reads a deprecated EMAIL_*
    # setting; here the backend reads them on behalf of a project that
    # configured them, as Django's own backend does silently (the project
    # was already warned at start-up).  Only reads from this module are
    # silenced.  Checked on each use: catch_warnings() blocks restore the
    # filter list they saved.
    from django.utils.deprecation import RemovedInDjango2028Warning  # noqa: PLC0415

    for action, message, category, where, _ in warnings.filters:
        if (
            action == "ignore"
            and category is RemovedInDjango2028Warning
            and getattr(message, "pattern", None) == _QUIET_MESSAGE
            and getattr(where, "pattern", None) == re.escape(module)
        ):
            return
    warnings.filterwarnings("ignore", _QUIET_MESSAGE, RemovedInDjango2028Warning, re.escape(module))


def invalid_mailer(message: str, alias: str) -> Exception:
    """Django 6.1's ``InvalidMailer`` for *alias* (prefixed "MAILERS['alias']: ")."""
    from django.core.mail import InvalidMailer  # noqa: PLC0415 (6.1+ only)

    return InvalidMailer(message, alias=alias)  # type: ignore[no-any-return]
