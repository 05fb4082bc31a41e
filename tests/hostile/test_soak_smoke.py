"""A short run of the soak harness (``python -m soak``) in the quick suite:
a Mailer from several threads against the seeded fault server, with every
message accounted for.  The long run is a separate command (README,
"Longer runs")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the soak/ package

from soak.run import Settings, run


def test_a_short_soak_accounts_for_every_message() -> None:
    # SOURCE: issue 10 §4-5: delivered only if the server accepted it once,
    # never failed for one it accepted, outcome unknown only after the dot;
    # descriptors and threads back where they started.
    settings = Settings(
        messages=150,
        threads=6,
        seed=7,
        fault_rate=0.04,
        connections=4,
        stall=0.7,
        late_dot=0.3,  # answers late but in time: the 10 s floor is for the long run
        stage_timeout=0.5,
        trace_memory=False,  # memory is judged by the long run
        rss_margin=256 * 1024 * 1024,
    )
    passed, report = run(settings)
    assert passed, report
    assert "delivered" in report and "faults injected" in report
