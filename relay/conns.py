"""The node's listening socket: a connection cap and a header deadline in front of aiohttp.

aiohttp's server has no deadline for a request's headers: ~1,000 connections that each send half
a request line and wait held ~1,000 sockets and made a node unreachable (issue 11, item 7).
:class:`ConnectionGuard` is the protocol factory handed to ``loop.create_server``; each
connection's protocol is aiohttp's own, wrapped by :class:`_Guarded`, which

* closes a connection whose first request headers are not complete within ``header_deadline``
  seconds (later requests on a kept-alive connection are aiohttp's ``keepalive_timeout``'s);
* keeps at most ``max_conns`` connections: one more closes the oldest connection still waiting
  for its headers, or, when every connection is busy with a real request, is closed itself.

The wrapper passes every other protocol call through, so TLS (the transport decrypts before
``data_received``) and sendfile (which swaps the transport's protocol and back) work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("estafet.node")
HEADER_DEADLINE = 10.0
MAX_CONNECTIONS = 256


class ConnectionGuard:
    """Protocol factory: ``inner()`` makes aiohttp's protocol for one connection."""

    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        *,
        max_conns: int = MAX_CONNECTIONS,
        header_deadline: float = HEADER_DEADLINE,
    ) -> None:
        self.inner = inner
        self.max_conns = max_conns
        self.header_deadline = header_deadline
        self.open: dict[_Guarded, None] = {}  # insertion order: oldest first
        self.refused = 0
        self._last_warned = 0.0

    def __call__(self) -> _Guarded:
        return _Guarded(self, self.inner())

    def admit(self, conn: _Guarded) -> bool:
        """Room for ``conn``: evict the oldest connection still waiting for its headers, or
        refuse ``conn`` when every connection is serving a request."""
        if len(self.open) >= self.max_conns:
            victim = next((c for c in self.open if c.waiting), None)
            if victim is None:
                self._refused()
                return False
            victim.close("connection cap: the oldest connection without headers goes")
        self.open[conn] = None
        return True

    def _refused(self) -> None:
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_warned >= 10.0:  # one line per burst, not one per connection
            self._last_warned = now
            log.warning("connection cap (%d) reached; %d refused so far", self.max_conns,
                        self.refused)  # fmt: skip


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the cap and the header deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.waiting = True
        self.admitted = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:  # anything else aiohttp's protocol offers
        return getattr(self.inner, name)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            transport.abort()
            return
        self.admitted = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.header_deadline, self.close, "header deadline")
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            seen = self._tail + data[:4096]
            if b"\r\n\r\n" in seen:
                self.waiting = False
                if self._timer is not None:
                    self._timer.cancel()
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.open.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
        if self.admitted:
            self.inner.connection_lost(exc)

    def close(self, why: str) -> None:
        self.guard.open.pop(self, None)
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing a connection: %s", why)
            self.transport.abort()
