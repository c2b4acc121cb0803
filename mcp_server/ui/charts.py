"""Charts as inline SVG drawn on the server: nothing to download, nothing to run in the browser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

from daemon import DayCount

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
