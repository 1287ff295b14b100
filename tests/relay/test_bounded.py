"""Issue 11, item 7: every request's work is bounded, through a real node on loopback."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from estafet.relay import api, wire
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import auth_headers, make_node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


pytestmark = pytest.mark.usefixtures("manual_sync")


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
    node, _ = phone
    ids = [i for _, i in await node.store.read(StoreDB.items, "")]
    assert len(ids) >= 2
    one = min(len(r) for r in await node.store.read(StoreDB.get_raw, ids))  # 2 never fit
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


async def test_a_background_task_that_fails_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address watcher died on its first error and never restarted."""
    import estafet.relay.node as node_mod

    calls: list[int] = []

    def flaky() -> list[object]:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("netlink hiccup")
        return []

    monkeypatch.setattr(node_mod, "local_ipv4", flaky)
    monkeypatch.setattr(node_mod, "ADDRESS_POLL", 0.05)
    node = make_node(World(), tmp_path, "relay")
    await node.start()
    try:
        for _ in range(100):
            if len(calls) >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await node.stop()
    assert len(calls) >= 5, calls  # it went on after the error


async def test_a_full_disk_at_the_peer_api_answers_507_not_500(
    phone: tuple[Node, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full" on a push (raised where the store writes): the node
    API answered 500 with a traceback in the log."""
    node, _ = phone
    world = World()
    other = make_node(world, tmp_path, "chair-b", role="kpps-chair", scope=(TPS_A,))
    sub = submit_result(other.store, other.key, world.root.public, form_json("gubernur"),
                        photo_files(tmp_path, "b", 500), world.now)  # fmt: skip
    raws = await other.store.read(StoreDB.get_raw, [sub.id])
    other.store.close()

    def full(*_a: object, **_k: object) -> None:  # what SQLite raises when the disk is full
        raise sqlite3.OperationalError("database or disk is full")

    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    await gw.start()
    try:
        token = await auth_headers(f"http://127.0.0.1:{node.port}", gw)
    finally:
        await gw.stop()
    monkeypatch.setattr(StoreDB, "put", full)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{node.port}/v1/objects/put", headers=token,
                             data=wire.pack({"objects": raws})) as r:  # fmt: skip
            text = await r.text(errors="replace")
            assert r.status == 507, text
    assert "disk full or damaged" in text and "Traceback" not in text


async def test_a_peer_that_always_wants_every_photo_gets_each_at_most_twice(
    phone: tuple[Node, bytes], tmp_path: Path
) -> None:
    """A relay whose /v1/blobs/want always answers "all of them, from 0" and whose PUT reads
    everything and says complete: a phone re-uploaded its photos every session (276 MB from
    6 MB in 10 s)."""
    node, _ = phone
    relay = make_node(World(), tmp_path, "relay")
    uploaded = [0]

    @web.middleware
    async def greedy(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/blobs/want":
            shas = wire.unpack(await request.read(), {"blobs": list})["blobs"]
            return web.Response(body=wire.pack({"want": [[s, 0] for s in shas]}),
                                content_type=wire.MSGPACK)  # fmt: skip
        if request.path.startswith("/v1/blobs/") and request.method == "PUT":
            uploaded[0] += len(await request.read())
            return web.Response(body=wire.pack({"complete": True}), content_type=wire.MSGPACK)
        return await handler(request)

    app = api.make_app(relay)
    app.middlewares.insert(0, greedy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        held = sum(p.stat().st_size for p in node.store.blobs.root.glob("??/*"))
        for _ in range(10):
            await node.sync_now(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
        relay.store.close()
    assert 0 < uploaded[0] <= 2 * held, (uploaded[0], held)


async def test_a_thousand_half_sent_requests_do_not_make_a_node_unreachable(
    phone: tuple[Node, bytes],
) -> None:
    """~1,000 connections that each send half a request line and wait made a node unreachable
    (aiohttp has no header deadline). Now the oldest header-less connection makes room for a
    new one, and each must finish its headers within the deadline."""
    node, _ = phone
    idle = []
    for _ in range(1000):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET /v1/info HT")
        idle.append((reader, writer))
    try:
        assert node.conns is not None and len(node.conns.open) <= node.conns.max_conns
        async with aiohttp.ClientSession() as http:
            t = asyncio.get_running_loop().time()
            async with http.get(f"http://127.0.0.1:{node.port}/v1/info",
                                timeout=aiohttp.ClientTimeout(total=5)) as r:  # fmt: skip
                assert r.status == 200
            assert asyncio.get_running_loop().time() - t < 2
    finally:
        for _, w in idle:
            w.close()


async def test_a_connection_without_headers_is_closed_at_the_deadline(tmp_path: Path) -> None:
    node = make_node(World(), tmp_path, "relay")
    await node.start()
    try:
        assert node.conns is not None
        node.conns.header_deadline = 0.5
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the node
        writer.close()
    finally:
        await node.stop()
