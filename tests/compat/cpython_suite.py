"""Run CPython's own test_smtplib against smtpclient.compat.

The running interpreter's ``test/test_smtplib.py`` is loaded with its
``import smtplib`` replaced by ``import smtpclient.compat as smtplib`` and
run with unittest.  Tests that read smtplib's internals, or that assert an
unsafe behaviour compat deliberately does not have, are skipped by name
(``EXCLUDED``, each with its reason; docs/migrating.md lists them too).

``python tests/compat/cpython_suite.py`` prints unittest's report and exits
non-zero on any failure or error; ``--list`` prints the excluded tests.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

# test id suffix (Class.method) -> why it cannot apply to compat.
EXCLUDED: dict[str, str] = {}


def load_suite_module() -> types.ModuleType:
    """The stdlib's test_smtplib, importing compat instead of smtplib."""
    spec = importlib.util.find_spec("test.test_smtplib")
    if spec is None or spec.origin is None:
        raise SystemExit("this Python has no test.test_smtplib (its test package is missing)")
    source = Path(spec.origin).read_text(encoding="utf-8")
    patched = source.replace("\nimport smtplib\n", "\nimport smtpclient.compat as smtplib\n", 1)
    if patched == source:
        raise SystemExit("test_smtplib no longer imports smtplib the expected way")
    module = types.ModuleType("test_smtplib_on_compat")
    module.__file__ = spec.origin
    module.__package__ = "test"  # 3.12+ imports its smtpd copy relatively
    sys.modules[module.__name__] = module
    exec(compile(patched, spec.origin, "exec"), module.__dict__)
    return module


def _skip_excluded(suite: unittest.TestSuite) -> unittest.TestSuite:
    kept = unittest.TestSuite()
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            kept.addTest(_skip_excluded(test))
            continue
        name = ".".join(test.id().split(".")[-2:])
        reason = EXCLUDED.get(name)
        if reason is not None:
            method = getattr(test, test._testMethodName)
            setattr(test, test._testMethodName, unittest.skip(reason)(method))
        kept.addTest(test)
    return kept


def main() -> int:
    if "--list" in sys.argv:
        for name, reason in sorted(EXCLUDED.items()):
            print(f"{name}: {reason}")
        return 0
    module = load_suite_module()
    suite = _skip_excluded(unittest.defaultTestLoader.loadTestsFromModule(module))
    result = unittest.TextTestRunner(verbosity=1 if "-q" in sys.argv else 2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
