"""Terminal niceties for status commands: progress bars and colour when stdout is a terminal
that wants them, and exactly the old plain text otherwise (scripts parse it).

Colour is off when stdout is not a tty, when ``NO_COLOR`` is set (any value, see no-color.org),
or when ``TERM`` is ``dumb``. Progress for long commands goes to stderr (click's progress bar,
which stays silent when stderr is not a terminal).
"""

from __future__ import annotations

import os
import sys
from typing import IO

import click

BLOCKS = " ▏▎▍▌▋▊▉█"


def fancy(stream: IO[str] | None = None) -> bool:
    """Whether to draw bars and colour on ``stream`` (stdout by default)."""
    s = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return s.isatty()
    except (AttributeError, ValueError):
        return False


def bar(done: int, total: int, width: int = 24) -> str:
    """A block-character bar, ``done`` of ``total``, coloured by how far it is."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    body = "█" * full + (BLOCKS[part] if part else "")
    color = "green" if frac >= 0.999 else "yellow" if frac >= 0.5 else "red"
    return click.style(body.ljust(width, "·"), fg=color)


def pct(done: int, total: int) -> str:
    return f"{100 * done / total:5.1f}%" if total > 0 else "  0.0%"
