"""The app package's one exception root."""

from __future__ import annotations

from estafet.protocol.errors import EstafetError


class AppError(EstafetError):
    """The officer's app cannot do what was asked (bad configuration, port taken)."""
