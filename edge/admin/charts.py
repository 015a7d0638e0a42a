"""Server-rendered SVG line charts (no script, no inline style: the CSP forbids both).

Pure: series in, SVG markup out. Colours come from CSS classes in
``static/admin.css`` so light/dark themes stay in one place.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

from markupsafe import Markup, escape

Series = tuple[str, Sequence[tuple[float, float]], str]  # (label, [(ts, value)], css class)


def nice_ceiling(v: float) -> float:
    """Smallest 1/2/2.5/5 x 10^k at or above ``v`` so axis ticks land on round numbers."""
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= v:
            return m * 10**exp
    return 10 ** (exp + 1)


def nice_step(v: float) -> float:
    """Smallest round tick step (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at or above ``v``."""
    if v <= 0:
        return 0.25
    exp = math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * 10**exp >= v * (1 - 1e-12):
            return m * 10**exp
    return 10 ** (exp + 1)  # pragma: no cover


def short_number(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return f"{s}{suffix}"
    return f"{v:.1f}".rstrip("0").rstrip(".") if a < 10 and v != int(v) else f"{v:.0f}"


def _clock(ts: float, span: float) -> str:
    t = time.gmtime(ts)
    return time.strftime("%H:%M" if span >= 120 else "%H:%M:%S", t)


def line_chart(
    series: Sequence[Series],
    *,
    t0: float,
    t1: float,
    title: str,
    unit: str = "",
    width: int = 520,
    height: int = 200,
    fmt: Callable[[float], str] = short_number,
    marks: Sequence[tuple[float, float | None]] = (),
    css: str = "",
) -> Markup:
    """A time chart; ``marks`` are (start, end) spans drawn as shaded bands (egress cuts)."""
    narrow = width < 450
    # A narrow chart puts its legend on a line of its own under the title.
    left, right, top, bottom = 52, 10, (40 if narrow else 24), 24
    legend_y = 22 if narrow else 6
    pw, ph = width - left - right, height - top - bottom
    span = max(1.0, t1 - t0)
    vmax = max([v for _, pts, _ in series for t, v in pts if t0 <= t <= t1 and v is not None] or [0.0])
    ymax = 4 * nice_step(vmax * 1.05 / 4) if vmax > 0 else 1.0

    def x(t: float) -> float:
        return left + (min(max(t, t0), t1) - t0) / span * pw

    def y(v: float) -> float:
        return top + ph - (max(0.0, v) / ymax) * ph

    out = [
        f'<svg class="chart{escape(css)}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<text class="chart-title" x="{left}" y="14">{escape(title)}'
        + (f' <tspan class="chart-unit">({escape(unit)})</tspan>' if unit else "") + "</text>",
    ]
    for start, end in marks:
        xs, xe = x(start), x(end if end is not None else t1)
        if xe > xs:
            out.append(f'<rect class="chart-cut" x="{xs:.1f}" y="{top}" width="{xe - xs:.1f}" height="{ph}"/>')
    for i in range(5):
        v = ymax * i / 4
        yy = y(v)
        out.append(f'<line class="chart-grid" x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}"/>')
        out.append(f'<text class="chart-tick" x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(fmt(v))}</text>')
    n_x = 5 if width >= 450 else 3
    for i in range(n_x):
        t = t0 + span * i / (n_x - 1)
        anchor = "start" if i == 0 else "end" if i == n_x - 1 else "middle"
        out.append(f'<text class="chart-tick" x="{x(t):.1f}" y="{height - 6}" text-anchor="{anchor}">'
                   f"{_clock(t, span)}</text>")
    legend_x = left + pw
    for label, pts, cls in series:
        visible = [(t, v) for t, v in pts if t0 <= t <= t1 and v is not None]
        if len(visible) >= 2:
            d = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(visible))
            out.append(f'<path class="chart-line {escape(cls)}" d="{d}"/>')
        elif len(visible) == 1:
            t, v = visible[0]
            out.append(f'<circle class="chart-dot {escape(cls)}" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5"/>')
    for label, pts, cls in reversed(series):
        legend_x -= 9 + 7.5 * len(label)
        out.append(f'<rect class="chart-key {escape(cls)}" x="{legend_x:.0f}" y="{legend_y}" width="10" height="10" '
                   f'rx="2"/><text class="chart-legend" x="{legend_x + 14:.0f}" y="{legend_y + 9}">{escape(label)}</text>')
        legend_x -= 10
    if not any(len(pts) for _, pts, _ in series):
        out.append(f'<text class="chart-empty" x="{left + pw / 2:.0f}" y="{top + ph / 2:.0f}" '
                   f'text-anchor="middle">no samples yet</text>')
    out.append(f'<line class="chart-axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>')
    out.append("</svg>")
    return Markup("".join(out))
