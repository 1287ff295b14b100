"""The app package's one exception root."""

from __future__ import annotations


class AppError(Exception):
    """The officer's app cannot do what was asked (bad configuration, port taken)."""
