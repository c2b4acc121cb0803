"""What the benchmarks measure with and how they report it: the machine, process memory, percentiles, tables."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results"  # git ignores it


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, to tell whether something else was using the cores."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def table(rows: list[Row]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


@dataclass(frozen=True)
class Ratio:
    """One column of a ratio table: `ours` against `theirs`, turned so that above 1 means ours is better."""

    label: str
    ours: str  # column in our rows
    theirs: str  # column in their rows
    higher_is_better: bool  # throughput; otherwise latency, memory, size


def ratio_rows(ours: list[Row], theirs: list[Row], ratios: list[Ratio], key: str = "memories") -> list[Row]:
    """For each size both measured: ours ÷ theirs for throughput, theirs ÷ ours for the rest."""
    by_key = {row[key]: row for row in theirs}
    rows = []
    for row in ours:
        other = by_key.get(row[key])
        if other is None:
            continue
        out: Row = {key: row[key]}
        for ratio in ratios:
            a, b = row.get(ratio.ours), other.get(ratio.theirs)
            if a is None or b is None:
                out[ratio.label] = None
            elif ratio.higher_is_better:
                out[ratio.label] = f"{a / b:.3g}×" if b else "∞"
            else:
                out[ratio.label] = f"{b / a:.3g}×" if a else "∞"
        rows.append(out)
    return rows
