"""Inline SVG charts drawn by our own small code: no external assets, no script, no inline
styles (the CSP forbids them), only SVG presentation attributes. Each chart has a ``role="img"``
and an ``aria-label`` that says in words what it shows.
"""

from __future__ import annotations

from .html import e, wita

WITA_S = 8 * 3600

FILL = "#1d5fbf"
LEAD = "#1d5fbf"
OTHER = "#8da9cf"
TRACK = "#e6ebf1"
GRID = "#d5dbe2"
TEXT = "#56606b"


def meter(value: int, top: int, label: str, color: str = FILL, height: int = 10) -> str:
    """A horizontal bar, ``value`` of ``top``, stretched to its container's width; its height
    in CSS pixels is the stylesheet's ``.m<height>`` class (10, 12 or 14)."""
    frac = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    return (
        f'<svg class="meter m{height}" viewBox="0 0 1000 {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="{e(label)}"><rect width="1000" height="{height}" rx="3" '
        f'fill="{TRACK}"/><rect width="{frac * 1000:.1f}" height="{height}" rx="3" '
        f'fill="{color}"/></svg>'
    )


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    return sorted({0, top // 2, top})


def _time_marks(start: int, end: int) -> list[int]:
    """Round WITA clock times for the x axis: at most five, on 15 min .. 24 h boundaries."""
    span = max(end - start, 1)
    every = next((g for g in (900, 1800, 3600, 7200, 10800, 21600, 43200) if span / g <= 4), 86400)
    first = -(-(start + WITA_S) // every) * every - WITA_S
    return list(range(first, end + 1, every)) or [start]


def progress_chart(start: int | None, step: int, counts: list[int], expected: int) -> str:
    """TPS counted over time as a step line under the 100% line, with WITA times below."""
    w, h, left, right, top, bottom = 400, 180, 40, 22, 12, 26
    pw, ph = w - left - right, h - top - bottom
    label = "Belum ada TPS yang dihitung" if not counts or start is None else (
        f"TPS dihitung dari {wita(start)} sampai {wita(start + step * (len(counts) - 1))}: "
        f"{counts[-1]} dari {expected}")  # fmt: skip
    ymax = max(expected, max(counts, default=0), 1)
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{e(label)}">']
    for t in _ticks(ymax):
        y = top + ph - ph * t / ymax
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{GRID}" stroke-width="1"/>'
                   f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
                   f'fill="{TEXT}">{t}</text>')  # fmt: skip
    if counts and start is not None:
        n = max(len(counts) - 1, 1)
        pts: list[str] = []
        for i, c in enumerate(counts):
            x = left + pw * i / n
            y = top + ph - ph * c / ymax
            if pts:
                pts.append(f"{x:.1f},{pts[-1].split(',')[1]}")
            pts.append(f"{x:.1f},{y:.1f}")
        base = f"{left + pw:.1f},{top + ph} {left},{top + ph}"
        out.append(f'<polygon points="{" ".join(pts)} {base}" fill="{FILL}" fill-opacity=".15"/>')
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{FILL}" '
                   'stroke-width="2.5"/>')  # fmt: skip
        end = start + step * (len(counts) - 1)
        for t in _time_marks(start, end):
            x = left + pw * (t - start) / max(end - start, 1)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                       f'stroke="{TEXT}"/><text x="{x:.1f}" y="{h - 8}" font-size="12" '
                       f'text-anchor="middle" fill="{TEXT}">'
                       f'{e(wita(t).removesuffix(" WITA"))}</text>')  # fmt: skip
    else:
        out.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" font-size="13" '
                   f'text-anchor="middle" fill="{TEXT}">belum ada data</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)
