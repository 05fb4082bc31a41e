"""CPython's own test_smtplib, run against smtpclient.compat on this Python.

The suite runs in a subprocess (it replaces module globals such as
``smtplib.socket`` and starts its own servers), with the interpreter that
runs pytest, so CI covers every Python version it runs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("cpython_suite.py")
ROOT = Path(__file__).resolve().parents[2]


def test_cpython_test_smtplib_passes_against_compat() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "-q"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - a hang is the failure
        pytest.fail(f"test_smtplib did not finish within 600 s: {exc}")
    report = done.stderr[-6000:]
    assert done.returncode == 0, report
    assert "Ran " in report and "\nOK" in report, report
