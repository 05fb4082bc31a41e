"""One measured run of one contender, in a process of its own (pinned by the
runner), so that memory figures start from a known idle process.

    python -m benchmarks.worker '<Spec as JSON>'

Prints one JSON line: messages acknowledged, wall and CPU seconds of the
timed loop, the idle RSS and the peak RSS during the loop (VmHWM, reset
just before it), and the tracemalloc peak when asked.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.contenders import CONTENDERS, Spec

__all__ = ["main", "measure"]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) clock ticks since boot, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in rest.split()]
            idle = ticks[3] + ticks[4]  # idle + iowait
            out[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Fraction of each CPU's time spent busy between two cpu_times()."""
    return {
        cpu: (after[cpu][0] - before[cpu][0]) / max(after[cpu][1] - before[cpu][1], 1)
        for cpu in after
    }


def _reset_peak_rss() -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(spec: Spec) -> dict[str, Any]:
    contender = CONTENDERS[spec.contender](spec)
    contender.setup()
    try:
        if spec.warmup:
            payload = contender.payload
            if spec.warmup_body is not None:
                contender.payload = spec.data(spec.warmup_body)
            contender.send(spec.warmup)
            contender.payload = payload
        gc.collect()
        profiler = None
        if spec.profile:
            profiler = cProfile.Profile()
        if spec.trace:
            tracemalloc.start()
        _reset_peak_rss()
        idle = _status_kib("VmRSS")
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        ticks0 = cpu_times()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        acked = contender.send(spec.count)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_busy = busy(ticks0, cpu_times())
        peak = _status_kib("VmHWM")
        traced = tracemalloc.get_traced_memory()[1] if spec.trace else None
        tracemalloc.stop()
        if profiler is not None and spec.profile:
            profiler.dump_stats(spec.profile)
    finally:
        contender.close()
    return {
        "acked": acked,
        "sent": spec.warmup + spec.count,
        "wall": wall,
        "cpu": cpu,
        "sys": usage.ru_stime - usage0.ru_stime,
        "switches": usage.ru_nvcsw - usage0.ru_nvcsw + usage.ru_nivcsw - usage0.ru_nivcsw,
        "cpu_busy": cpu_busy,
        "rss_idle_kib": idle,
        "rss_peak_kib": peak,
        "py_peak_kib": None if traced is None else traced / 1024,
    }


def main() -> None:
    spec = Spec(**json.loads(sys.argv[1]))
    print(json.dumps(measure(spec)), flush=True)


if __name__ == "__main__":
    main()
