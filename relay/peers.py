"""The peer table: who we may dial, at which address, how long each backs off, who reaches the
centre; and the node's counters. No sockets, no clock of its own (``clock`` is passed in), so
it is unit-tested alone (``tests/relay/test_peers.py``).

Backoff: a failure waits ``2**failures`` seconds (at most :data:`MAX_BACKOFF`), a peer that
misbehaved (served forged data or a wrong blob) :data:`PENALTY_BACKOFF`; both jittered to
50-100 % so peers that failed together do not retry together. A peer reporting a working
uplink, or our own address changing, clears the backoff of whoever it concerns and wakes the
scheduler (``wake``).

Identity (issue 11, item 2): an entry is labelled with a key id, and merged with another entry
of that key, only when the key was *proven* by a handshake (:mod:`.auth`); adverts, beacons and
``/v1/info`` only propose addresses. Configured entries (static, central, manual) never move.
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
MAX_RESENDS = 2
RESEND_WINDOW = 3600.0
MAX_PEERS = 256
"""Entries the table holds: 2,000 forged beacons once made 1,585 (issue 11, item 7)."""
FIXED = ("static", "central", "manual")
"""Sources whose address is configured: never moved by anything a peer says."""


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
    token: str = ""
    """Our session token at this peer (hex, :mod:`.auth`) and until when it holds."""
    token_until: float = 0.0
    sent: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    """Photos we uploaded complete to this peer: how often, and when last (see
    :meth:`PeerTable.may_send`)."""

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

    def add(self, url: str, source: str, *, proven: bool = False, **info: Any) -> Peer:
        """Remember a peer by URL. Only a ``proven`` key (a handshake, :mod:`.auth`) labels an
        entry or merges it with the entry of the same key at another address (the device
        walked); a key from an advert, a beacon or ``/v1/info`` only proposes the address.
        Static, central and manual entries never move. The table holds at most ``MAX_PEERS``:
        a new entry evicts the oldest never-reached discovered one, or is not kept."""
        key = str(info.pop("key", "") or "")
        if key and key == self.own_key:
            return Peer(url, source, key=key)  # ourselves, seen through discovery
        if proven and key:
            self._move(key, url)
        peer = self._by_url.get(url)
        if peer is None:
            peer = Peer(url, source)
            if not self._room(source):
                return peer  # not kept: the table is full of peers worth more
            self._by_url[url] = peer
            self.wake()
        if proven and key:
            peer.key = key
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

    def _move(self, key: str, url: str) -> None:
        """The device proven to hold ``key`` is now at ``url``: move its entry, keep its
        history (never a static, central or manual entry: those addresses are configured)."""
        for old in list(self._by_url.values()):
            if old.key == key and old.url != url and old.source not in FIXED:
                if url in self._by_url:
                    return
                del self._by_url[old.url]
                old.url = url
                old.backoff_until = 0
                old.failures = 0
                self._by_url[url] = old
                return

    def _room(self, source: str) -> bool:
        if len(self._by_url) < MAX_PEERS or source in FIXED:
            return True
        for old in self._by_url.values():  # oldest first (insertion order)
            if old.source not in FIXED and not old.last_ok and not old.key:
                del self._by_url[old.url]
                return True
        return False

    def contact(self, key: str, listen: str, remote: str | None, central_ok: bool) -> None:
        """A peer proved ``key`` (its token) and told us its listening port: remember it."""
        if not (key and listen and remote):
            return
        try:
            _, port = parse_hostport(listen)
        except ConfigError:
            return
        if port == 0:
            return  # nobody listens on port 0
        self.add(f"http://{remote}:{port}", "inbound", proven=True, key=key, central_ok=central_ok)

    def failed(self, peer: Peer, error: str, penalise: bool = False) -> None:
        peer.failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** min(peer.failures, 10))
        if penalise:
            peer.penalties += 1
            delay = PENALTY_BACKOFF
        peer.backoff_until = self.clock() + delay * random.uniform(0.5, 1.0)  # noqa: S311
        log.info("peer %s failed (%s); backing off %.0fs", peer.label, error, delay)

    def may_send(self, peer: Peer, sha: bytes) -> bool:
        """Whether to upload ``sha`` to ``peer`` again: a peer that always "wants" every photo
        once made a phone holding 6 MB upload 276 MB in 10 s (issue 11, item 7). After
        ``MAX_RESENDS`` complete uploads, the photo waits ``RESEND_WINDOW`` seconds."""
        count, last = peer.sent.get(sha, (0, 0.0))
        return count < MAX_RESENDS or self.clock() - last >= RESEND_WINDOW

    def sent(self, peer: Peer, sha: bytes) -> None:
        count, last = peer.sent.get(sha, (0, 0.0))
        if self.clock() - last >= RESEND_WINDOW:
            count = 0
        if len(peer.sent) >= 4096 and sha not in peer.sent:
            peer.sent.clear()
        peer.sent[sha] = (count + 1, self.clock())

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
