"""The peer table: who we may dial, at which address, how long each backs off, who reaches the
centre; and the node's counters. No sockets, no clock of its own (``clock`` is passed in), so
it is unit-tested alone (``tests/relay/test_peers.py``).

Backoff: a failure waits ``2**failures`` seconds (at most :data:`MAX_BACKOFF`), a peer that
misbehaved (served forged data or a wrong blob) :data:`PENALTY_BACKOFF`; both jittered to
50-100 % so peers that failed together do not retry together. A peer reporting a working
uplink, or our own address changing, clears the backoff of whoever it concerns and wakes the
scheduler (``wake``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .home import parse_hostport

log = logging.getLogger("estafet.node")
MAX_BACKOFF = 300.0
PENALTY_BACKOFF = 600.0


@dataclass
class Peer:
    """A peer we may dial. ``key`` is its key id (hex) once known; ``url`` its base URL."""

    url: str
    source: str
    key: str = ""
    role: str = ""
    scope: str = ""
    central_ok: bool = False
    fingerprint: bytes = b""
    failures: int = 0
    backoff_until: float = 0.0
    penalties: int = 0
    last_ok: float = 0.0
    last_sync_fp: bytes = b""
    info_at: float = 0.0
    is_central: bool = False

    @property
    def label(self) -> str:
        return self.key or self.url


@dataclass
class Stats:
    blob_bytes_in: int = 0
    blob_bytes_out: int = 0
    blob_bytes_resent: int = 0
    objects_in: int = 0
    objects_out: int = 0
    rejected: int = 0
    sessions: int = 0
    last_uplink: float = 0.0
    uplink_ok: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class PeerTable(Mapping[str, Peer]):
    """Peers by URL. ``own_key``: our key id (hex), never added as a peer."""

    def __init__(
        self, own_key: str, clock: Callable[[], float], wake: Callable[[], None] = lambda: None
    ) -> None:
        self.own_key = own_key
        self.clock = clock
        self.wake = wake
        self._by_url: dict[str, Peer] = {}

    def __getitem__(self, url: str) -> Peer:
        return self._by_url[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_url)

    def __len__(self) -> int:
        return len(self._by_url)

    def clear(self) -> None:
        self._by_url.clear()

    def add(self, url: str, source: str, **info: Any) -> Peer:
        """Remember a peer by URL; merge with an existing one of the same key id."""
        key = str(info.get("key", ""))
        if key and key == self.own_key:
            return Peer(url, source, key=key)  # ourselves, seen through discovery
        for old in list(self._by_url.values()):
            if key and old.key == key and old.url != url:
                # same device at a new address (it walked): move it, keep its history
                del self._by_url[old.url]
                old.url = url
                old.backoff_until = 0
                old.failures = 0
                self._by_url[url] = old
                break
        peer = self._by_url.get(url)
        if peer is None:
            peer = Peer(url, source)
            self._by_url[url] = peer
            self.wake()
        for k, v in info.items():
            if hasattr(peer, k) and v is not None and v != "":
                setattr(peer, k, v)
        if info.get("central_ok"):
            # a neighbour reaches the centre: maybe we can too; try our uplink now
            for p in self._by_url.values():
                if p.is_central:
                    p.backoff_until = 0
            self.wake()
        return peer

    def contact(self, key: str, listen: str, remote: str | None, central_ok: bool) -> None:
        """A peer called us (headers ``X-Estafet-Node``, ``X-Estafet-Listen``): remember it."""
        if not (key and listen and remote):
            return
        try:
            _, port = parse_hostport(listen)
        except ConfigError:
            return
        if port == 0:
            return  # nobody listens on port 0
        self.add(f"http://{remote}:{port}", "inbound", key=key, central_ok=central_ok)

    def failed(self, peer: Peer, error: str, penalise: bool = False) -> None:
        peer.failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** min(peer.failures, 10))
        if penalise:
            peer.penalties += 1
            delay = PENALTY_BACKOFF
        peer.backoff_until = self.clock() + delay * random.uniform(0.5, 1.0)  # noqa: S311
        log.info("peer %s failed (%s); backing off %.0fs", peer.label, error, delay)

    def succeeded(self, peer: Peer) -> None:
        peer.failures = 0
        peer.last_ok = self.clock()

    def retry_all(self) -> None:
        """Every peer deserves a fresh try at once (our addresses changed)."""
        for p in self._by_url.values():
            p.backoff_until = 0
            p.info_at = 0
        self.wake()

    def ready(self) -> list[Peer]:
        """Peers not backing off, central-reaching first, then the least failing."""
        now = self.clock()
        ready = [p for p in self._by_url.values() if p.backoff_until <= now]
        ready.sort(key=lambda p: (not p.is_central, not p.central_ok, p.failures))
        return ready

    def uplink_ok(self) -> bool:
        """True when a central uplink is configured and its last session worked."""
        return any(p.failures == 0 and p.last_ok for p in self._by_url.values() if p.is_central)

    def rows(self) -> list[dict[str, Any]]:
        """The table for ``/v1/status`` and ``node peers``."""
        return [
            {
                "url": p.url,
                "key": p.key,
                "role": p.role,
                "source": p.source,
                "central_ok": p.central_ok,
                "failures": p.failures,
                "penalties": p.penalties,
                "last_ok": int(p.last_ok),
            }
            for p in self._by_url.values()
        ]
