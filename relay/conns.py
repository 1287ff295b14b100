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

:class:`AcceptErrors` is the loop exception handler the node installs while it runs: a failed
``accept()`` (out of file descriptors: EMFILE, ENFILE, ENOBUFS, ENOMEM) reaches asyncio's handler,
which logged a traceback each time (63 MB of log in 25 s). It logs the first failure of a burst
at once and then one line per ``interval`` with the count; every other exception goes to the
handler that was there before (asyncio's default).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("estafet.node")
HEADER_DEADLINE = 10.0
MAX_CONNECTIONS = 256
ACCEPT_LOG_INTERVAL = 10.0
"""Seconds between two log lines about failed ``accept()`` calls in one burst."""
ACCEPT_MESSAGES = (
    "socket.accept() out of system resource",  # asyncio/selector_events.py, _accept_connection
    "Error on transport creation for incoming connection",  # _accept_connection2
)
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


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


Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class AcceptErrors:
    """A loop exception handler that logs failed ``accept()`` calls once per burst, with a
    count; installed by :meth:`install`, the previous handler put back by :meth:`restore`."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.failures = 0
        """Failed accepts since the node started (``/v1/status``, tests)."""
        self._burst = 0
        self._last = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Handler | None = None
        self._timer: asyncio.TimerHandle | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def restore(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._report()
        if self._loop is not None:
            current = self._loop.get_exception_handler()
            if current is self:
                self._loop.set_exception_handler(self._previous)
            # several nodes in one loop (tests, the demo) may stop in any order: a handler
            # installed after ours keeps working, with ours spliced out of its chain
            while isinstance(current, AcceptErrors) and current is not self:
                if current._previous is self:
                    current._previous = self._previous
                    break
                current = current._previous
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not is_accept_failure(context):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.failures += 1
        exc = context.get("exception")
        self._last = f"{exc}" if exc is not None else str(context.get("message"))
        if self._timer is None:  # the first of a burst: at once; the rest counted
            log.warning("accept failed: %s (further failures counted, one line per %.0f s)",
                        self._last, self.interval)  # fmt: skip
            self._timer = loop.call_later(self.interval, self._tick)
        else:
            self._burst += 1

    def _tick(self) -> None:
        """End of an interval: the count of the failures in it, if any; the burst goes on
        while there are some."""
        self._timer = None
        if self._burst and self._loop is not None:
            self._report()
            self._timer = self._loop.call_later(self.interval, self._tick)

    def _report(self) -> None:
        if self._burst:
            log.warning("accept failed %d times in the last %.0f s: %s", self._burst,
                        self.interval, self._last)  # fmt: skip
            self._burst = 0


def is_accept_failure(context: dict[str, Any]) -> bool:
    """True for the contexts asyncio reports for a failed ``accept()`` or an accepted socket it
    could not set up (see ``asyncio/selector_events.py``)."""
    if context.get("message") in ACCEPT_MESSAGES:
        return True
    exc = context.get("exception")
    return isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES and "socket" in context
