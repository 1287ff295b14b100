"""A rendered status view kept until the store changes: ``/`` and ``/api/status`` are computed
once per change (the owner bumps a version counter on every store write) instead of once per
request, so a hundred phones refreshing every few seconds cost one computation per change.

The page is cached with a random placeholder where each response's CSP nonce goes, split into
byte pieces, so a response is a ``bytes.join``; the JSON is cached encoded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Render = Callable[[dict[str, Any], str], str]


@dataclass(frozen=True)
class Snapshot:
    version: int
    status: dict[str, Any]
    json: bytes
    page_parts: tuple[bytes, ...]
    epoch: str = ""  # the cache's random id: versions restart at 0 with the process

    @property
    def etag(self) -> str:
        return f'W/"{self.epoch}v{self.version}"'

    def matches(self, if_none_match: str | None) -> bool:
        """Whether a request's ``If-None-Match`` names this snapshot (answer 304)."""
        return if_none_match is not None and self.etag in (
            t.strip() for t in if_none_match.split(",")
        )

    def page(self, nonce: str) -> bytes:
        return nonce.encode().join(self.page_parts)


def snapshot(version: int, status: dict[str, Any], render: Render) -> Snapshot:
    """Encode ``status`` and render its page once (blocking: run it off the event loop)."""
    slot = "nonce" + secrets.token_hex(16)
    page = render(status, slot).encode()
    data = json.dumps(status, separators=(",", ":"), ensure_ascii=False).encode()
    return Snapshot(version, status, data, tuple(page.split(slot.encode())))


class StatusCache:
    """The latest :class:`Snapshot`; concurrent requests after a change share one computation.

    ``version()`` must be cheap and callable on the event loop; ``compute()`` is awaited (it runs
    the blocking work on the owner's thread) and returns a snapshot tagged with the version it
    read *before* reading the store, so a change during the computation is never hidden."""

    def __init__(
        self, version: Callable[[], int], compute: Callable[[], Awaitable[Snapshot]]
    ) -> None:
        self._version = version
        self._compute = compute
        self._snap: Snapshot | None = None
        self._lock = asyncio.Lock()
        self.epoch = secrets.token_hex(4)
        self.computed = 0

    async def get(self) -> Snapshot:
        snap = self._snap
        if snap is not None and snap.version == self._version():
            return snap
        async with self._lock:
            snap = self._snap
            if snap is None or snap.version != self._version():
                snap = dataclasses.replace(await self._compute(), epoch=self.epoch)
                self._snap = snap
                self.computed += 1
            return snap
