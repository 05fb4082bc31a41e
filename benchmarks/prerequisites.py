"""Install what the benchmarks need on a fresh Debian machine (as root).

Postfix (smtp-sink, smtp-source, and the MTA of the web-app scenario),
Dovecot (SASL for that MTA), aiosmtplib (a contender) and trustme (the
throwaway CA).  Without root, missing pieces are an error naming them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SMTP_SINK", "SMTP_SOURCE", "ensure"]

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

# (a file that proves it is installed, the Debian package that provides it)
_SYSTEM = {
    "postfix": [(SMTP_SINK, "postfix"), (SMTP_SOURCE, "postfix"), ("/usr/sbin/postfix", "postfix")],
    "dovecot": [("/usr/sbin/dovecot", "dovecot-core"), ("/usr/lib/dovecot/lmtp", "dovecot-lmtpd")],
    "taskset": [("/usr/bin/taskset", "util-linux")],
}
_PYTHON = {"aiosmtplib": "aiosmtplib>=3", "trustme": "trustme>=1.1"}


def _missing_packages(groups: list[str]) -> list[str]:
    packages: list[str] = []
    for group in groups:
        for path, package in _SYSTEM[group]:
            if not Path(path).exists() and package not in packages:
                packages.append(package)
    return packages


def ensure(*, webapp: bool) -> None:
    """Install missing system and Python packages (root only).

    Raises:
        SystemExit: something is missing and we are not root.
    """
    groups = ["postfix", "taskset"] + (["dovecot"] if webapp else [])
    packages = _missing_packages(groups)
    modules = [name for name in _PYTHON if importlib.util.find_spec(name) is None]
    if not packages and not modules:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            "benchmarks: missing "
            + ", ".join(packages + modules)
            + " -- run as root once (it installs them) or install them yourself"
        )
    if packages:
        print(f"installing {' '.join(packages)} (apt-get)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            check=True,
            env=env,
        )
    if modules:
        print(f"installing {' '.join(modules)} (pip)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *(_PYTHON[m] for m in modules)],
            check=True,
        )
    still = _missing_packages(groups)
    if still or shutil.which("taskset") is None:
        raise SystemExit(f"benchmarks: still missing after installing: {still or ['taskset']}")
