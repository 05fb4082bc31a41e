"""Start-up stays light: ``import smtpclient`` loads none of the heavy modules
a send needs (they come with the first use of a name, PEP 562), and the
``sendmail`` command loads neither the MX resolver nor the other commands.
Checked in fresh interpreters through ``sys.modules`` (not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# What `import smtpclient` used to pull in and no longer does.
LAZY_AT_IMPORT = [
    "ssl",
    "socket",
    "smtplib",
    "email.message",
    "email.policy",
    "dataclasses",
    "idna",
    "smtpclient.session",
    "smtpclient.api",
    "smtpclient.errors",
    "smtpclient.tls",
    "smtpclient.mailer",
    "smtpclient.resolver",
    "dns.resolver",
]

# What `smtpclient sendmail` (relaying to a server, the cron case) never needs.
NOT_FOR_SENDMAIL = [
    "dns.resolver",
    "smtpclient.resolver",
    "smtpclient.delivery",
    "smtpclient.cli.direct",
    "smtpclient.cli.probe",
    "smtpclient.cli.mx",
    "smtpclient.cli.demo",
    "smtpclient.cli.send",
]


def loaded_after(code: str, names: list[str]) -> list[str]:
    """Which of *names* are in sys.modules after running *code* in a fresh
    interpreter (modules loaded by the interpreter's own start-up, e.g. a
    site-packages .pth file, are not counted)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        before = set(sys.modules)
        {code}
        names = {names!r}
        print(json.dumps([n for n in names if n in sys.modules and n not in before]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result: list[str] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_import_smtpclient_loads_no_heavy_module() -> None:
    assert loaded_after("import smtpclient", LAZY_AT_IMPORT) == []


def test_a_public_name_loads_on_first_use() -> None:
    code = "import smtpclient; smtpclient.Session; smtpclient.TLSMode"
    loaded = loaded_after(code, ["smtpclient.session", "smtpclient.tls", "smtpclient.mailer"])
    assert loaded == ["smtpclient.session", "smtpclient.tls"]


def test_every_public_name_resolves() -> None:
    import smtpclient  # noqa: PLC0415 (the module under test)

    for name in smtpclient.__all__:
        assert getattr(smtpclient, name) is not None
    assert set(smtpclient.__all__) <= set(dir(smtpclient))


def test_the_sendmail_command_loads_only_what_relaying_needs() -> None:
    code = (
        "from smtpclient.cli import main\n"
        "        import contextlib, io\n"
        "        with contextlib.redirect_stdout(io.StringIO()):\n"
        "            main(['sendmail', '--help'])"
    )
    assert loaded_after(code, NOT_FOR_SENDMAIL) == []
