"""The node daemon: one process holding the store, serving the peer API, finding peers and
syncing with them, and pushing to the central server whenever it is reachable.

Theory of operation
-------------------
:class:`Node` wires the parts together and owns their lifetimes and every background task it
starts (no globals). The parts, each unit-tested alone:

* :class:`~.replica.Replica`: the store, the trust store, who we are (certificate, role,
  scope), the reconciler and fingerprint caches, change notification;
* :class:`~.peers.PeerTable`: addresses, backoff, who reaches the centre;
* :class:`~.scheduler.Scheduler`: when to sync with whom, ``MAX_SESSIONS`` at once, each inside
  ``SESSION_BUDGET``; it runs :meth:`Node._run_session`, a :class:`~.sync.SyncSession` over an
  :class:`~.client.HttpPeerClient`;
* :class:`~.receiver.BlobReceiver`: photos arriving, resumed and hash-checked;
* :class:`~.discovery.Discovery`: mDNS, beacon, sweep, given plain values and callbacks;
* the sink (:class:`~.accept.Sink`): a device's ``Carrier`` or the central server's.

The node itself keeps what ties them to the network: the HTTP server (``api.make_app`` over
the node, with the connection guard), the HTTP client session, the request budgets, the
address watcher and the status views. ``__init__`` opens the store and loads what it already
trusts; ``start()`` binds the socket (then the daemon reports ready) and starts discovery, the
scheduler and the address watcher; ``stop()`` ends them all, saves the peer table, closes the
store. Something stored (``changed``), a new peer or a peer reporting a working uplink wakes
the scheduler at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from estafet.crypto.keys import SigningKey
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody
from estafet.protocol.reconcile import Reconciler

from .accept import Sink
from .api import make_app
from .auth import Budget, Gate
from .budgets import PeerBudgets
from .client import HttpPeerClient, PeerClient
from .conns import AcceptErrors, ConnectionGuard
from .discovery import Discovery, local_ipv4
from .errors import ConfigError, StoreError
from .home import Home, NodeConfig, parse_hostport
from .peers import Peer, PeerTable, Stats
from .receiver import BlobReceiver
from .replica import Replica
from .scheduler import Scheduler
from .sink import CARRIER
from .store import Store, StoreDB
from .sync import Report, SyncSession

log = logging.getLogger("estafet.node")
PUBLIC_READS_PER_MINUTE = 600
HANDSHAKES_PER_MINUTE = 30
ADDRESS_POLL = 5.0
"""Seconds between checks of our own addresses (did we walk to another network?). Each check is
a wake-up of an otherwise idle daemon: at 1 s it alone broke the idle budget (< 1 wake-up/s,
bench figure 7); a walk takes minutes, so noticing it within 5 s loses nothing."""


class Node:
    """Wires the parts (see the module docstring) and owns their lifetimes. The attributes and
    methods the API handlers and sessions use (``api.Served``, ``sync.Local``) are the node's
    own or forward to :attr:`replica`."""

    def __init__(
        self,
        home: Path,
        config: NodeConfig,
        key: SigningKey,
        root_public: bytes,
        *,
        sink: Sink = CARRIER,
        role: str | None = None,
        clock: Callable[[], float] = time.time,
        ssl_context: Any = None,
    ) -> None:
        self.home = Home(home)
        self.config = config
        self.key = key
        self.sink = sink
        self.clock = clock
        self.stats = Stats()
        self.peers = PeerTable(key.id.hex(), clock)
        self.scheduler = Scheduler(self.peers, self._run_session, self.stats, config.sync_interval)
        self.peers.wake = self.scheduler.wake  # a new peer, an uplink reported: sync now
        self.replica = Replica.open(
            home,
            root_public,
            clock,
            quota=config.quota_mb * 1024 * 1024,
            role=role,
            scope=config.scope,
            reaches_centre=sink.reaches_centre,
            on_change=self.scheduler.wake,
        )
        self.store: Store = self.replica.store
        self.trust: TrustStore = self.replica.trust
        self.gate = Gate(key, clock)
        self.public_budget = Budget(PUBLIC_READS_PER_MINUTE, 60.0, clock)
        """Requests per address per minute from callers without a token (429 past it)."""
        self.auth_budget = Budget(HANDSHAKES_PER_MINUTE, 60.0, clock)
        self.peer_budgets = PeerBudgets(clock)
        """Upload bytes and signature checks per proven peer (:mod:`.budgets`)."""
        self.accept_errors = AcceptErrors()
        """Failed ``accept()`` calls logged once per burst while we run (:mod:`.conns`)."""
        self.decoder: Executor = ThreadPoolExecutor(2, thread_name_prefix="estafet-decode")
        """Decodes large request bodies off the event loop (``api._unpack``)."""
        self.port = 0
        self.http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.conns: ConnectionGuard | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._bad_noted: dict[tuple[str, str], float] = {}
        self.discovery: Discovery | None = None
        self.receiver = BlobReceiver(self.store, sink, self.stats, self.replica.changed, self.now)
        self.ssl_context = ssl_context

    # --- the replica, as the handlers and sessions see it ----------------------------------
    @property
    def scope(self) -> str:
        return self.replica.scope

    @scope.setter
    def scope(self, value: str) -> None:
        self.replica.scope = value

    def now(self) -> int:
        return int(self.clock())

    def own_certificate(self) -> bytes | None:
        return self.replica.own_certificate()

    async def check_certificate(self, raw: bytes) -> CertificateBody:
        return await self.replica.check_certificate(raw)

    def changed(self) -> None:
        self.replica.changed()

    async def reconciler(self, scope: str, *, initiator: bool = False) -> Reconciler:
        return await self.replica.reconciler(scope, initiator=initiator)

    @property
    def key_hex(self) -> str:
        return self.key.id.hex()

    # --- what we tell others --------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return {
            "v": 1,
            "key": self.key.id,
            "role": self.replica.role,
            "scope": self.scope,
            "name": self.config.name,
            "central_ok": self.stats.uplink_ok or self.sink.reaches_centre,
            "fingerprint": await self.replica.store_fingerprint(),
            "certificate": cert.encode() if (cert := self.replica.cert) else None,
        }

    async def status(self) -> dict[str, Any]:
        counts = await self.store.read(StoreDB.counts)
        usage = await self.store.read(StoreDB.usage)
        return {
            "key": self.key_hex,
            "role": self.replica.role,
            "scope": self.scope,
            "name": self.config.name,
            "listen": self.config.listen,
            "port": self.port,
            "objects": counts,
            "storage": {"used": usage, "quota": self.store.quota},
            "uplink": {
                "central": self.config.central,
                "ok": self.stats.uplink_ok,
                "last": int(self.stats.last_uplink),
            },
            "peers": self.peers.rows(),
            "stats": {
                "blob_bytes_in": self.stats.blob_bytes_in,
                "blob_bytes_out": self.stats.blob_bytes_out,
                "blob_bytes_resent": self.stats.blob_bytes_resent,
                "objects_in": self.stats.objects_in,
                "objects_out": self.stats.objects_out,
                "rejected": self.stats.rejected,
                "sessions": self.stats.sessions,
            },
        }

    # --- peers ------------------------------------------------------------------------
    def add_peer(self, url: str, source: str, **info: Any) -> Peer:
        """See :meth:`PeerTable.add`."""
        return self.peers.add(url, source, **info)

    def _client(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5, sock_read=20)
        return aiohttp.ClientSession(
            timeout=timeout,
            headers={"X-Estafet-Listen": f":{self.port}"},
        )

    async def _watch_addresses(self) -> None:
        addrs = {str(i) for i in local_ipv4()}
        while not self._stopping:
            await asyncio.sleep(ADDRESS_POLL)
            now_addrs = {str(i) for i in local_ipv4()}
            if now_addrs != addrs:
                addrs = now_addrs
                self.network_changed()

    def network_changed(self) -> None:
        """Our addresses changed (we walked): every peer deserves a fresh try at once. Pooled
        keep-alive connections are dropped: made from the old address, a request on one would
        hang until its read timeout (20 s), holding up every other peer's session."""
        if self.http is not None and not self.http.closed:
            stale, self.http = self.http, self._client()
            self.spawn(stale.close(), "close-stale-connections")
        log.info("network changed; retrying every peer")
        self.peers.retry_all()

    def note_bad_request(self, peer: str, path: str, remote: str | None, reason: str) -> None:
        """Log a refused request, and record it as an event (``node peers``) against the peer;
        a flood of them is one event per peer, path and second."""
        self.stats.rejected += 1
        now = self.clock()
        if now - self._bad_noted.get((peer, path), 0.0) < 1.0:
            return  # a burst: logged and recorded once per peer, path and second
        if len(self._bad_noted) > 1000:
            self._bad_noted.clear()
        self._bad_noted[(peer, path)] = now
        log.warning("bad request from %s %s: %s", remote, path, reason)
        self.spawn(self.store.write(StoreDB.event, self.now(), "warning", peer,
                                    f"bad request {path}: {reason}", None),
                   "note-bad-request")  # fmt: skip

    def client_for(self, peer: Peer) -> PeerClient:
        """The peer client a session with ``peer`` uses (over the node's HTTP session)."""
        assert self.http is not None, "the node is not started"
        token = peer.token if peer.token_until > self.clock() + 30 else ""
        return HttpPeerClient(
            self.http, peer.url, peer.label, self._session_headers, credentials=self, token=token
        )

    def _session_headers(self) -> dict[str, str]:
        return {"X-Estafet-Central-OK": "1" if self.stats.uplink_ok else "0"}

    # --- lifecycle --------------------------------------------------------------------
    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def supervise(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``run()`` as a background task that is started again (after 1 s, doubling up
        to 60 s) whenever it fails: the address watcher once died on one error and never came
        back (issue 11, item 7)."""

        async def keep() -> None:
            delay = 1.0
            while not self._stopping:
                try:
                    await run()
                    return
                except Exception:
                    log.exception("%s failed; starting it again in %.0f s", name, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)

        self.spawn(keep(), name)

    async def start(self) -> None:
        """Bind the socket and start the background tasks. Ready when this returns."""
        host, port = parse_hostport(self.config.listen)
        app = make_app(self)
        self.sink.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        self.conns = ConnectionGuard(server)  # a cap and a header deadline (issue 11, item 7)
        self.accept_errors.install(asyncio.get_running_loop())
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                self.conns, host, port, ssl=self.ssl_context, reuse_address=True
            )
        except OSError as exc:
            self.accept_errors.restore()
            await self._runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = self._listener.sockets  # every listening socket
        self.port = int(bound[0].getsockname()[1]) if bound else port
        self.http = self._client()
        for p in self.config.peers:
            h, pt = parse_hostport(p)
            self.add_peer(f"http://{h}:{pt}", "static")
        if self.config.central and not self.sink.reaches_centre:
            central = self.add_peer(self.config.central.rstrip("/"), "central")
            central.is_central = True
        await self._load_known_peers()
        self.discovery = Discovery(
            self.config,
            self.key,
            lambda: self.port,
            self._advert,
            self.replica.store_fingerprint,
            self.add_peer,
            self.spawn,
            lambda: self.http,
        )
        await self.discovery.start()
        self.supervise(self._scheduler, "scheduler")
        self.supervise(self._watch_addresses, "addresses")
        log.info(
            "node %s (%s, scope %r) listening on %s:%d",
            self.key_hex[:12],
            self.replica.role,
            self.scope,
            host,
            self.port,
        )

    async def _load_known_peers(self) -> None:
        for row in await self.store.read(StoreDB.peers):
            if row["source"] in ("static", "central"):
                continue
            self.add_peer(row["addr"], "known", key=row["id"] if len(row["id"]) == 32 else "")

    async def stop(self) -> None:
        self._stopping = True
        if self.discovery is not None:
            await self.discovery.stop()
        await self.scheduler.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.http is not None:
            await self.http.close()
        try:
            if self._listener is not None:
                self._listener.close()  # no new connections; the runner closes the open ones
            if self._runner is not None:
                await self._runner.cleanup()
            await self._save_peers()
        finally:
            self.accept_errors.restore()
            self.decoder.shutdown(wait=False, cancel_futures=True)
            self.replica.close()

    async def _save_peers(self) -> None:
        now = self.now()
        peers = [p for p in self.peers.values() if p.key]

        def save(sdb: StoreDB) -> None:
            for p in peers:
                sdb.upsert_peer(
                    p.key,
                    p.url,
                    p.source,
                    now,
                    role=p.role,
                    scope=p.scope,
                    central_ok=int(p.central_ok),
                    penalties=p.penalties,
                )

        with contextlib.suppress(StoreError, RuntimeError):
            await self.store.write(save)

    def _advert(self) -> dict[str, str]:
        """What discovery announces besides our key and fingerprint."""
        up = self.stats.uplink_ok or self.sink.reaches_centre
        return {"role": self.replica.role, "scope": self.scope, "up": "1" if up else "0"}

    async def _scheduler(self) -> None:
        """The supervised scheduler loop (tests replace this method to sync by hand)."""
        await self.scheduler.run()

    async def _run_session(self, peer: Peer) -> None:
        """One session, as the scheduler runs it (inside its budget)."""
        await SyncSession(self, peer, self.client_for(peer)).run()

    async def sync_now(self, url: str) -> Report:
        """Run one session with ``url`` at once (tests, ``node sync``)."""
        peer = self.peers.get(url) or self.add_peer(url, "manual")
        return await SyncSession(self, peer, self.client_for(peer)).run()
