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

Every call has a timeout. A peer that serves a forged object or a wrong blob is penalised
(long backoff) and logged; the data is fetched elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from estafet.protocol.objects import FETCH_PRIORITY, decode_envelope
from estafet.protocol.reconcile import ReconcileError, Reconciler

from . import wire
from .accept import accept_batch
from .blobs import CHUNK
from .errors import BlobMismatch, PeerError, StoreFull
from .store import StoreDB, session_scope

if TYPE_CHECKING:
    from .node import Node, Peer

log = logging.getLogger("estafet.sync")
INFO_TTL = 120.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5, sock_read=20)
# One photo request may take this long; what arrived is kept and the next session resumes, so a
# peer trickling bytes (or a very slow link) cannot hold the scheduler for more than this.
BLOB_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=5, sock_read=20)
MAX_ROUNDS = 64
PUSH_BATCH_BYTES = 2 * 1024 * 1024
MAX_RECONCILE = 512 * 1024


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
    def __init__(self, node: Node, peer: Peer) -> None:
        self.node = node
        self.peer = peer
        self.report = Report(peer.label)
        assert node.http is not None
        self.http = node.http

    async def run(self) -> Report:
        self.node.stats.sessions += 1
        try:
            await self._run()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.report.error = f"unreachable: {type(exc).__name__}: {exc}"
            self.node.peer_failed(self.peer, self.report.error)
            if self.peer.is_central:
                self.node.stats.uplink_ok = False
        except (PeerError, wire.WireError, ReconcileError) as exc:
            self.report.error = f"misbehaved: {exc}"
            await self._log_bad(str(exc))
            self.node.peer_failed(self.peer, self.report.error, penalise=True)
        else:
            self.report.ok = True
            self.peer.failures = 0
            self.peer.last_ok = self.node.clock()
            if self.peer.is_central:
                self.node.stats.uplink_ok = True
                self.node.stats.last_uplink = self.node.clock()
        return self.report

    async def _log_bad(self, reason: str) -> None:
        log.warning("peer %s: %s", self.peer.label, reason)
        await self.node.store.write(
            StoreDB.event, self.node.now(), "warning", self.peer.label, reason, None
        )

    # --- HTTP helpers ---------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"X-Estafet-Central-OK": "1" if self.node.stats.uplink_ok else "0"}

    async def _post(self, path: str, body: dict[str, Any], required: dict[str, type]) -> Any:
        async with self.http.post(
            self.peer.url + path,
            data=wire.pack(body),
            headers=self._headers(),
            timeout=REQUEST_TIMEOUT,
        ) as resp:
            data = await wire.read_capped(resp.content, wire.MAX_BODY)
            if len(data) > wire.MAX_BODY:
                raise PeerError(self.peer.label, f"{path}: response larger than {wire.MAX_BODY}")
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info,
                    (),
                    status=resp.status,
                    message=data[:200].decode(errors="replace"),
                )
            return wire.unpack(data, required)

    # --- the session ----------------------------------------------------------------------
    async def _run(self) -> None:
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

    async def _info(self) -> None:
        if self.node.clock() - self.peer.info_at < INFO_TTL and self.peer.key:
            return
        async with self.http.get(self.peer.url + "/v1/info", timeout=REQUEST_TIMEOUT) as resp:
            data = await wire.read_capped(resp.content, 64 * 1024)
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        info = wire.unpack(data, {"key": bytes, "role": str, "scope": str})
        key = info["key"].hex()
        if key == self.node.key_hex:
            raise PeerError(self.peer.label, "this is ourselves")
        self.node.add_peer(
            self.peer.url,
            self.peer.source,
            key=key,
            role=info["role"],
            scope=info["scope"],
            central_ok=bool(info.get("central_ok")),
        )
        self.peer.info_at = self.node.clock()

    async def _reconcile(self, scope: str) -> tuple[list[bytes], list[bytes]]:
        rec: Reconciler = await self.node.reconciler(scope, initiator=True)
        msg: bytes | None = rec.initiate()
        need: list[bytes] = []
        have: list[bytes] = []
        for _ in range(MAX_ROUNDS):
            assert msg is not None
            async with self.http.post(
                self.peer.url + "/v1/reconcile",
                params={"scope": scope},
                data=msg,
                headers=self._headers(),
                timeout=REQUEST_TIMEOUT,
            ) as resp:
                reply = await wire.read_capped(resp.content, MAX_RECONCILE)
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            if len(reply) > MAX_RECONCILE:
                raise PeerError(self.peer.label, f"reconcile reply larger than {MAX_RECONCILE}")
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
            body = await self._post("/v1/objects/get", {"ids": ids}, {"objects": list})
            raws = wire.bin_list(body["objects"], wire.MAX_IDS)
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
        bad = [o for o in outcomes if o.status == "rejected"]
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
        body = await self._post("/v1/objects/put", {"objects": batch}, {"results": list})
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
        receipts = wire.bin_list(body.get("receipts", []))
        if receipts:
            await self._accept(receipts)

    # --- photos ---------------------------------------------------------------------------
    async def _pull_blobs(self) -> None:
        missing = await self.node.store.read(StoreDB.missing_photos, 200)
        blobs = self.node.store.blobs

        def room(sdb: StoreDB, sha: bytes, size: int) -> int:  # one writer-thread trip, not two
            sdb.make_room(size)
            return blobs.partial_size(sha)

        for sha, size in missing:
            try:
                have = await self.node.store.write(room, sha, size)
            except StoreFull as exc:
                log.info("not fetching photos: %s", exc)
                return
            await self._pull_blob(sha, size, have)

    async def _pull_blob(self, sha: bytes, size: int, have: int | None = None) -> None:
        blobs = self.node.store.blobs
        if have is None:
            have = await self.node.store.blob_io(blobs.partial_size, sha)
        headers = {"Range": f"bytes={have}-"} if have else {}
        async with self.http.get(
            f"{self.peer.url}/v1/blobs/{sha.hex()}", headers=headers, timeout=BLOB_TIMEOUT
        ) as resp:
            if resp.status == 404:
                return
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            if resp.status == 200 and have:
                self.node.stats.blob_bytes_resent += have
                have = 0
            try:
                got = await self.node.receive_blob(sha, size, have, resp.content, self.peer.label)
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
        body = await self._post("/v1/blobs/want", {"blobs": shas}, {"want": list})
        for item in body["want"][:1024]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)):
                raise PeerError(self.peer.label, "malformed blob want list")
            sha, offset = item
            if sha not in shas or not isinstance(offset, int) or offset < 0:
                continue
            if not await self._push_blob(sha, offset):
                return

    async def _push_blob(self, sha: bytes, offset: int) -> bool:
        path = self.node.store.blobs.path(sha)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return True
        if offset >= size:
            return True

        async def body() -> Any:
            with path.open("rb") as fh:
                fh.seek(offset)
                while chunk := await asyncio.to_thread(fh.read, CHUNK * 4):
                    self.node.stats.blob_bytes_out += len(chunk)
                    yield chunk

        async with self.http.put(
            f"{self.peer.url}/v1/blobs/{sha.hex()}",
            data=body(),
            headers={
                **self._headers(),
                "X-Estafet-Offset": str(offset),
                "Content-Length": str(size - offset),
            },
            timeout=BLOB_TIMEOUT,
        ) as resp:
            data = await wire.read_capped(resp.content, 64 * 1024)
            if resp.status == 507:
                log.info("peer %s is full; photos wait", self.peer.label)
                return False
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        if wire.unpack(data, {}).get("complete") is True:  # else it stopped reading: resume later
            self.report.blobs_out += 1
        return True


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
