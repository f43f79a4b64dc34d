"""Server-side SVG charts: no script, readable by screen readers, testable as text.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says what it
shows; the page puts the full table beside it as the text alternative. Every mark carries its
own ``<title>`` (a tooltip, and the exact value for assistive technology).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 760
PLOT_HEIGHT = 220
LEFT = 48
BOTTOM = 56
TOP = 12
SERIES_COLOURS = ("#0b4f9c", "#d97706", "#0f6b35")  # AA contrast on white
_ids = itertools.count(1)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _frame(title: str, description: str, body: list[str], height: int) -> SafeString:
    n = next(_ids)
    return mark_safe(  # noqa: S308 every text piece below went through escape()
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'aria-labelledby="chart-{n}-title chart-{n}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-{n}-title">{escape(title)}</title>'
        f'<desc id="chart-{n}-desc">{escape(description)}</desc>' + "".join(body) + "</svg>"
    )


def _axis(top: float) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + PLOT_HEIGHT * (1 - fraction)
        value = top * fraction
        label = f"{value:g}" if value != int(value) else f"{int(value)}"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#cfd5df"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>'
        )
    return parts


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    unit: str = "",
) -> SafeString:
    """Vertical bars, one group per label and one bar per series (e.g. needed vs current)."""
    values = [v for _, vals in series for v in vals if v is not None]
    top = _nice_max(max(values, default=0))
    count = max(len(labels), 1)
    group = (WIDTH - LEFT) / count
    bar = max(group * 0.8 / max(len(series), 1), 0.5)
    every = max(1, count // 24)  # at most ~24 axis labels, however long the period
    body = _axis(top)
    for i, label in enumerate(labels):
        x0 = LEFT + i * group + group * 0.1
        for j, (name, vals) in enumerate(series):
            value = vals[i] or 0
            height = PLOT_HEIGHT * value / top
            y = TOP + PLOT_HEIGHT - height
            tip = f"{label}: {value:g}{unit}" + (f" ({name})" if len(series) > 1 else "")
            body.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{SERIES_COLOURS[j % 3]}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % every == 0:
            x = x0 + bar * len(series) / 2
            body.append(
                f'<text x="{x:.1f}" y="{TOP + PLOT_HEIGHT + 14}" font-size="11" '
                f'text-anchor="end" transform="rotate(-40 {x:.1f} {TOP + PLOT_HEIGHT + 14})">'
                f"{escape(label)}</text>"
            )
    if len(series) > 1:
        for j, (name, _) in enumerate(series):
            x = LEFT + j * 160
            y = TOP + PLOT_HEIGHT + BOTTOM - 4
            body.append(
                f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{SERIES_COLOURS[j % 3]}"/>'
                f'<text x="{x + 18}" y="{y}" font-size="12">{escape(name)}</text>'
            )
    description = f"Bar chart of {', '.join(name for name, _ in series)} for {len(labels)} "
    description += "items; the table below gives every value."
    return _frame(title, description, body, TOP + PLOT_HEIGHT + BOTTOM + 10)


def heat_map(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    grid: Sequence[Sequence[int]],
    *,
    title: str,
) -> SafeString:
    """A grid of cells shaded by value (darker = more)."""
    top = max((v for row in grid for v in row), default=0) or 1
    cell_w = (WIDTH - LEFT) / max(len(column_labels), 1)
    cell_h = 26
    body = []
    for c, label in enumerate(column_labels):
        body.append(
            f'<text x="{LEFT + c * cell_w + cell_w / 2:.1f}" y="12" font-size="10" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for r, label in enumerate(row_labels):
        y = 18 + r * cell_h
        body.append(
            f'<text x="{LEFT - 6}" y="{y + cell_h / 2 + 4:.1f}" font-size="11" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for c, value in enumerate(grid[r]):
            # Light to the brand blue; opacity keeps zero cells visible but faint.
            opacity = 0.06 + 0.94 * value / top
            tip = f"{label} {column_labels[c]}: {value}"
            body.append(
                f'<rect x="{LEFT + c * cell_w:.1f}" y="{y}" width="{cell_w - 1:.1f}" '
                f'height="{cell_h - 2}" fill="#0b4f9c" fill-opacity="{opacity:.2f}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    description = (
        f"Heat map of {len(row_labels)} rows by {len(column_labels)} columns, darker meaning "
        f"more (highest {top}); the table below gives every value."
    )
    return _frame(title, description, body, 18 + len(row_labels) * cell_h + 6)
