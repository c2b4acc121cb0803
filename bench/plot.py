"""Benchmark tables as a PNG of bar charts, one panel per measure, one bar per system and size.

Needs matplotlib (`pip install -e ".[bench]"`); without it the benchmarks print why and write no plot.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Row


@dataclass(frozen=True)
class Panel:
    title: str
    columns: dict[str, str]  # system name -> its column for this measure
    log: bool = False  # for measures where the systems differ by orders of magnitude
    note: str = field(default="")


def bar_panels(path: Path, title: str, systems: dict[str, list[Row]], panels: list[Panel]) -> None:
    """Write `path`: each panel groups bars by the rows' "memories", one colour per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("(no plot: pip install -e '.[bench]' for matplotlib)", file=sys.stderr)
        return
    sizes = sorted({row["memories"] for rows in systems.values() for row in rows})
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False)
    width = 0.8 / len(systems)
    for axis, panel in zip(axes.flat, panels, strict=False):
        for offset, (system, rows) in enumerate(systems.items()):
            column = panel.columns.get(system)
            by_size = {row["memories"]: row.get(column) for row in rows} if column else {}
            points = [(i, by_size[s]) for i, s in enumerate(sizes) if by_size.get(s) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.bar([x + offset * width for x in xs], ys, width, label=system)
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [f"{s:,}" for s in sizes])
        axis.set_title(panel.title + (f"\n{panel.note}" if panel.note else ""), fontsize="medium")
        if panel.log:
            axis.set_yscale("log")
            axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", fontsize="small")
    figure.suptitle(title)
    figure.supxlabel("memories")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"plot: {path}", file=sys.stderr)


def _two_and_five(value: float, _: object) -> str:
    """Minor labels on a log axis at 2 and 5 times a power of ten only, so they do not collide."""
    leading = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
    return f"{value:g}" if leading in (2, 5) else ""
