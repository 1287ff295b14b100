"""Per-peer budgets: bytes uploaded and signature checks per window, keyed by the proven key.

The per-address limits of :mod:`.auth` stop anonymous callers; an *enrolled* peer that turned
hostile (a stolen phone, a gateway someone took over) could still push 512 objects per request,
each verified on the store's writer thread, back to back, and stream 4 MiB bodies without end:
every honest peer's push then waits behind the junk (issue 11, item 7). So each proven key id
(the one the handshake token binds to the caller's address, :mod:`.auth`) gets, per
:data:`WINDOW`:

* :data:`BYTES_PER_WINDOW` bytes of uploads: ``objects/put`` bodies and ``PUT /v1/blobs``
  bodies (counted from ``Content-Length`` before reading, or the body's size once read);
* :data:`CHECKS_PER_WINDOW` signature checks: each object ``accept_batch`` verifies costs one,
  counted *before* it is verified, retries of an unknown signer included.

Past either, the request is answered 429 with ``Retry-After`` (the seconds until the window
ends). Objects verified and stored before the budget ran out stay stored (they are committed
with the batch); the rest are answered ``deferred`` and come again in a later session. And one
key's pushes are read and verified one at a time (:meth:`PeerBudgets.turn`): the writer thread
serves first come, first served, so four connections pushing 512 junk objects each put four
batches ahead of an honest peer's push; one at a time, at most one.

Why these defaults: an honest peer on count night never reaches them. Kotabaru (the region of
the test fixtures) has 551 TPS and two elections (gubernur, bupati):
1,102 results with 3 photos of ~0.5 MB each, ~1.65 GB of photos for the whole regency. The
largest kecamatan (Pulaulaut Utara, 76 TPS) is 152 results and ~228 MB. Counted generously, a
result travels with 20 objects (its receipt, revisions, endorsements by the members and the
witnesses, their certificates), so the whole regency is ~22,000 objects, ~30,000 checks with the
unknown-signer retries of certificates. A PPK gateway forwards one kecamatan; the centre sees
each gateway push its whole kecamatan; a gateway that recapped offline (Hampang, Pulau Sembilan)
may bring everything it holds at once. The budgets hold *the whole regency* through one peer
inside one window: 2 GiB (> 1.65 GB) and 60,000 checks (2x). An attacker with one enrolled key
gets at most that per 10 minutes (~3.6 MB/s and 100 checks/s on average) instead of unbounded.
The price of not cutting off an honest regency-wide push: 60,000 checks are ~30 s of a laptop's
writer thread, during which one hostile key slows other pushes (``docs/security.md``, item 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .auth import Budget

WINDOW = 600.0
"""Seconds of one budget window."""
BYTES_PER_WINDOW = 2 * 1024 * 1024 * 1024
"""Upload bytes per peer per window: every photo of Kotabaru (~1.65 GB) fits in one."""
CHECKS_PER_WINDOW = 60_000
"""Signature checks per peer per window: twice the whole regency's objects (~30,000)."""


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """The budgets of one peer per window (the defaults above; tests use small ones)."""

    window: float = WINDOW
    bytes: int = BYTES_PER_WINDOW
    checks: int = CHECKS_PER_WINDOW


class PeerBudgets:
    """Bytes and signature checks per proven peer key. Thread-safe: bytes are spent on the
    event loop, checks on the store's writer thread."""

    def __init__(self, clock: Callable[[], float], limits: PeerLimits | None = None) -> None:
        self.limits = limits or PeerLimits()
        self.clock = clock
        self._bytes = Budget(self.limits.bytes, self.limits.window, clock)
        self._checks = Budget(self.limits.checks, self.limits.window, clock)
        self._lock = threading.Lock()
        self.refused = 0
        """Requests answered 429 because a peer's budget ran out (``/v1/status``, tests)."""
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, peer: str) -> AsyncIterator[None]:
        """Wait until no other push of ``peer``'s is being read or verified (event loop only;
        an entry lives while someone holds or waits for it)."""
        lock, users = self._turns.get(peer, (asyncio.Lock(), 0))
        self._turns[peer] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[peer]
            if users <= 1:
                del self._turns[peer]
            else:
                self._turns[peer] = (lock, users - 1)

    def spend_bytes(self, peer: str, n: int) -> bool:
        """Spend ``n`` upload bytes of ``peer``'s; False (nothing spent) when they do not fit."""
        with self._lock:
            return self._bytes.spend(peer, max(n, 0))

    def check_spender(self, peer: str) -> Callable[[], bool]:
        """A function spending one of ``peer``'s signature checks per call (for
        :func:`~.accept.accept_batch`); False once none is left."""

        def spend() -> bool:
            with self._lock:
                return self._checks.spend(peer)

        return spend

    def exhausted(self, peer: str) -> bool:
        """True when ``peer`` has no check or no byte left in this window."""
        with self._lock:
            return self._checks.left(peer) <= 0 or self._bytes.left(peer) <= 0

    def retry_after(self, peer: str) -> int:
        """Whole seconds until ``peer``'s budgets are renewed (at least 1)."""
        with self._lock:
            spent = [b for b in (self._checks, self._bytes) if b.left(peer) <= 0]
            wait = max(b.renewed_in(peer) for b in spent or [self._bytes])
        return max(1, math.ceil(wait))
