"""The dashboard's HTML, by screen: the shell in :mod:`.html`, charts in :mod:`.charts`, the
overview in :mod:`.overview`, the TPS page in :mod:`.tps`. This module keeps the names other
packages import.
"""

from __future__ import annotations

from .html import csp, e, render_error
from .overview import render_dashboard
from .tps import render_tps

__all__ = ["csp", "e", "render_dashboard", "render_error", "render_tps"]
