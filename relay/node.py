"""The node daemon: one process holding the store, serving the peer API, finding peers and
syncing with them, and pushing to the central server whenever it is reachable.

Theory of operation
-------------------
:class:`Node` owns every long-lived part and every background task it starts (no globals).
``start()`` opens the store, loads what the store already trusts, binds the HTTP socket (then
the daemon reports ready), and starts discovery and the sync scheduler. The scheduler wakes every
``sync_interval`` seconds (or at once when discovery reports a new peer or a peer reports a
working uplink), picks peers that are not backing off, central-reaching peers first, and runs
a :class:`~.sync.SyncSession` with each, up to ``MAX_SESSIONS`` at once, each inside a
``SESSION_BUDGET`` (issue 11: three black holes claiming an uplink held delivery for 60 s).
Failures back off exponentially with jitter; a peer that served forged data or a wrong blob is
penalised with a longer backoff.
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
from estafet.protocol.objects import CertificateBody, Envelope, decode_envelope, encode_envelope
from estafet.protocol.reconcile import Reconciler, fingerprint

from .accept import Sink, load_trust
from .api import make_app
from .auth import AuthError, Budget, Gate, check_certificate
from .budgets import PeerBudgets
from .client import HttpPeerClient, PeerClient
from .conns import AcceptErrors, ConnectionGuard
from .discovery import Discovery, local_ipv4
from .errors import ConfigError, StoreError
from .home import Home, NodeConfig, parse_hostport
from .peers import Peer, PeerTable, Stats
from .receiver import BlobReceiver
from .sink import CARRIER
from .store import Store, StoreDB
from .sync import Report, SyncSession

log = logging.getLogger("estafet.node")
MAX_SESSIONS = 4
"""Sessions the scheduler runs at once: one black-hole peer cannot hold the others."""
SESSION_BUDGET = 120.0
"""Seconds one scheduled session may take; what moved is kept, the next session goes on."""
PUBLIC_READS_PER_MINUTE = 600
HANDSHAKES_PER_MINUTE = 30
ADDRESS_POLL = 5.0
"""Seconds between checks of our own addresses (did we walk to another network?). Each check is
a wake-up of an otherwise idle daemon: at 1 s it alone broke the idle budget (< 1 wake-up/s,
bench figure 7); a walk takes minutes, so noticing it within 5 s loses nothing."""


class Node:
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
        self.trust = TrustStore(root_public)
        self.store: Store = Store.open(home, int(clock()), quota=config.quota_mb * 1024 * 1024)
        self.cert: Envelope | None = None
        self.role = role or "node"
        self.scope = config.scope
        self.stats = Stats()
        self._wake = asyncio.Event()
        self.peers = PeerTable(key.id.hex(), clock, self._wake.set)
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
        self._rec_cache: dict[str, tuple[int, Reconciler, list[tuple[int, bytes]]]] = {}
        self._version = 0
        self._fp_cache: tuple[tuple[int, ...], bytes] | None = None
        self._stopping = False
        self._sessions = asyncio.Semaphore(MAX_SESSIONS)
        self._in_session: set[str] = set()
        self._bad_noted: dict[tuple[str, str], float] = {}
        self.discovery: Discovery | None = None
        self.receiver = BlobReceiver(self.store, sink, self.stats, self.changed, self.now)
        self.ssl_context = ssl_context
        self._load_identity()

    # --- identity -----------------------------------------------------------------------
    def _load_identity(self) -> None:
        sdb = self.store.sync_db()
        load_trust(sdb, self.trust, self.now())
        cert_id = sdb.get_meta("certificate")
        if cert_id:
            raws = sdb.get_raw([bytes.fromhex(cert_id)])
            if raws:
                self.cert = decode_envelope(raws[0])
        body = self.cert.body if self.cert else None
        if isinstance(body, CertificateBody):
            if self.role == "node":
                self.role = body.role
            if not self.scope and body.scope:
                self.scope = body.scope[0]
        if self.sink.reaches_centre:
            self.role = "central"
            self.scope = ""

    def now(self) -> int:
        return int(self.clock())

    def own_certificate(self) -> bytes | None:
        """Our certificate (with the issuer's, so a peer that lacks it can check the chain)."""
        if self.cert is None:
            return None
        if self.cert.chain or self.cert.signer == self.trust.root_id:
            return self.cert.encode()
        issuers = [
            c.encode()
            for c in self.trust.certificates()
            if isinstance(c.body, CertificateBody) and c.body.role == "issuer"
        ]
        return encode_envelope(self.cert.content, self.cert.signature, tuple(issuers[:4]))

    async def check_certificate(self, raw: bytes) -> CertificateBody:
        """A peer's certificate, checked on the writer thread (the only one touching trust)."""
        if len(raw) > 64 * 1024:
            raise AuthError("certificate too large")
        now = self.now()
        return await self.store.write(lambda _sdb: check_certificate(self.trust, raw, now))

    @property
    def key_hex(self) -> str:
        return self.key.id.hex()

    def changed(self) -> None:
        self._version += 1
        self._wake.set()

    # --- reconciliation -----------------------------------------------------------------
    async def reconciler(self, scope: str, *, initiator: bool = False) -> Reconciler:
        """The cached responder over ``scope`` (stateless, shared by every incoming session),
        or with ``initiator`` a fresh one over the same items: an initiator keeps per-session
        state, and our own sessions (scheduler, ``sync_now``) may run at the same time."""

        def build(sdb: StoreDB) -> tuple[int, list[tuple[int, bytes]] | None]:
            version = int(
                sdb.db.execute("SELECT coalesce(max(rowid), 0) FROM objects").fetchone()[0]
            )
            cached = self._rec_cache.get(scope)
            if cached and cached[0] == version:
                return version, None
            return version, sdb.items(scope)

        version, items = await self.store.read(build)
        cached = self._rec_cache.get(scope)
        if items is None and cached is not None:
            return cached[1].session() if initiator else cached[1]
        if items is None:  # evicted from the cache meanwhile
            items = await self.store.read(StoreDB.items, scope)
        rec = Reconciler(items)
        self._rec_cache[scope] = (version, rec, items)
        if len(self._rec_cache) > 16:
            self._rec_cache.pop(next(iter(self._rec_cache)))
        return rec.session() if initiator else rec

    async def store_fingerprint(self) -> bytes:
        """The fingerprint of our scope's items (advertised in mDNS and /v1/info, a hint only).
        Kept while the database files are unchanged, checked with a stat on this thread: the
        mDNS refresh every 10 s otherwise woke a reader thread (and traded the GIL) in an idle
        daemon. Any commit, ours or another process's (``result submit``), changes the stamp."""
        stamp = self._store_stamp()
        if self._fp_cache is not None and self._fp_cache[0] == stamp:
            return self._fp_cache[1]
        items = await self.store.read(StoreDB.items, self.scope)
        fp = fingerprint(items)
        self._fp_cache = (stamp, fp)  # stamped before reading: never older than its stamp
        return fp

    def _store_stamp(self) -> tuple[int, ...]:
        out: list[int] = []
        for path in (self.store.path, self.store.path.with_name(self.store.path.name + "-wal")):
            try:
                st = path.stat()
                out += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                out += [0, 0, 0]
        return tuple(out)

    # --- what we tell others --------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return {
            "v": 1,
            "key": self.key.id,
            "role": self.role,
            "scope": self.scope,
            "name": self.config.name,
            "central_ok": self.stats.uplink_ok or self.sink.reaches_centre,
            "fingerprint": await self.store_fingerprint(),
            "certificate": self.cert.encode() if self.cert else None,
        }

    async def status(self) -> dict[str, Any]:
        counts = await self.store.read(StoreDB.counts)
        usage = await self.store.read(StoreDB.usage)
        return {
            "key": self.key_hex,
            "role": self.role,
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
            self.store_fingerprint,
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
            self.role,
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
        self._wake.set()
        if self.discovery is not None:
            await self.discovery.stop()
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
            self.store.close()

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
        return {"role": self.role, "scope": self.scope, "up": "1" if up else "0"}

    async def _scheduler(self) -> None:
        while not self._stopping:
            # no peer known: nothing to retry, so sleep until one appears (add_peer wakes us)
            # rather than tick every sync_interval (each tick is a wake-up of an idle daemon)
            interval = self.config.sync_interval if self.peers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            if self._stopping:
                return
            ready = [p for p in self.peers.ready() if p.url not in self._in_session]
            for peer in ready:
                await self._sessions.acquire()  # at most MAX_SESSIONS at once
                if self._stopping:
                    self._sessions.release()
                    return
                self._in_session.add(peer.url)
                self.spawn(self._session(peer), f"session {peer.label[:16]}")
            self.stats.uplink_ok = self.peers.uplink_ok()

    async def _session(self, peer: Peer) -> None:
        """One scheduled session, inside its time budget: a black hole costs one slot for at
        most ``SESSION_BUDGET`` seconds while the other sessions go on (issue 11, item 7)."""
        try:
            async with asyncio.timeout(SESSION_BUDGET):
                await SyncSession(self, peer, self.client_for(peer)).run()
        except TimeoutError:
            self.peers.failed(peer, f"session over its {SESSION_BUDGET:.0f} s budget")
        except Exception as exc:  # e.g. disk full: never let the scheduler end
            log.exception("sync with %s failed", peer.label)
            self.peers.failed(peer, f"{type(exc).__name__}: {exc}")
        finally:
            self._in_session.discard(peer.url)
            self._sessions.release()
            self.stats.uplink_ok = self.peers.uplink_ok()

    async def sync_now(self, url: str) -> Report:
        """Run one session with ``url`` at once (tests, ``node sync``)."""
        peer = self.peers.get(url) or self.add_peer(url, "manual")
        return await SyncSession(self, peer, self.client_for(peer)).run()
