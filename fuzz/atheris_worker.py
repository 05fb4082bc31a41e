"""One atheris (libFuzzer) run of one target; started by ``python -m fuzz.run``.

Usage: ``python -m fuzz.atheris_worker TARGET [libFuzzer options] [corpus dirs]``.
The smtpclient package is instrumented for coverage; the fuzz harness is not.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["smtpclient"]):
    from fuzz.conversation import conversation_target
    from fuzz.targets import TARGETS


def main() -> None:
    everything = {**TARGETS, "conversation": conversation_target}
    name = sys.argv[1]
    # libFuzzer's -merge re-runs argv[0] through the shell: make it the
    # command that starts this worker again.
    command = f"{sys.executable} -m fuzz.atheris_worker {name}"
    atheris.Setup([command, *sys.argv[2:]], everything[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
