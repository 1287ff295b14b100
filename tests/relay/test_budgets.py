"""Issue 11, item 7, through real nodes on loopback: per-peer byte and signature-check budgets.

An *enrolled* peer that turned hostile proves its key like anyone else; before these budgets it
could push 512 objects per request, each verified on the writer thread, and upload without end.
Each test performs the attack with a real handshake token against a real node and checks that
the hostile key is cut off with 429 and ``Retry-After`` at its budget, that nothing it had
stored is lost, and that an honest peer's push still goes through meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from estafet.protocol.objects import Envelope, encode_envelope
from estafet.relay import api, wire
from estafet.relay.budgets import PeerBudgets, PeerLimits
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import Clock, auth_headers, make_node

pytestmark = pytest.mark.usefixtures("manual_sync")


@dataclass
class Scene:
    world: World
    clock: Clock
    relay: Node
    phone: Node
    """Honest: holds one result with three photos."""
    result: bytes
    shas: list[bytes]
    hostile: Node
    """Enrolled, started (its key is proven by real handshakes); it attacks with plain HTTP."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    world = World()
    clock = Clock(world.now)
    relay = make_node(world, tmp_path, "relay", clock=clock)
    phone = make_node(world, tmp_path, "chair", role="kpps-chair", scope=(TPS_A,))
    hostile = make_node(world, tmp_path, "mallory", role="kpps-chair", scope=(TPS_A,))
    photos = photo_files(tmp_path, "budget", 3000)
    sub = submit_result(phone.store, phone.key, world.root.public, form_json(), photos, world.now)
    shas = [hashlib.sha256(p.read_bytes()).digest() for p in photos]
    for n in (relay, phone, hostile):
        await n.start()
    try:
        yield Scene(world, clock, relay, phone, sub.id, shas, hostile)
    finally:
        for n in (hostile, phone, relay):
            await n.stop()


def junk_results(world: World, n: int) -> list[bytes]:
    """``n`` validly shaped, distinct results (a real chain, a real form) whose signatures do
    not verify: each costs the receiver a full signature check before it is refused."""
    key, cert = world.officer("junk-signer")
    out = []
    for i in range(n):
        env: Envelope = world.result(key, cert, photos=[b"p%d" % i], created=world.now - i)[0]
        bad = bytes([env.signature[0] ^ 1]) + env.signature[1:]
        out.append(encode_envelope(env.content, bad, env.chain))
    return out


async def push(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], raws: list[bytes]
) -> tuple[int, dict[str, object], str | None]:
    async with http.post(url + "/v1/objects/put", data=wire.pack({"objects": raws}),
                         headers=headers) as r:  # fmt: skip
        return r.status, wire.unpack(await r.read(), {}), r.headers.get("Retry-After")


async def test_a_hostile_peer_flooding_bad_signatures_is_cut_off_and_an_honest_push_goes_through(
    scene: Scene,
) -> None:
    """Batches of 512 junk results with bad signatures, back to back from four connections:
    at 1,200 checks the hostile key gets 429 (the batch that ran out says which objects were
    not looked at), every later push is refused before its body is even decoded, and the
    honest phone's result (pushed during the flood) is stored."""
    s = scene
    s.relay.peer_budgets = PeerBudgets(s.clock, PeerLimits(checks=1200))
    junk = junk_results(s.world, 512)
    token = await auth_headers(s.url, s.hostile)
    statuses: list[int] = []
    checked = 0
    deferred = 0
    retry: set[str | None] = set()

    async def flood(http: aiohttp.ClientSession) -> None:
        nonlocal checked, deferred
        for _ in range(8):  # 4 x 8 x 512 = 16,384 checks without a budget
            status, body, after = await push(http, s.url, token, junk)
            statuses.append(status)
            results = body.get("results", [])
            assert isinstance(results, list)
            checked += sum(r["status"] == "rejected" for r in results)
            deferred += sum(r["status"] == "deferred" for r in results)
            if status == 429:
                retry.add(after)

    async with aiohttp.ClientSession() as http:
        floods = [asyncio.create_task(flood(http)) for _ in range(4)]
        while len(statuses) < 4:  # the flood is on
            await asyncio.sleep(0.01)
        rep = await s.phone.sync_now(s.url)  # the honest push, during the flood
        await asyncio.gather(*floods)

    assert rep.ok, rep.error
    assert await s.relay.store.read(StoreDB.has, [s.result]) == {s.result}
    assert checked == 1200  # the whole budget went on the junk, and not one check more
    assert deferred >= 512 - (1200 - 1024)  # the batch that ran out: the rest not looked at
    assert statuses.count(200) == 2, statuses  # two full batches, then only 429
    assert retry and all(a is not None and 1 <= int(a) <= 600 for a in retry)
    held = await s.relay.store.read(StoreDB.objects, "result")
    assert [r["id"] for r in held] == [s.result]  # nothing of the junk was stored
    for sha in s.shas:  # and the honest photos came through too
        assert await s.relay.store.read(StoreDB.has_blob, sha)
    assert s.relay.peer_budgets.refused >= 1


async def test_a_batch_cut_by_the_budget_keeps_what_it_stored_and_the_rest_comes_later(
    scene: Scene,
) -> None:
    """Five genuine results against a budget of four checks: four are stored and committed,
    the fifth is ``deferred`` (429); once the window has passed it is taken."""
    s = scene
    s.relay.peer_budgets = PeerBudgets(s.clock, PeerLimits(window=60, checks=4))
    key, cert = s.world.officer("chair-b")
    raws = [s.world.result(key, cert, created=s.world.now - i)[0].encode() for i in range(5)]
    token = await auth_headers(s.url, s.hostile)
    async with aiohttp.ClientSession() as http:
        status, body, after = await push(http, s.url, token, raws)
        assert status == 429 and after is not None and 1 <= int(after) <= 60
        results = body["results"]
        assert isinstance(results, list)
        assert [r["status"] for r in results] == ["stored"] * 4 + ["deferred"]
        held = {r["id"] for r in await s.relay.store.read(StoreDB.objects, "result")}
        assert len(held) == 4  # committed, although the request was answered 429
        status, _, _ = await push(http, s.url, token, raws[4:])
        assert status == 429  # still inside the window: refused before it is read
        s.clock.t += 61
        status, body, _ = await push(http, s.url, token, raws[4:])
        assert status == 200
        assert [r["status"] for r in body["results"]] == ["stored"]  # type: ignore[union-attr]
    assert len(await s.relay.store.read(StoreDB.objects, "result")) == 5


async def test_a_hostile_peer_uploading_without_end_is_cut_off_at_its_byte_budget(
    scene: Scene,
) -> None:
    """Junk uploads of a photo the relay wants (each 3,000 bytes, refused 422 by its hash)
    from an enrolled hostile key: past 20,000 bytes its uploads and its pushes get 429, while
    the honest phone (its own budget) delivers its result and all three photos."""
    s = scene
    s.relay.peer_budgets = PeerBudgets(s.clock, PeerLimits(bytes=20_000))
    raw = (await s.phone.store.read(StoreDB.get_raw, [s.result]))[0]
    honest = await auth_headers(s.url, s.phone)
    hostile = await auth_headers(s.url, s.hostile)
    statuses = []
    async with aiohttp.ClientSession() as http:
        assert (await push(http, s.url, honest, [raw]))[0] == 200  # the photos are wanted now
        for _ in range(20):
            async with http.put(f"{s.url}/v1/blobs/{s.shas[0].hex()}", data=b"x" * 3000,
                                headers={**hostile, "X-Estafet-Offset": "0"}) as r:  # fmt: skip
                statuses.append(r.status)
                if r.status == 429:
                    assert 1 <= int(r.headers["Retry-After"]) <= 600
                    break
        assert statuses == [422] * 6 + [429]  # 6 x 3,000 bytes fit in 20,000; the 7th not
        status, _, _ = await push(http, s.url, hostile, [b"x" * 2500])
        assert status == 429  # one budget for pushes and uploads (2,000 bytes were left)
    rep = await s.phone.sync_now(s.url)
    assert rep.ok, rep.error
    for sha in s.shas:
        assert await s.relay.store.read(StoreDB.has_blob, sha)


async def test_one_push_per_peer_at_a_time_so_an_honest_push_does_not_queue_behind_a_flood(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread serves first come, first served: four junk batches of one hostile key
    in flight used to be verified before an honest push that came a moment later. Now one key
    has one push in the writer's queue at a time, so the honest push is next after the batch
    being verified (inside the budget: this is the flood before the cut-off)."""
    s = scene
    order: list[str] = []
    gate = threading.Event()
    real = api.accept_batch

    def recording(sdb: StoreDB, *args: Any, peer: str, **kw: Any) -> Any:
        order.append("hostile" if peer == s.hostile.key_hex else "honest")
        if len(order) == 1:
            gate.wait(10)  # the first hostile batch is being verified while the rest arrive
        return real(sdb, *args, peer=peer, **kw)

    monkeypatch.setattr(api, "accept_batch", recording)
    junk = junk_results(s.world, 64)
    raw = (await s.phone.store.read(StoreDB.get_raw, [s.result]))[0]
    hostile = await auth_headers(s.url, s.hostile)
    honest = await auth_headers(s.url, s.phone)
    async with aiohttp.ClientSession() as http:
        floods = [asyncio.create_task(push(http, s.url, hostile, junk)) for _ in range(4)]
        await asyncio.sleep(0.3)
        mine = asyncio.create_task(push(http, s.url, honest, [raw]))
        await asyncio.sleep(0.3)
        gate.set()
        assert (await mine)[0] == 200
        assert [r[0] for r in await asyncio.gather(*floods)] == [200] * 4
    assert order == ["hostile", "honest", "hostile", "hostile", "hostile"], order
