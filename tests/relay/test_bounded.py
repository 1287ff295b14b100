"""Issue 11, item 7: every request's work is bounded, through a real node on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from estafet.relay import api, wire
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import make_node


async def _idle(self: Node) -> None:
    await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def _manual_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Node, "_scheduler", _idle)


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[tuple[Node, bytes]]:
    world = World()
    node = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    sub = submit_result(node.store, node.key, world.root.public, form_json(),
                        photo_files(tmp_path, "a", 3000), world.now)  # fmt: skip
    await node.start()
    try:
        yield node, sub.id
    finally:
        await node.stop()


async def test_objects_get_answers_each_id_once(phone: tuple[Node, bytes]) -> None:
    """1,024 copies of one id answered 1,024 copies of the object (14 MiB for a big one)."""
    node, rid = phone
    one = (await node.store.read(StoreDB.get_raw, [rid]))[0]
    async with aiohttp.ClientSession() as http:
        body = wire.pack({"ids": [rid] * wire.MAX_IDS})
        async with http.post(f"http://127.0.0.1:{node.port}/v1/objects/get", data=body) as r:
            assert r.status == 200
            data = await r.read()
    assert wire.unpack(data, {"objects": list})["objects"] == [one]
    assert len(data) < 2 * len(one)


async def test_objects_get_answers_at_most_the_response_cap(
    phone: tuple[Node, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, rid = phone
    ids = [i for _, i in await node.store.read(StoreDB.items, "")]
    assert len(ids) >= 2
    one = max(len(r) for r in await node.store.read(StoreDB.get_raw, ids))
    monkeypatch.setattr(api, "RESPONSE_CAP", one)
    async with aiohttp.ClientSession() as http:
        body = wire.pack({"ids": ids})
        async with http.post(f"http://127.0.0.1:{node.port}/v1/objects/get", data=body) as r:
            got = wire.unpack(await r.read(), {"objects": list})["objects"]
    assert len(got) == 1  # the rest: asked again


async def test_id_endpoints_take_small_bodies_only(phone: tuple[Node, bytes]) -> None:
    """An id list is at most 1,024 ids: a body of 8 MiB was read and decoded for it."""
    node, _ = phone
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/objects/get", "/v1/receipts"):
            body = wire.pack({"ids": [], "pad": b"\0" * (api.ID_BODY + 1)})
            async with http.post(f"http://127.0.0.1:{node.port}{path}", data=body) as r:
                assert r.status == 413, path
