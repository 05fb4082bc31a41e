"""Print the tables, the ratios, the targets and how noisy the run was."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.runner import Outcome
from benchmarks.scenarios import LABELS, TARGETS, Target

__all__ = ["print_outcome", "print_targets", "target_results"]

BASELINES = ("smtplib", "smtplib-per-message", "smtp-source")


def _fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if not ours or not theirs else f"{ours / theirs:.2f}x"


def print_outcome(outcome: Outcome, out: Callable[[str], None] = print) -> None:
    scenario = outcome.scenario
    where = "client and sink on CPU 0" if scenario.cpu_bound else "clients CPU 0, server CPU 1"
    server = {"postfix": "Postfix+Dovecot", "postfix-plain": "Postfix (CHUNKING, discard)"}.get(
        scenario.server, "smtp-sink"
    )
    out(f"\n[{scenario.key}] {scenario.title}")
    note = f"  server: {server}; {where}"
    if outcome.rtt_ms is not None:
        note += f"; NOOP round trip through the delay proxy: {outcome.rtt_ms:.2f} ms (median)"
    out(note)
    baselines = [b for b in BASELINES if b in scenario.contenders]
    if scenario.large:
        head = f"  {'contender':26} {'MiB/s':>7} {'spread':>6} {'CPU s/MiB':>10} {'spread':>6}"
        head += f" {'RSS +MiB':>9} {'py peak':>8}"
    else:
        head = f"  {'contender':26} {'msg/s':>7} {'spread':>6} {'MiB/s':>6} {'CPU us/msg':>10}"
        head += f" {'RSS +MiB':>9} {'srv CPU':>7}"
    for baseline in baselines:
        short = "x " + baseline.replace("-per-message", "/conn")
        head += f" {short:>14}" if not scenario.large else f" {short + ' rate,CPU':>24}"
    with_cpu_ratio = not scenario.large and "smtp-source" in scenario.contenders
    if with_cpu_ratio:
        head += f" {'CPU x src':>9}"
    out(head + "  counted")
    for contender in scenario.contenders:
        if contender not in outcome.samples:
            out(f"  {LABELS[contender]:26} (no result)")
            continue
        med = lambda metric, c=contender: outcome.median(c, metric)  # noqa: E731
        growth = med("rss_growth_mib")
        if scenario.large:
            cpu_mib = _cpu_per_mib(outcome, contender)
            traced = outcome.traced.get(contender)
            line = (
                f"  {LABELS[contender]:26} {_fmt(med('mib_rate'), '7.1f')} "
                f"{_pct(outcome.spread(contender, 'mib_rate')):>6} {_fmt(cpu_mib, '10.4f')} "
                f"{_pct(_cpu_spread(outcome, contender)):>6} {_fmt(growth, '9.1f')} "
                f"{_fmt(traced, '8.1f')}"
            )
            for baseline in baselines:
                rate = _ratio(med("mib_rate"), outcome.median(baseline, "mib_rate"))
                cpu = _ratio(cpu_mib, _cpu_per_mib(outcome, baseline))
                line += f" {rate + ', ' + cpu:>24}"
        else:
            cpu_msg = _cpu_per_message(outcome, contender)
            line = (
                f"  {LABELS[contender]:26} {_fmt(med('rate'), '7.0f')} "
                f"{_pct(outcome.spread(contender, 'rate')):>6} {_fmt(med('mib_rate'), '6.1f')} "
                f"{_fmt(cpu_msg, '10.0f')} {_fmt(growth, '9.1f')} "
                f"{_pct(med('server_busy')):>7}"
            )
            for baseline in baselines:
                line += f" {_ratio(med('rate'), outcome.median(baseline, 'rate')):>14}"
            if with_cpu_ratio:
                source = _cpu_per_message(outcome, "smtp-source")
                line += f" {_ratio(cpu_msg, source):>9}"
        out(line + f"  {outcome.counted.get(contender, '?')}")
    if not scenario.large:
        out("  CPU us/msg: " + _cpu_spreads(outcome))
    for note in outcome.notes:
        out(f"  {note}")
    for error in outcome.errors:
        out(f"  ! {error}")


def _cpu_spreads(outcome: Outcome) -> str:
    """Each contender's CPU per message: median [min-max] over the runs."""
    parts = []
    for contender in outcome.scenario.contenders:
        values = [
            s.cpu / s.messages * 1e6 for s in outcome.samples.get(contender, []) if s.messages
        ]
        if values:
            parts.append(
                f"{contender} {statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"
            )
    return "; ".join(parts)


def _cpu_per_mib(outcome: Outcome, contender: str) -> float | None:
    values = [s.cpu / s.mib for s in outcome.samples.get(contender, []) if s.mib]
    return statistics.median(values) if values else None


def _cpu_spread(outcome: Outcome, contender: str) -> float | None:
    values = [s.cpu / s.mib for s in outcome.samples.get(contender, []) if s.mib]
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def _cpu_per_message(outcome: Outcome, contender: str) -> float | None:
    values = [s.cpu / s.messages * 1e6 for s in outcome.samples.get(contender, []) if s.messages]
    return statistics.median(values) if values else None


def target_results(outcomes: dict[str, Outcome]) -> list[tuple[Target, float | None, bool]]:
    """(target, measured value, met) for every target whose scenario ran."""
    results = []
    for target in TARGETS:
        outcome = outcomes.get(target.scenario)
        if outcome is None:
            continue
        value: float | None
        if target.metric == "rate":
            ours = outcome.median(target.contender, "rate")
            theirs = outcome.median(str(target.baseline), "rate")
            value = ours / theirs if ours and theirs else None
            met = value is not None and value >= target.factor
        elif target.metric == "cpu-msg":
            ours = _cpu_per_message(outcome, target.contender)
            theirs = _cpu_per_message(outcome, str(target.baseline))
            value = ours / theirs if ours and theirs else None
            met = value is not None and value <= target.factor
        elif target.metric == "cpu":
            ours = _cpu_per_mib(outcome, target.contender)
            theirs = _cpu_per_mib(outcome, str(target.baseline))
            value = ours / theirs if ours and theirs else None
            met = value is not None and value <= target.factor
        else:
            samples = outcome.samples.get(target.contender, [])
            growths = [s.rss_growth_mib for s in samples if s.rss_growth_mib is not None]
            value = max(growths) if growths else None
            met = value is not None and value < target.factor
        results.append((target, value, met))
    return results


def print_targets(outcomes: dict[str, Outcome], out: Callable[[str], None] = print) -> int:
    """Print every target with its measured value; return how many were missed."""
    out("\nTargets (ratios of medians from this run; every message acknowledged and counted)")
    missed = 0
    for target, value, met in target_results(outcomes):
        if target.metric == "growth":
            shown = _fmt(value, ".2f", " MiB (largest of the runs)")
        else:
            shown = _fmt(value, ".2f", "x")
        verdict = "PASS" if met else "MISS"
        if not met and value is not None:
            if target.metric == "rate":
                shown += f" (short by {100 * (1 - value / target.factor):.0f}%)"
            elif target.metric in ("cpu", "cpu-msg"):
                shown += f" (over by {100 * (value / target.factor - 1):.0f}%)"
        missed += not met
        out(f"  {verdict}  {target.describe()}: {shown}")
    missed += _print_ceiling(outcomes, out)
    return missed


def _print_ceiling(outcomes: dict[str, Outcome], out: Callable[[str], None]) -> int:
    """Issue 19.3: through the proxy, >= 0.9 x (4 RTT + S) / (RTT + S) x smtplib."""
    direct, delayed = outcomes.get("chunking"), outcomes.get("chunking-rtt")
    if direct is None or delayed is None:
        return 0
    from benchmarks.chunking import ceiling  # noqa: PLC0415 (imported only where needed)

    figures = ceiling(direct, delayed)
    if figures is None:
        out("  MISS  smtpclient sendmail [chunking-rtt]: no figures")
        return 1
    met = figures["of_ceiling"] >= 0.9
    out(
        f"  {'PASS' if met else 'MISS'}  smtpclient sendmail [chunking-rtt]: >= 0.9 x "
        f"(4 RTT + S)/(RTT + S) x smtplib msg/s, RTT {figures['rtt_ms']:.2f} ms, "
        f"S {figures['s_ms']:.2f} ms (sendmail without the proxy): ceiling "
        f"{figures['ceiling']:.2f}x, reached {figures['reached']:.2f}x "
        f"= {figures['of_ceiling']:.2f} of the ceiling"
    )
    return 0 if met else 1


def print_noise(outcomes: dict[str, Outcome], out: Callable[[str], None] = print) -> None:
    spreads = []
    for outcome in outcomes.values():
        metric = "mib_rate" if outcome.scenario.large else "rate"
        for contender in outcome.samples:
            spread = outcome.spread(contender, metric)
            if spread is not None:
                spreads.append((spread, contender, outcome.scenario.key))
    if not spreads:
        return
    spreads.sort()
    middle = statistics.median(s for s, _, _ in spreads)
    worst = spreads[-1]
    out(
        f"\nNoise: spread (max-min)/median of the runs behind each figure: median "
        f"{100 * middle:.0f}%, worst {100 * worst[0]:.0f}% ({LABELS[worst[1]]}, {worst[2]})"
    )
