"""The command line as a whole: help, version, usage errors, `python -m smtpclient`."""

from __future__ import annotations

import configparser
import sys

import pytest

import smtpclient
from cli.helpers import REPO, run_cli
from smtpclient.cli import SUBCOMMANDS, main


def test_help_lists_every_command_with_examples_and_exit_codes() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in done.stdout
    assert "examples:" in done.stdout
    assert "smtpclient demo" in done.stdout
    assert "75 temporary failure" in done.stdout
    assert "not available" not in done.stdout  # every subcommand module imported


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"smtpclient {smtpclient.__version__}"


def test_each_command_has_help_with_examples() -> None:
    for name in ("send", "probe", "sendmail", "demo", "mx"):
        done = run_cli(name, "--help")
        assert done.returncode == 0, done.stderr
        assert f"usage: smtpclient {name}" in done.stdout


def test_no_command_and_unknown_options_are_usage_errors() -> None:
    assert run_cli().returncode == 64
    done = run_cli("send", "--no-such-option")
    assert done.returncode == 64
    assert "unrecognized arguments: --no-such-option" in done.stderr
    assert run_cli("frobnicate").returncode == 64


def test_main_returns_exit_codes_without_exiting() -> None:
    assert main(["--version"]) == 0
    assert main(["send", "--from", "a@example.test", "--to", "b@example.test"]) == 64


def test_missing_server_suggests_direct() -> None:
    done = run_cli("send", "--from", "a@example.test", "--to", "b@example.test", "--body", "x")
    assert done.returncode == 64
    assert "--server HOST[:PORT]" in done.stderr
    assert "--direct" in done.stderr


def test_console_script_points_at_main() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"]
    assert "smtpclient = smtpclient.cli:main" in scripts
    setup_requires = config["options"]["install_requires"].split()
    # The core keeps exactly three runtime dependencies; the CLI's are extras.
    assert [r.split(">")[0] for r in setup_requires] == ["dnspython", "idna", "certifi"]


def test_a_subcommand_that_cannot_load_leaves_the_others_working(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "smtpclient.cli.mx", None)  # as if mx.py were missing
    assert main(["mx", "--json", "example.com"]) == 69
    assert "'mx' is not available in this installation" in capsys.readouterr().err
    assert main(["--version"]) == 0
