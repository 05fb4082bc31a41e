"""nox sessions: the quick test suite on every CPython the package supports,
and Django's own mail tests against our Django backend.

    nox                          # quick suite on 3.11, 3.12 and 3.13
    nox -s tests-3.12            # one Python
    nox -s django_suite          # Django 4.2, 5.2 and 6.1's tests/mail

Interpreters are pyenv's (``$PYENV_ROOT/versions/3.12.*``...), else
``python3.12``... on PATH.  A missing interpreter is an error, not a
skipped session: CI must not pass by testing fewer Pythons than it claims.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]  # as setup.cfg's classifiers
# Extras the test suite imports (add here when a test needs a new one).
TEST_EXTRAS = "test,cli,demo,flask"
# Quick suite: everything except the tests that start Postfix, Dovecot or
# Knot (the full suite, with those, runs once on the default python3).
QUICK = ["-m", "not postfix and not dovecot and not knot and not slow"]
# Django's own mail tests: (Django series, Python that runs them).  6.1
# needs Python 3.12 or newer.
DJANGO_SERIES = [("4.2", "3.12"), ("5.2", "3.12"), ("6.1", "3.13")]

nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]


def _interpreter_links() -> str:
    """A directory of ``pythonX.Y`` links to pyenv's installed CPythons.

    pyenv's shims on PATH answer ``python3.12`` only for the versions that
    are active, so the real binaries are linked here and this directory
    goes first on PATH (only ``pythonX.Y`` names: ``python3`` stays as it
    was).  Versions pyenv lacks are looked up on PATH as usual.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    links = Path(__file__).resolve().parent / ".nox" / "interpreters"
    links.mkdir(parents=True, exist_ok=True)
    for version in PYTHONS:
        candidates = sorted(
            root.glob(f"versions/{version}.*/bin/python{version}"),
            key=lambda path: [int(n) for n in path.parts[-3].split(".") if n.isdigit()],
        )
        link = links / f"python{version}"
        if link.is_symlink() or link.exists():
            link.unlink()
        if candidates:
            link.symlink_to(candidates[-1])
    return str(links)


os.environ["PATH"] = os.pathsep.join([_interpreter_links(), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The quick suite (unit, hostile, aiosmtpd, compat, CLI, frameworks)."""
    session.install("-q", f".[{TEST_EXTRAS}]")
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:randomly", *QUICK, *session.posargs,
        env={"PYTHONPATH": ""},  # the installed package, not a stray checkout
    )  # fmt: skip


def _django_source(session: nox.Session, series: str, cache: Path) -> Path:
    """Django's sdist for *series* (latest release), downloaded once, unpacked."""
    target = cache / series
    if not list(target.glob("django-*.tar.gz")):
        session.run(
            "python", "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
            f"django=={series}.*", "-d", str(target),
        )  # fmt: skip
    sdist = sorted(target.glob("django-*.tar.gz"))[-1]
    tree = target / sdist.name.removesuffix(".tar.gz")
    if not tree.is_dir():
        with tarfile.open(sdist) as archive:
            archive.extractall(target, filter="data")
    return tree


@nox.session(python=sorted({python for _, python in DJANGO_SERIES}))
def django_suite(session: nox.Session) -> None:
    """Django's tests/mail with our backend in place of Django's SMTP backend."""
    cache = Path(os.environ.get("SMTPCLIENT_DJANGO_CACHE", tempfile.gettempdir()))
    cache = cache / "smtpclient-django-sdists"
    for series, python in DJANGO_SERIES:
        if python != session.python:
            continue
        tree = _django_source(session, series, cache)
        session.install("-q", str(tree), "aiosmtpd", "dnspython", "idna", "certifi")
        session.run("python", "tests/django_suite/run.py", str(tree))
