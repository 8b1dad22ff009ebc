"""Inline SVG plots for the console: drawn as text in microseconds, scaled by the browser to
any width, readable without JavaScript, and each with a text alternative.

Colours come from a palette distinguishable with the common colour-vision deficiencies
(Okabe and Ito); every series is also named in a legend.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_W, _H = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 28


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/></svg> '
        f"{escape(name)}</li>" for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def line_chart(title: str, labels: list[str], series: dict[str, list[int]]) -> Markup:
    """One line per series over ``labels`` (e.g. days), y from 0."""
    top = _nice_max(max((max(v) for v in series.values() if v), default=0))
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = width / max(len(labels) - 1, 1)
    parts = [_axes(top)]
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(f"{_LEFT + j * step:.1f},{_TOP + height - v / top * height:.1f}" for j, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2" points="{points}"><title>{escape(name)}</title></polyline>')
    for j in sorted({0, len(labels) // 2, len(labels) - 1}):
        if 0 <= j < len(labels):
            anchor = "start" if j == 0 else "end" if j == len(labels) - 1 else "middle"
            parts.append(f'<text x="{_LEFT + j * step:.1f}" y="{_H - 8}" font-size="11" text-anchor="{anchor}">{escape(labels[j])}</text>')
    totals = ", ".join(f"{name} {sum(values)}" for name, values in series.items())
    return Markup(_figure(title, f"{title}: {totals}", "".join(parts)) + _legend(list(series)))


def bar_chart(title: str, rows: list[tuple[str, dict[str, int]]], kinds: list[str]) -> Markup:
    """Horizontal grouped bars: one group per row label, one bar per kind."""
    rows = rows[:12]
    bar, gap = 10, 10
    height = max(len(rows), 1) * (bar * len(kinds) + gap) + _TOP
    label_width = 150
    top = _nice_max(max((max(r.values(), default=0) for _, r in rows), default=0))
    scale = (_W - label_width - _RIGHT - 40) / top
    parts = []
    y = _TOP
    for label, counts in rows:
        parts.append(f'<text x="{label_width - 6}" y="{y + bar * len(kinds) / 2 + 4:.1f}" font-size="11" text-anchor="end">{escape(label[:24])}</text>')
        for i, kind in enumerate(kinds):
            n = counts.get(kind, 0)
            parts.append(f'<rect x="{label_width}" y="{y + i * bar}" width="{n * scale:.1f}" height="{bar - 1}" fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)} {escape(kind)}: {n}</title></rect>')
            parts.append(f'<text x="{label_width + n * scale + 4:.1f}" y="{y + i * bar + bar - 2}" font-size="9">{n}</text>')
        y += bar * len(kinds) + gap
    description = "; ".join(f"{label}: " + ", ".join(f"{k} {c.get(k, 0)}" for k in kinds) for label, c in rows) or "no data"
    return Markup(_figure(title, f"{title}: {description}", "".join(parts), height) + _legend(kinds))


def _axes(top: float) -> str:
    height = _H - _TOP - _BOTTOM
    lines = []
    for fraction in (0, 0.5, 1):
        y = _TOP + height - fraction * height
        lines.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>')
        lines.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{int(top * fraction)}</text>')
    return "".join(lines)


def _figure(title: str, description: str, body: str, height: int = _H) -> str:
    return (f'<figure><figcaption>{escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(description)}" class="plot" preserveAspectRatio="xMinYMin meet">'
            f"{body}</svg></figure>")
