"""``python -m smtpclient``: the command line (see ``smtpclient --help``)."""

from __future__ import annotations

import sys

from smtpclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
