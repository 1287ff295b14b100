"""A sync session against a fake peer, with no sockets: the session only speaks to a
:class:`~estafet.relay.client.PeerClient`, here one backed by another node's store in memory
(as httpx tests a client with ``MockTransport``). Neither node is started: no port, no HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from estafet.protocol.objects import decode_envelope
from estafet.relay import wire
from estafet.relay.accept import accept_batch
from estafet.relay.auth import Proven
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB, session_scope
from estafet.relay.sync import SyncSession
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import make_node


class MemoryPeer:
    """A PeerClient that answers from ``other``'s store, the way its /v1/ API would."""

    def __init__(self, other: Node, label: str = "peer") -> None:
        self.other = other
        self.label = label
        self.calls: list[str] = []
        self.tamper = False
        self.fail_on = ""
        self.token = ""

    async def authenticate(self) -> tuple[Proven, str, float] | None:
        """What the handshake proves: the other node's key (no signatures in memory)."""
        self._call("authenticate")
        o = self.other
        return Proven(o.key.id.hex(), o.replica.role, o.scope), "memory", 600.0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_on:
            raise ConnectionResetError("link cut")

    async def info(self) -> dict[str, Any]:
        self._call("info")
        o = self.other
        return {"key": o.key.id, "role": o.replica.role, "scope": o.scope}

    async def reconcile(self, scope: str, message: bytes) -> bytes:
        self._call("reconcile")
        scope = session_scope(scope, self.other.scope) or "~"
        return (await self.other.reconciler(scope)).respond(message)

    async def get_objects(self, ids: list[bytes]) -> list[bytes]:
        self._call("get")
        raws = await self.other.store.read(StoreDB.get_raw, ids)
        if self.tamper:  # flip a bit of each object's own signature: a forgery
            raws = [forge(r) for r in raws]
        return raws

    async def put_objects(self, raws: list[bytes]) -> dict[str, Any]:
        self._call("put")
        o = self.other
        outs = await o.store.write(accept_batch, o.trust, raws, peer=self.label,
                                   origin="relayed", scope=o.scope, now=o.now())  # fmt: skip
        return {"results": [{"id": x.id, "status": x.status} for x in outs], "receipts": []}

    async def want_blobs(self, shas: list[bytes]) -> list[Any]:
        self._call("want")
        o = self.other

        def want(sdb: StoreDB) -> list[Any]:
            return [[s, o.store.blobs.partial_size(s)] for s in shas if not sdb.has_blob(s)]

        return await o.store.read(want)

    @contextlib.asynccontextmanager
    async def get_blob(
        self, sha: bytes, offset: int
    ) -> AsyncIterator[tuple[int, wire.Readable] | None]:
        self._call("get_blob")
        if not await self.other.store.read(StoreDB.has_blob, sha):
            yield None
            return
        stream = asyncio.StreamReader()
        stream.feed_data(self.other.store.blobs.path(sha).read_bytes()[offset:])
        stream.feed_eof()
        yield offset, stream

    async def put_blob(
        self, sha: bytes, offset: int, size: int, chunks: AsyncIterator[bytes]
    ) -> bool:
        self._call("put_blob")
        stream = asyncio.StreamReader()
        async for chunk in chunks:
            stream.feed_data(chunk)
        stream.feed_eof()
        got = await self.other.receiver.receive(sha, size, offset, stream, self.label)
        return got == size


def forge(raw: bytes) -> bytes:
    env = decode_envelope(raw)
    sig = bytes([env.signature[0] ^ 1]) + env.signature[1:]
    return dataclasses.replace(env, signature=sig).encode()


def two_nodes(tmp: Path) -> tuple[World, Node, Node]:
    world = World()
    phone = make_node(world, tmp, "chair", role="kpps-chair", scope=(TPS_A,))
    relay = make_node(world, tmp, "chair-b", role="kpps-chair", scope=(TPS_A,))
    return world, phone, relay


async def test_a_session_moves_results_and_photos_both_ways_without_sockets(
    tmp_path: Path,
) -> None:
    world, phone, relay = two_nodes(tmp_path)
    mine = submit_result(phone.store, phone.key, world.root.public, form_json("bupati"),
                         photo_files(tmp_path, "b"), world.now)  # fmt: skip
    theirs = submit_result(relay.store, relay.key, world.root.public, form_json("gubernur"),
                           photo_files(tmp_path, "g"), world.now)  # fmt: skip
    peer = phone.add_peer("mem://relay", "manual")
    report = await SyncSession(phone, peer, MemoryPeer(relay)).run()
    assert report.ok, report.error
    # each way: one result, its signer's certificate, three photos
    assert (report.pulled, report.pushed, report.blobs_in, report.blobs_out) == (2, 2, 3, 3)
    for node in (phone, relay):
        assert await node.store.read(StoreDB.has, [mine.id, theirs.id]) == {mine.id, theirs.id}
        assert await node.store.read(StoreDB.missing_photos, 10) == []
    assert phone.http is None  # never started: no socket was involved
    again = await SyncSession(phone, peer, MemoryPeer(relay)).run()
    assert again.in_sync and again.round_trips == 1
    for node in (phone, relay):
        node.store.close()


async def test_a_peer_serving_forged_objects_is_penalised(tmp_path: Path) -> None:
    world, phone, relay = two_nodes(tmp_path)
    forged = submit_result(relay.store, relay.key, world.root.public, form_json("bupati"),
                           photo_files(tmp_path, "b"), world.now)  # fmt: skip
    fake = MemoryPeer(relay)
    fake.tamper = True
    peer = phone.add_peer("mem://relay", "manual")
    report = await SyncSession(phone, peer, fake).run()
    assert not report.ok and report.error.startswith("misbehaved")
    assert peer.penalties == 1 and peer.backoff_until > phone.clock()
    assert await phone.store.read(StoreDB.has, [forged.id]) == set()
    events = await phone.store.read(StoreDB.events)
    assert any(e["peer"] == peer.label for e in events)
    for node in (phone, relay):
        node.store.close()


async def test_a_cut_link_backs_off_without_penalty(tmp_path: Path) -> None:
    _world, phone, relay = two_nodes(tmp_path)
    fake = MemoryPeer(relay)
    fake.fail_on = "reconcile"
    peer = phone.add_peer("mem://relay", "manual")
    report = await SyncSession(phone, peer, fake).run()
    assert not report.ok and report.error.startswith("unreachable: ConnectionResetError")
    assert (peer.failures, peer.penalties) == (1, 0)
    assert phone.clock() < peer.backoff_until <= phone.clock() + 2
    assert fake.calls == ["authenticate", "info", "reconcile"]
    for node in (phone, relay):
        node.store.close()
