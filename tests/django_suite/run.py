"""Run Django's own mail tests (tests/mail of a Django source tree) against
``smtpclient.contrib.django.EmailBackend``.

Usage::

    python tests/django_suite/run.py /path/to/django-X.Y.Z [runtests.py options]

The Django source tree is an unpacked sdist whose Django is the one
installed in this interpreter.  Before Django's test modules are imported,
``django.core.mail.backends.smtp.EmailBackend`` is replaced by our backend,
so every test that names Django's SMTP backend -- by class or by dotted
path, directly or through ``MAILERS`` -- runs ours.  The tests listed in
``excluded.py`` read attributes internal to Django's backend (its smtplib
connection object, its ssl_context, mocks of smtplib); they are reported
as skipped with the reason.  Exits non-zero if any other test fails.
"""

from __future__ import annotations

import os
import runpy
import sys
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the checkout's smtpclient package
sys.path.insert(0, str(HERE))

import django  # noqa: E402
import django.core.mail.backends.smtp as django_smtp  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from excluded import EXCLUDED  # noqa: E402

from smtpclient.contrib.django import EmailBackend  # noqa: E402


def _tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _tests(item)
        else:
            yield item


def _substitute_backend() -> type:
    django_smtp.EmailBackend = EmailBackend  # type: ignore[misc]
    return EmailBackend


def _install_exclusions(ours: type, skipped: list[str]) -> None:
    build_suite = DiscoverRunner.build_suite

    def build_suite_with_exclusions(self: Any, *args: Any, **kwargs: Any) -> Any:
        if django_smtp.EmailBackend is not ours:
            raise SystemExit("harness: Django's SMTP backend was not replaced")
        suite = build_suite(self, *args, **kwargs)
        for test in _tests(suite):
            name = f"{type(test).__name__}.{getattr(test, '_testMethodName', '')}"
            reason = EXCLUDED.get(name)
            if reason is not None:
                method = getattr(test, test._testMethodName)
                skip = unittest.skip(f"smtpclient harness: {reason}")(method)
                setattr(test, test._testMethodName, skip)
                skipped.append(name)
        return suite

    DiscoverRunner.build_suite = build_suite_with_exclusions  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if not argv or not (Path(argv[0]) / "tests" / "runtests.py").is_file():
        raise SystemExit(__doc__)
    tests_dir = Path(argv[0]).resolve() / "tests"
    print(f"Django {django.get_version()} from {Path(django.__file__).parent}", flush=True)
    ours = _substitute_backend()
    skipped: list[str] = []
    _install_exclusions(ours, skipped)
    sys.path.insert(0, str(tests_dir))  # runtests.py imports its settings from there
    os.chdir(tests_dir)
    sys.argv = [str(tests_dir / "runtests.py"), "--parallel=1", *argv[1:]]
    if not any(arg.startswith("mail") for arg in argv[1:]):
        sys.argv.append("mail")  # only the mail tests, whatever the options
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        print(f"harness: {len(skipped)} tests excluded (see tests/django_suite/excluded.py):")
        for name in sorted(skipped):
            print(f"  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
