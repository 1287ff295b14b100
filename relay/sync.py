"""One sync session with one peer, started by us, moving objects in BOTH directions.

Theory of operation
-------------------
1. ``GET /v1/info`` (cached for a while): the peer's key id, role, scope, uplink flag.
2. Range reconciliation (:mod:`estafet.protocol.reconcile`) over the objects of the session
   scope: we learn which ids only we hold (``have``) and which only the peer holds (``need``).
   Two stores already in sync learn it in one small round trip.
3. Pull ``need`` (verified and stored in fetch order: revocations, certificates, manifest,
   receipts, results, endorsements), then push ``have`` in the same order. The peer answers a
   push with receipts it holds (the central server answers with fresh ones).
4. Photos last: pull the blobs of results still pending here with HTTP Range from what we
   already hold of them, then offer the peer the blobs it wants and upload each from the offset
   it already holds. A cut transfer resumes where it stopped, from this peer or another.
   ``PHOTOS_IN_FLIGHT`` photos move at once each way (one's fsync and commit overlap the next
   one's bytes); the first failure stops the others (each keeps what arrived) and ends the
   session as a sequential one would.

Every call has a timeout. A peer that serves a forged object or a wrong blob is penalised
(long backoff) and logged; the data is fetched elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import aiohttp

from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import FETCH_PRIORITY, decode_envelope
from estafet.protocol.reconcile import ReconcileError, Reconciler

from . import wire
from .accept import Sink, accept_batch
from .blobs import CHUNK
from .client import PeerClient, PeerFull
from .errors import BlobMismatch, PeerError, StoreFull
from .peers import Peer, PeerTable, Stats
from .receiver import BlobReceiver, ResumeMismatch
from .store import Store, StoreDB, session_scope

T = TypeVar("T")
log = logging.getLogger("estafet.sync")
INFO_TTL = 120.0
MAX_ROUNDS = 64
PUSH_BATCH_BYTES = 2 * 1024 * 1024
PHOTOS_IN_FLIGHT = 3
"""Photo transfers a session runs at once in each direction (memory: at most this many read
buffers of ``SEND_CHUNK`` bytes and receive buffers of :class:`~.stream.ReadAhead`)."""
SEND_CHUNK = 4 * CHUNK


class Local(Protocol):
    """What a session needs of the node that runs it (:class:`~.node.Node` is one)."""

    store: Store
    trust: TrustStore
    scope: str
    sink: Sink
    stats: Stats
    peers: PeerTable

    def now(self) -> int: ...

    def changed(self) -> None: ...

    async def reconciler(self, scope: str, *, initiator: bool = False) -> Reconciler: ...

    receiver: BlobReceiver


@dataclass
class Report:
    peer: str
    ok: bool = False
    in_sync: bool = False
    pulled: int = 0
    pushed: int = 0
    rejected: int = 0
    blobs_in: int = 0
    blobs_out: int = 0
    round_trips: int = 0
    reconcile_bytes: int = 0
    error: str = ""
    receipts: list[bytes] = field(default_factory=list)


class SyncSession:
    """One session of ``local`` with ``peer``, through ``client`` (see :mod:`.client`)."""

    def __init__(self, local: Local, peer: Peer, client: PeerClient) -> None:
        self.node = local
        self.peer = peer
        self.client = client
        self.report = Report(peer.label)

    async def run(self) -> Report:
        self.node.stats.sessions += 1
        try:
            await self._run()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.report.error = f"unreachable: {type(exc).__name__}: {exc}"
            self.node.peers.failed(self.peer, self.report.error)
            if self.peer.is_central:
                self.node.stats.uplink_ok = False
        except (PeerError, wire.WireError, ReconcileError) as exc:
            self.report.error = f"misbehaved: {exc}"
            await self._log_bad(str(exc))
            self.node.peers.failed(self.peer, self.report.error, penalise=True)
        else:
            self.report.ok = True
            self.node.peers.succeeded(self.peer)
            if self.peer.is_central:
                self.node.stats.uplink_ok = True
                self.node.stats.last_uplink = self.peer.last_ok
        return self.report

    async def _log_bad(self, reason: str) -> None:
        log.warning("peer %s: %s", self.peer.label, reason)
        await self.node.store.write(
            StoreDB.event, self.node.now(), "warning", self.peer.label, reason, None
        )

    # --- the session ----------------------------------------------------------------------
    async def _run(self) -> None:
        await self._authenticate()
        await self._info()
        scope = session_scope(self.node.scope, self.peer.scope) or "~"
        need, have = await self._reconcile(scope)
        if not need and not have:
            self.report.in_sync = True
        if need:
            await self._pull(need)
        if have:
            await self._push(have)
        await self._pull_blobs()
        await self._push_blobs()

    async def _authenticate(self) -> None:
        """Prove our key and learn the peer's (:mod:`.auth`); a token is reused until near its
        end. The peer's entry is labelled with the key it *proved*, never one it claimed."""
        clock = self.node.peers.clock
        if self.peer.token and self.peer.token_until > clock() + 30:
            self.client.token = self.peer.token
            return
        done = await self.client.authenticate()
        if done is None:
            return  # no certificate on one side: public reads only
        proven, token, ttl = done
        if proven.key == self.node.peers.own_key:
            raise PeerError(self.peer.label, "this is ourselves")
        self.peer.token, self.peer.token_until = token, clock() + ttl
        self.node.peers.add(self.peer.url, self.peer.source, proven=True, key=proven.key,
                            role=proven.role, scope=proven.scope)  # fmt: skip

    async def _info(self) -> None:
        if self.node.peers.clock() - self.peer.info_at < INFO_TTL and self.peer.key:
            return
        info = await self.client.info()
        key = info["key"].hex()
        if key == self.node.peers.own_key:
            raise PeerError(self.peer.label, "this is ourselves")
        self.node.peers.add(
            self.peer.url,
            self.peer.source,
            role=info["role"],
            scope=info["scope"],
            central_ok=bool(info.get("central_ok")),
        )
        self.peer.info_at = self.node.peers.clock()

    async def _reconcile(self, scope: str) -> tuple[list[bytes], list[bytes]]:
        rec: Reconciler = await self.node.reconciler(scope, initiator=True)
        msg: bytes | None = rec.initiate()
        need: list[bytes] = []
        have: list[bytes] = []
        for _ in range(MAX_ROUNDS):
            assert msg is not None
            reply = await self.client.reconcile(scope, msg)
            self.report.round_trips += 1
            self.report.reconcile_bytes += len(msg) + len(reply)
            msg, h, n = rec.reconcile(reply)
            have += h
            need += n
            if msg is None:
                return need, have
        raise PeerError(self.peer.label, f"reconciliation did not finish in {MAX_ROUNDS} rounds")

    async def _pull(self, need: list[bytes]) -> None:
        for i in range(0, len(need), wire.MAX_IDS):
            ids = need[i : i + wire.MAX_IDS]
            raws = await self.client.get_objects(ids)
            wanted = set(ids)
            good = [r for r in raws if _id(r) in wanted]
            await self._accept(good)
            if len(good) != len(raws):
                raise PeerError(
                    self.peer.label,
                    f"served {len(raws) - len(good)} object(s) "
                    "that were not asked for (tampered or junk)",
                )

    async def _accept(self, raws: list[bytes]) -> None:
        node = self.node
        outcomes = await node.store.write(
            accept_batch,
            node.trust,
            raws,
            peer=self.peer.label,
            origin="relayed",
            scope=node.scope,
            now=node.now(),
            sink=node.sink,
        )
        # a refusal that depends only on time or manifest version is not the peer's fault
        bad = [o for o in outcomes if o.status == "rejected" and o.final]
        self.report.pulled += sum(o.status == "stored" for o in outcomes)
        node.stats.objects_in += self.report.pulled
        if outcomes:
            node.changed()
        if bad:
            self.report.rejected += len(bad)
            node.stats.rejected += len(bad)
            raise PeerError(
                self.peer.label,
                f"served {len(bad)} object(s) that failed verification, first: {bad[0].reason}",
            )

    async def _push(self, have: list[bytes]) -> None:
        # an object the central server refused is recorded with its reason, never re-sent
        refused = await self.node.store.read(StoreDB.with_state, have, "rejected")
        raws = await self.node.store.read(StoreDB.get_raw, [i for i in have if i not in refused])
        raws.sort(key=_priority)
        batch: list[bytes] = []
        size = 0
        for raw in [*raws, b""]:
            if raw and len(batch) < wire.MAX_OBJECTS and size + len(raw) < PUSH_BATCH_BYTES:
                batch.append(raw)
                size += len(raw)
                continue
            if batch:
                await self._push_batch(batch)
            batch, size = ([raw], len(raw)) if raw else ([], 0)

    async def _push_batch(self, batch: list[bytes]) -> None:
        body = await self.client.put_objects(batch)
        held = []
        for r in body["results"]:
            if isinstance(r, dict) and r.get("status") in ("stored", "duplicate"):
                held.append(r.get("id"))
        ids = [i for i in held if isinstance(i, bytes)]
        await self.node.store.write(StoreDB.add_holders, ids, self.peer.label)
        if self.peer.is_central:
            await self.node.store.write(StoreDB.mark_pushed, ids, self.node.now())
        self.report.pushed += len(ids)
        self.node.stats.objects_out += len(ids)
        receipts = body["receipts"]
        if receipts:
            await self._accept(receipts)

    # --- photos ---------------------------------------------------------------------------
    async def _pull_blobs(self) -> None:
        store = self.node.store
        missing = await store.read(StoreDB.missing_photos, 200)
        if not missing:
            return
        try:  # room for all of them in one trip; when that fails, photo by photo
            await store.write(StoreDB.make_room, sum(size for _, size in missing))
            room = False
        except StoreFull:
            room = True

        async def pull(item: tuple[bytes, int]) -> bool:
            sha, size = item
            try:
                if room:
                    await store.write(StoreDB.make_room, size)
            except StoreFull as exc:
                log.info("not fetching photos: %s", exc)
                return False
            await self._pull_blob(sha, size)
            return True

        await in_flight(missing, pull)

    async def _pull_blob(self, sha: bytes, size: int, have: int | None = None) -> None:
        blobs = self.node.store.blobs
        if have is None:
            have = await self.node.store.blob_io(blobs.partial_size, sha)
        async with self.client.get_blob(sha, have) as got_blob:
            if got_blob is None:
                return
            start, stream = got_blob
            if start != have:  # the peer ignored the range: it sends the whole blob again
                self.node.stats.blob_bytes_resent += have
                have = 0
            try:
                got = await self.node.receiver.receive(sha, size, have, stream, self.peer.label)
            except ResumeMismatch:  # our earlier bytes were stale: again from zero next time
                log.info("photo %s did not match after a resume; again from 0", sha.hex()[:16])
                return
            except BlobMismatch as exc:
                raise PeerError(self.peer.label, f"served a wrong blob {sha.hex()[:16]}") from exc
        if got == size:
            self.report.blobs_in += 1
        else:
            raise aiohttp.ClientPayloadError(f"blob {sha.hex()[:16]} cut at {got}/{size}")

    async def _push_blobs(self) -> None:
        shas = await self.node.store.read(StoreDB.offer_photos, 1024)
        if not shas:
            return
        want = await self.client.want_blobs(shas)
        offered = set(shas)
        todo: list[tuple[bytes, int]] = []
        for item in want[:1024]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)):
                raise PeerError(self.peer.label, "malformed blob want list")
            sha, offset = item
            if sha not in offered or not isinstance(offset, int) or offset < 0:
                continue
            if not self.node.peers.may_send(self.peer, sha):
                continue  # sent complete twice lately: it "wants" it again, it waits
            todo.append((sha, offset))
        await in_flight(todo, lambda item: self._push_blob(*item))

    async def _push_blob(self, sha: bytes, offset: int) -> bool:
        path = self.node.store.blobs.path(sha)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return True
        if offset >= size:
            return True

        blob_io = self.node.store.blob_io

        async def body() -> AsyncIterator[bytes]:
            fh = await blob_io(_open_at, path, offset)
            left = size - offset  # no trip to learn of the end
            try:
                while left > 0 and (chunk := await blob_io(fh.read, min(left, SEND_CHUNK))):
                    left -= len(chunk)
                    self.node.stats.blob_bytes_out += len(chunk)
                    yield chunk
            finally:
                fh.close()  # read-only: nothing to flush, no disk wait

        try:
            complete = await self.client.put_blob(sha, offset, size, body())
        except PeerFull:
            log.info("peer %s is full; photos wait", self.peer.label)
            return False
        if complete:  # else it stopped reading: resume later
            self.report.blobs_out += 1
            self.node.peers.sent(self.peer, sha)
        return True


async def in_flight(
    items: list[T], move: Callable[[T], Awaitable[bool]], n: int | None = None
) -> None:
    """``move`` every item, ``n`` (``PHOTOS_IN_FLIGHT``) at a time, in order of start.
    ``move`` returning False or raising stops new starts; those running end on their own (each
    has its own timeouts; on a dropped link they fail too, keeping what they moved); then the
    first exception is raised as itself, as a loop of one would."""
    todo = iter(items)
    stop = False

    async def worker() -> None:
        nonlocal stop
        for item in todo:
            if stop:
                return
            try:
                if not await move(item):
                    stop = True
            except BaseException:
                stop = True
                raise

    width = min(n or PHOTOS_IN_FLIGHT, len(items))
    workers = [asyncio.create_task(worker(), name="photo") for _ in range(width)]
    if not workers:
        return
    try:
        await asyncio.wait(workers)
    finally:
        for w in workers:  # only when we are cancelled ourselves: stop them too
            w.cancel()
        await asyncio.wait(workers)
    for w in workers:
        if not w.cancelled() and (exc := w.exception()) is not None:
            raise exc


def _open_at(path: Path, offset: int) -> BinaryIO:
    fh = path.open("rb")
    fh.seek(offset)
    return fh


def _id(raw: bytes) -> bytes | None:
    try:
        return decode_envelope(raw).id
    except Exception:
        return None


def _priority(raw: bytes) -> int:
    try:
        return FETCH_PRIORITY[decode_envelope(raw).kind]
    except Exception:
        return len(FETCH_PRIORITY)
