"""Charts as inline SVG drawn on the server: nothing to download, nothing to run in the browser."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

from daemon import DayCount, MinuteStats

_SIGNAL_ORDER = ("lexical", "exact", "vector", "context", "episode", "time", "speaker")


def signal_bars(signals: Mapping[str, float]) -> Markup:
    """One horizontal bar per search signal (0-1), in pipeline order, labelled with its value."""
    names = [n for n in _SIGNAL_ORDER if n in signals] + sorted(set(signals) - set(_SIGNAL_ORDER))
    row, width, label = 18, 160, 64
    parts = [
        f'<svg class="bars" role="img" viewBox="0 0 {label + width + 44} {row * len(names)}"'
        f' width="{label + width + 44}" height="{row * len(names)}"><title>match signals</title>'
    ]
    for i, name in enumerate(names):
        value = max(0.0, min(1.0, float(signals[name])))
        y = i * row
        parts.append(
            f'<text x="0" y="{y + 13}" class="lbl">{escape(name)}</text>'
            f'<rect x="{label}" y="{y + 4}" width="{width}" height="10" rx="2" class="track"/>'
            f'<rect x="{label}" y="{y + 4}" width="{value * width:.1f}" height="10" rx="2"'
            f' class="bar sig-{escape(name)}"/>'
            f'<text x="{label + width + 6}" y="{y + 13}" class="val">{value:.2f}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _weeks(days: Sequence[DayCount]) -> list[tuple[date, int]]:
    """Counts per week (Monday first), every week from the first to the last, empty ones as 0."""
    if not days:
        return []
    weekly: dict[date, int] = {}
    for item in days:
        day = date.fromisoformat(item.day)
        monday = day - timedelta(days=day.weekday())
        weekly[monday] = weekly.get(monday, 0) + item.count
    first, last = min(weekly), max(weekly)
    span = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    return [(week, weekly.get(week, 0)) for week in span[-104:]]  # the last two years at most


def day_chart(days: Sequence[DayCount]) -> Markup:
    """Memories recorded per week as columns, with the running total as a line (its own scale)."""
    weeks = _weeks(days)
    if not weeks:
        return Markup('<p class="muted">No memories yet.</p>')
    w, h, pad = 640, 160, 28
    step = (w - 2 * pad) / len(weeks)
    top = max(count for _, count in weeks) or 1
    total_before = sum(d.count for d in days) - sum(count for _, count in weeks)
    totals, running = [], total_before
    for _, count in weeks:
        running += count
        totals.append(running)
    peak = max(totals) or 1
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {w} {h + 24}" preserveAspectRatio="xMidYMid meet">'
        "<title>memories recorded per week, and in total</title>"
        f'<line x1="{pad}" y1="{h}" x2="{w - pad}" y2="{h}" class="axis"/>'
    ]
    for i, (week, count) in enumerate(weeks):
        bar = (h - 24) * count / top
        parts.append(
            f'<rect x="{pad + i * step + 1:.1f}" y="{h - bar:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{bar:.1f}" class="col"><title>week of {week}: {count}</title></rect>'
        )
    points = " ".join(
        f"{pad + (i + 0.5) * step:.1f},{h - (h - 24) * total / peak:.1f}" for i, total in enumerate(totals)
    )
    parts.append(f'<polyline points="{points}" class="total"/>')
    parts.append(f'<text x="{pad}" y="{h + 18}" class="lbl">{weeks[0][0]}</text>')
    parts.append(f'<text x="{w - pad}" y="{h + 18}" class="lbl end">{weeks[-1][0]}</text>')
    parts.append(f'<text x="{pad}" y="12" class="lbl">max {top}/week · total {totals[-1]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _segments(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive known values (a minute without data breaks the line)."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (a round top for an axis)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= value)


MIN_MINUTES_SHOWN = 15  # a young daemon's few minutes sit at the right of a quarter-hour axis


def minute_chart(
    minutes: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str,
    title: str,
    whole: bool = False,
) -> Markup:
    """Lines over the minutes (oldest left, at least half an hour of axis), one per named series, on one
    scale from 0; a minute without data leaves a gap. `minutes` are ISO minutes ("2026-12-02T01:45Z")."""
    known = [v for _, values in series for v in values if v is not None]
    if not minutes or not known:
        return Markup(f'<p class="muted">No {escape(title)} yet.</p>')
    w, h, left, right, top_pad = 640, 150, 52, 12, 10
    slots = max(len(minutes), MIN_MINUTES_SHOWN)
    offset = slots - len(minutes)  # empty axis before the first kept minute
    top = _nice_ceiling(max(known))
    step = (w - left - right) / max(slots - 1, 1)

    def x(i: int) -> float:
        return left + (offset + i) * step

    def y(value: float) -> float:
        return h - (h - top_pad) * value / top

    parts = [
        f'<svg class="chart minutes" role="img" viewBox="0 0 {w} {h + 22}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title>"
    ]
    for share in (0.5, 1.0):
        if whole and (top * share) % 1:  # counts: no half a job on the axis
            continue
        parts.append(
            f'<line x1="{left}" y1="{y(top * share):.1f}" x2="{w - right}" y2="{y(top * share):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y(top * share) + 4:.1f}" class="lbl end">{top * share:g} {escape(unit)}</text>'
        )
    parts.append(f'<line x1="{left}" y1="{h}" x2="{w - right}" y2="{h}" class="axis"/>')
    parts.append(f'<text x="{left - 6}" y="{h + 4}" class="lbl end">0</text>')
    legend = []
    for n, (name, values) in enumerate(series):
        cls = f"s{n}"
        for run in _segments(values):
            if len(run) == 1:
                i, value = run[0]
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" class="dot {cls}"/>')
            else:
                points = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, value in run)
                parts.append(f'<polyline points="{points}" class="line {cls}"/>')
        last = next((v for v in reversed(values) if v is not None), None)
        now = f"{last:g} {unit}" if last is not None else "—"
        legend.append(
            f'<span class="key {cls}"></span>{escape(name)} <span class="muted">{escape(now)}</span>'
        )
    first_label = minutes[0] if offset == 0 else None
    parts.append(
        f'<text x="{left}" y="{h + 17}" class="lbl">'
        + (f"{escape(first_label[11:16])} UTC" if first_label else f"{slots} minutes ago")
        + "</text>"
    )
    parts.append(
        f'<text x="{w - right}" y="{h + 17}" class="lbl end">{escape(minutes[-1][11:16])} UTC</text>'
    )
    parts.append("</svg>")
    parts.append(f'<p class="legend small">{" ".join(legend)}</p>')
    return Markup("".join(parts))


def latency_chart(history: Sequence[MinuteStats]) -> Markup:
    """Search latency per minute: p50 and p99, in milliseconds."""
    return minute_chart(
        [m.minute for m in history],
        [("p50", [m.p50_ms for m in history]), ("p99", [m.p99_ms for m in history])],
        unit="ms", title="search latency per minute",
    )  # fmt: skip


def queue_chart(history: Sequence[MinuteStats]) -> Markup:
    """The deepest each queue was in each minute."""
    names = sorted({name for m in history for name in m.queued})
    return minute_chart(
        [m.minute for m in history],
        [(name, [float(m.queued.get(name, 0)) for m in history]) for name in names],
        unit="jobs", title="queue depth per minute", whole=True,
    )  # fmt: skip
