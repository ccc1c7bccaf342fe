"""Inline SVG charts, rendered on the server: a time-series line chart and a grouped bar
chart. No library: a few dozen lines of geometry, so that the pages need no script to draw
and no asset from the network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c", "#854d0e")
ROLE_COLORS = {"stable": "#2563eb", "canary": "#ea580c", "green": "#16a34a", "blue": "#2563eb"}
ROLE_COLORS |= {"shadow": "#9333ea", "baseline": "#94a3b8", "live": "#ea580c"}

Point = tuple[float, float]


def color(name: str, index: int) -> str:
    return ROLE_COLORS.get(name, PALETTE[index % len(PALETTE)])


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def _legend(names: Sequence[str], x: float, y: float) -> str:
    """One legend row under the title, entries as wide as their names."""
    out = []
    for i, name in enumerate(names):
        out.append(
            f'<rect x="{x:.0f}" y="{y - 8:.0f}" width="10" height="10" fill="{color(name, i)}"/>'
            f'<text x="{x + 14:.0f}" y="{y + 1:.0f}" class="legend">{escape(name)}</text>'
        )
        x += 26 + 6 * len(name)
    return "".join(out)


def line_chart(
    title: str,
    series: dict[str, list[Point]],
    *,
    unit: str = "",
    threshold: float | None = None,
    threshold_label: str = "SLO",
    y_max: float | None = None,
    width: int = 520,
    height: int = 190,
    chart_id: str = "",
    since: float | None = None,
) -> str:
    """Lines over time (x: seconds relative to now, negative), an optional dashed threshold;
    ``since`` starts the axis there (so that the charts of one page share their time axis)."""
    left, right, top, bottom = 48, 12, 38, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [p for pts in series.values() for p in pts if p[1] is not None]
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{escape(title)}"{ident}>'
        f'<text x="{left}" y="14" class="title">{escape(title)}</text>'
    )
    if not points:
        return (
            head + f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" class="empty"'
            ' text-anchor="middle">no data yet</text></svg>'
        )
    t_min = min(p[0] for p in points)
    if since is not None:
        t_min = min(t_min, since)
    t_max = max(max(p[0] for p in points), 0.0) if since is not None else max(p[0] for p in points)
    span = max(t_max - t_min, 1.0)
    top_value = max([p[1] for p in points] + ([threshold * 1.15] if threshold else []))
    v_max = y_max if y_max is not None else _nice_max(top_value)

    def x(t: float) -> float:
        return left + (t - t_min) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - min(max(v / v_max, 0.0), 1.0) * plot_h

    parts = [head]
    for i in range(5):
        value = v_max * i / 4
        gy = y(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{gy + 3:.1f}" class="axis" text-anchor="end">'
            f"{fmt(value)}{escape(unit)}</text>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}" class="axis">-{span:.0f}s</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" class="axis" text-anchor="end">now</text>'
    )
    if threshold is not None:
        ty = y(threshold)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" class="threshold"/>'
            f'<text x="{left + plot_w - 2}" y="{ty - 3:.1f}" class="threshold-label"'
            f' text-anchor="end">{escape(threshold_label)} {fmt(threshold)}{escape(unit)}</text>'
        )
    for i, (name, pts) in enumerate(series.items()):
        clean = [(t, v) for t, v in pts if v is not None and math.isfinite(v)]
        if not clean:
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in clean)
        c = color(name, i)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"'
            f' data-series="{escape(name)}"/>'
        )
        if len(clean) == 1:
            parts.append(
                f'<circle cx="{x(clean[0][0]):.1f}" cy="{y(clean[0][1]):.1f}" r="3" fill="{c}"/>'
            )
    parts.append(_legend(list(series), left, 29))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    labels: Sequence[str],
    groups: dict[str, Sequence[float | None]],
    *,
    unit: str = "",
    thresholds: Sequence[float | None] | None = None,
    width: int = 520,
    height: int = 200,
    chart_id: str = "",
) -> str:
    """Grouped vertical bars, one group per label; optional threshold tick per group."""
    left, right, top, bottom = 48, 12, 38, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in groups.values() for v in vs if v is not None and math.isfinite(v)]
    values += [t for t in thresholds or () if t is not None]
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{escape(title)}"{ident}>'
        f'<text x="{left}" y="14" class="title">{escape(title)}</text>'
    ]
    if not labels or not values:
        parts.append(
            f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" class="empty"'
            ' text-anchor="middle">no data yet</text></svg>'
        )
        return "".join(parts)
    v_max = _nice_max(max(values))

    def y(v: float) -> float:
        return top + plot_h - min(max(v / v_max, 0.0), 1.0) * plot_h

    for i in range(5):
        value = v_max * i / 4
        gy = y(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{gy + 3:.1f}" class="axis" text-anchor="end">'
            f"{fmt(value)}{escape(unit)}</text>"
        )
    slot = plot_w / len(labels)
    bar_w = max(slot * 0.8 / max(len(groups), 1), 1.0)
    for j, label in enumerate(labels):
        x0 = left + j * slot + slot * 0.1
        for i, (name, vs) in enumerate(groups.items()):
            v = vs[j] if j < len(vs) else None
            if v is None or not math.isfinite(v):
                continue
            bx = x0 + i * bar_w
            parts.append(
                f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" height="{top + plot_h - y(v):.1f}"'
                f' fill="{color(name, i)}"><title>{escape(name)} {escape(label)}: {fmt(v)}</title></rect>'
            )
        if thresholds and j < len(thresholds) and thresholds[j] is not None:
            ty = y(float(thresholds[j] or 0.0))
            parts.append(
                f'<line x1="{x0 - 2:.1f}" x2="{x0 + slot * 0.8 + 2:.1f}" y1="{ty:.1f}" y2="{ty:.1f}"'
                ' class="threshold"/>'
            )
        if len(labels) <= 24:
            parts.append(
                f'<text x="{x0 + slot * 0.4:.1f}" y="{top + plot_h + 14}" class="axis"'
                f' text-anchor="middle">{escape(label[:18])}</text>'
            )
    parts.append(_legend(list(groups), left, 29))
    if thresholds:
        lx = left + sum(26 + 6 * len(n) for n in groups)
        parts.append(
            f'<line x1="{lx}" x2="{lx + 12}" y1="25" y2="25" class="threshold"/>'
            f'<text x="{lx + 16}" y="29" class="legend">threshold</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
