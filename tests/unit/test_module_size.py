"""Modules stay small: none of the package's modules is over 500 lines
(docs/contributing.md), so a module keeps one job a reader can hold."""

from __future__ import annotations

from pathlib import Path

import smtpclient

LIMIT = 500
PACKAGE = Path(smtpclient.__file__).parent


def test_no_module_is_over_the_limit() -> None:
    over = {
        str(path.relative_to(PACKAGE)): count
        for path in sorted(PACKAGE.rglob("*.py"))
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert over == {}, f"modules over {LIMIT} lines: {over}"


def test_the_check_sees_the_package() -> None:
    assert len(list(PACKAGE.rglob("*.py"))) > 50
