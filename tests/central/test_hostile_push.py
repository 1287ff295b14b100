"""Issue 11, item 1, through real servers on loopback: only copies that verified get receipts.

A central node (``open_central`` with the test World's authority), a gateway and a chair's phone
run in-process on 127.0.0.1; the attacker is a plain HTTP client pushing to the central's
``/v1/objects/put``. On the old code each junk push became a signed ``rejected`` receipt with an
empty TPS that reconciled to every phone, and a flipped-bit copy of a genuine result earned a
``rejected`` receipt for the genuine id, which the origin phone then applied to its own result.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

import estafet.central.serve as serve
from estafet.central.ingest import Central
from estafet.crypto.seal import seal
from estafet.protocol import codec
from estafet.protocol.objects import (
    LOG_GENESIS,
    Envelope,
    ReceiptBody,
    decode_envelope,
    encode_envelope,
    log_entry_hash,
)
from estafet.relay import wire
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.central.conftest import world_authority
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import Clock, auth_headers, make_node

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def central_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Node, Central, World]]:
    world = World()
    monkeypatch.setattr(serve, "load_authority", lambda h, _pw: world_authority(world, h))
    home = tmp_path / "central"
    home.mkdir()
    node, central = serve.open_central(home, "", "127.0.0.1:0", clock=Clock(world.now))
    await node.start()
    try:
        yield node, central, world
    finally:
        await node.stop()
        central.close()


async def _put(
    url: str, objects: list[bytes], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        body = wire.pack({"objects": objects})
        async with http.post(f"{url}/v1/objects/put", data=body, headers=headers) as r:
            data = await r.read()
            return r.status, codec.decode(data) if r.content_type == wire.MSGPACK else {}


def _flip(raw: bytes) -> bytes:
    env = decode_envelope(raw)
    return encode_envelope(
        env.content, bytes([env.signature[0] ^ 1]) + env.signature[1:], env.chain
    )


async def test_junk_pushes_leave_no_row_no_log_entry_and_no_receipt(
    central_node: tuple[Node, Central, World], tmp_path: Path
) -> None:
    """2,048 pushes of 27-byte maps with a binary ``c``: the old code logged and receipted every
    one (2,048 receipts with an empty TPS on every phone). Now an anonymous caller may not push
    at all (401), and an enrolled one (a stolen phone) gets them refused, unsigned, nothing kept."""
    node, central, world = central_node
    url = f"http://127.0.0.1:{node.port}"
    held_before = len(await node.store.read(StoreDB.items, ""))
    assert (await _put(url, [codec.encode({"c": b"x" * 21})]))[0] == 401
    mallory = make_node(world, tmp_path, "mallory", role="kpps-chair", scope=(TPS_A,))
    await mallory.start()
    token = await auth_headers(url, mallory)
    await mallory.stop()
    for _ in range(4):
        junk = [codec.encode({"c": os.urandom(21)}) for _ in range(512)]
        status, body = await _put(url, junk, token)
        assert status == 200
        results = body["results"]
        assert isinstance(results, list)
        assert all(r["status"] == "rejected" for r in results)
        assert body["receipts"] == []
    assert central.status()["log"]["length"] == 0
    assert not list(central.db.query("SELECT id FROM objects"))
    assert len(await node.store.read(StoreDB.items, "")) == held_before
    # a phone syncing with the centre gets nothing from it
    phone = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    await phone.start()
    try:
        assert (await phone.sync_now(url)).ok
        assert await phone.store.read(StoreDB.objects, "receipt") == []
    finally:
        await phone.stop()


async def test_a_flipped_bit_copy_never_marks_the_origin_result_rejected(
    central_node: tuple[Node, Central, World], tmp_path: Path
) -> None:
    """The attacker pushes a copy of the chair's genuine result with one signature bit flipped,
    first, to the centre; the gateway syncs with the centre, the chair's phone with the gateway.
    Old code: a signed ``rejected`` receipt for the genuine id reached the phone, which marked
    its result rejected and stopped offering it. Now the copy gets no receipt at all."""
    node, central, world = central_node
    url = f"http://127.0.0.1:{node.port}"
    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    chair = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    await gw.start()
    await chair.start()
    try:
        sub = submit_result(chair.store, chair.key, world.root.public, form_json(),
                            photo_files(tmp_path, "a", 3000), world.now)  # fmt: skip
        raw = (await chair.store.read(StoreDB.get_raw, [sub.id]))[0]
        status, body = await _put(url, [_flip(raw)], await auth_headers(url, gw))
        assert status == 200 and body["receipts"] == []
        assert central.receipt_for(sub.id) is None
        assert (await gw.sync_now(url)).ok
        assert (await chair.sync_now(f"http://127.0.0.1:{gw.port}")).ok
        mine = {o["id"]: o for o in await chair.store.read(StoreDB.objects, "result")}
        assert mine[sub.id]["state"] != "rejected"
        # and the genuine copy still reaches the centre and is counted
        assert (await gw.sync_now(url)).ok
        assert central.db.object_state(sub.id)["status"] == "accepted"  # type: ignore[index]
    finally:
        await chair.stop()
        await gw.stop()


def _old_style_rejection(world: World, target: Envelope, reason: str, kind: str, tps: str) -> bytes:
    digest = log_entry_hash(LOG_GENESIS, 0, target.id, "rejected", reason, world.now)
    body = ReceiptBody(target.id, kind, tps, target.election, "rejected", reason, 0,
                       LOG_GENESIS, digest)  # fmt: skip
    return seal("receipt", body, world.issuer, world.now, (world.issuer_cert.encode(),)).encode()


async def test_an_old_centrals_copy_rejection_or_empty_tps_receipt_is_refused_by_a_phone(
    central_node: tuple[Node, Central, World], tmp_path: Path
) -> None:
    """Receipts an older central signed (still in the mesh): a ``rejected: bad-signature`` for a
    genuine id and a receipt naming no TPS. A phone whose own copy verified keeps its result;
    the empty-TPS receipt is refused (it would travel to every phone)."""
    _, _, world = central_node
    chair = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    await chair.start()
    try:
        sub = submit_result(chair.store, chair.key, world.root.public, form_json(),
                            photo_files(tmp_path, "a", 3000), world.now)  # fmt: skip
        env = decode_envelope((await chair.store.read(StoreDB.get_raw, [sub.id]))[0])
        copy = _old_style_rejection(world, env, "bad-signature: result 0123", "result", TPS_A)
        empty = _old_style_rejection(world, env, "malformed: junk", "", "")
        other = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
        await other.start()
        chair_url = f"http://127.0.0.1:{chair.port}"
        token = await auth_headers(chair_url, other)
        await other.stop()
        status, body = await _put(chair_url, [copy, empty], token)
        assert status == 200
        assert [r["status"] for r in body["results"]] == ["out-of-scope", "out-of-scope"]  # type: ignore[union-attr]
        mine = {o["id"]: o for o in await chair.store.read(StoreDB.objects, "result")}
        assert mine[sub.id]["state"] != "rejected"
        assert await chair.store.read(StoreDB.objects, "receipt") == []
    finally:
        await chair.stop()
