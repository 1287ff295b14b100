"""The sync scheduler: when to run a session, with whom, how many at once, for how long.

Owns the wake event, the loop, the sessions it started and the set of peers in session. It
knows nothing of HTTP or the store: it is given the :class:`~.peers.PeerTable` and a
``run_session(peer)`` coroutine function, so it is unit-tested with fake sessions and no
sockets (``tests/relay/test_scheduler.py``).

Each round (every ``interval`` seconds, or at once on :meth:`Scheduler.wake`: a new peer, a
peer reporting a working uplink, something stored) takes the peers that are not backing off,
central-reaching first (:meth:`PeerTable.ready`), skips those already in a session, and starts
a session with each, at most ``max_sessions`` at once, each inside ``budget`` seconds: a black
hole costs one slot for at most the budget while the others go on (issue 11: three black holes
claiming an uplink held delivery for 60 s). A session that overruns or raises backs its peer
off (:meth:`PeerTable.failed`); nothing a session does ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .peers import Peer, PeerTable, Stats

log = logging.getLogger("estafet.node")
MAX_SESSIONS = 4
"""Sessions the scheduler runs at once: one black-hole peer cannot hold the others."""
SESSION_BUDGET = 120.0
"""Seconds one scheduled session may take; what moved is kept, the next session goes on."""


class Scheduler:
    """Runs ``run_session(peer)`` with the ready peers; see the module docstring.
    ``stats.uplink_ok`` follows the peer table after every round and every session."""

    def __init__(
        self,
        peers: PeerTable,
        run_session: Callable[[Peer], Awaitable[Any]],
        stats: Stats,
        interval: float,
        *,
        max_sessions: int = MAX_SESSIONS,
        budget: float = SESSION_BUDGET,
    ) -> None:
        self.peers = peers
        self.run_session = run_session
        self.stats = stats
        self.interval = interval
        self.budget = budget
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_sessions)
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_session: set[str] = set()
        """URLs of the peers a session runs with now (never two sessions with one peer)."""
        self._stopping = False

    def wake(self) -> None:
        """Run a round now rather than at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """The loop; returns after :meth:`stop`."""
        while not self._stopping:
            # no peer known: nothing to retry, so sleep until one appears (a new peer wakes us)
            # rather than tick every interval (each tick is a wake-up of an idle daemon)
            timeout = self.interval if self.peers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self._stopping:
                return
            await self._round()

    async def _round(self) -> None:
        for peer in [p for p in self.peers.ready() if p.url not in self.in_session]:
            await self._slots.acquire()  # at most max_sessions at once
            if self._stopping:
                self._slots.release()
                return
            self.in_session.add(peer.url)
            task = asyncio.create_task(self._session(peer), name=f"session {peer.label[:16]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.stats.uplink_ok = self.peers.uplink_ok()

    async def _session(self, peer: Peer) -> None:
        """One scheduled session, inside its time budget."""
        try:
            async with asyncio.timeout(self.budget):
                await self.run_session(peer)
        except TimeoutError:
            self.peers.failed(peer, f"session over its {self.budget:.0f} s budget")
        except Exception as exc:  # e.g. disk full: never let the scheduler end
            log.exception("sync with %s failed", peer.label)
            self.peers.failed(peer, f"{type(exc).__name__}: {exc}")
        finally:
            self.in_session.discard(peer.url)
            self._slots.release()
            self.stats.uplink_ok = self.peers.uplink_ok()

    async def stop(self) -> None:
        """End the loop at its next step and cancel the sessions running now."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
