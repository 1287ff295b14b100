"""Hostile peers and hostile input.

Client side: a hostile peer is a real node's /v1/ app with a middleware in front that tampers
with what it serves. The honest node must refuse each forgery with a logged reason, penalise or
back off from the peer, keep serving its own API, and still get the genuine data from an honest
peer. Server side: malformed, oversized and trickled request bodies to a real node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp import web

from estafet.protocol import codec
from estafet.protocol.objects import decode_envelope, encode_envelope
from estafet.relay import api, client, sync, wire
from estafet.relay.api import make_app
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_bytes, seeded_key
from tests.relay.nodes import auth_headers, make_node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


SCHEDULER = Node._scheduler


async def _idle(self: Node) -> None:
    await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def _manual_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Node, "_scheduler", _idle)


def _tamper_content(raw: bytes) -> bytes:
    """Change a vote count inside a result's signed content, keeping its signature."""
    env = decode_envelope(raw)
    if env.kind != "result":
        return raw
    content = codec.decode(env.content)
    content["votes"] = {**content["votes"], "1": content["votes"]["1"] + 50}
    return encode_envelope(codec.encode(content), env.signature, env.chain)


def _tamper_signature(raw: bytes) -> bytes:
    env = decode_envelope(raw)
    if env.kind != "result":
        return raw
    sig = bytes([env.signature[0] ^ 1]) + env.signature[1:]
    return encode_envelope(env.content, sig, env.chain)


def _non_canonical(raws: list[bytes]) -> bytes:
    """``{"objects": raws}`` with its array length in a longer form than needed: valid msgpack
    that decodes to the same value, but not the one canonical byte string."""
    out = b"\x81" + msgpack.packb("objects") + b"\xdc" + len(raws).to_bytes(2, "big")
    return out + b"".join(msgpack.packb(r, use_bin_type=True) for r in raws)


class Hostile:
    """Serves ``honest``'s data through its real handlers, misbehaving as ``mode`` says."""

    def __init__(self, honest: Node, mode: str) -> None:
        self.honest = honest
        self.mode = mode
        self.key = seeded_key("hostile")
        self.port = 0
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def tamper(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path, mode = request.path, self.mode
        if path == "/v1/info":  # its own identity, so it is a peer of its own
            resp = await handler(request)
            assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
            doc = wire.unpack(resp.body, {})
            doc["key"] = self.key.id
            return web.Response(body=wire.pack(doc), content_type=wire.MSGPACK)
        if path == "/v1/objects/get" and mode != "blob" and mode != "trickle-blob":
            resp = await handler(request)
            assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
            raws = wire.unpack(resp.body, {"objects": list})["objects"]
            if mode == "content":
                body = wire.pack({"objects": [_tamper_content(r) for r in raws]})
            elif mode == "signature":
                body = wire.pack({"objects": [_tamper_signature(r) for r in raws]})
            elif mode == "non-canonical":
                body = _non_canonical(raws)
            elif mode == "oversized":
                body = wire.pack({"objects": raws, "pad": b"\0" * (wire.MAX_BODY + 1)})
            else:
                return await self._trickle(request, resp.body)
            return web.Response(body=body, content_type=wire.MSGPACK)
        if path.startswith("/v1/blobs/") and request.method == "GET" and mode == "blob":
            sha = bytes.fromhex(request.match_info["sha"])
            size = self.honest.store.blobs.path(sha).stat().st_size
            wrong = hashlib.sha256(b"not the photo").digest() * (size // 32 + 1)
            return web.Response(body=wrong[:size], content_type="application/octet-stream")
        if path.startswith("/v1/blobs/") and request.method == "GET" and mode == "trickle-blob":
            sha = bytes.fromhex(request.match_info["sha"])
            data = self.honest.store.blobs.path(sha).read_bytes()
            return await self._trickle(request, data)
        return await handler(request)

    @staticmethod
    async def _trickle(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(len(body)):
            await resp.write(body[i : i + 1])
            await asyncio.sleep(1.0)
        return resp

    async def __aenter__(self) -> Hostile:
        app = make_app(self.honest)
        app.middlewares.insert(0, self.tamper)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Scene:
    """A phone with a genuine result and photos, and the honest relay under test."""

    def __init__(self, tmp: Path) -> None:
        self.world = World()
        self.tmp = tmp
        self.phone = make_node(self.world, tmp, "phone", role="kpps-chair", scope=(TPS_A,))
        self.relay = make_node(self.world, tmp, "relay")
        paths = []
        for i in (1, 2, 3):
            p = tmp / f"h-{i}.jpg"
            p.write_bytes(photo_bytes(f"hostile-{i}", 3_000 + i))
            paths.append(p)
        self.shas = [hashlib.sha256(p.read_bytes()).digest() for p in paths]
        self.result = submit_result(
            self.phone.store,
            self.phone.key,
            self.world.root.public,
            form_json(),
            paths,
            self.world.now,
        ).id

    @staticmethod
    def url(node: Node) -> str:
        return f"http://127.0.0.1:{node.port}"


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    s = Scene(tmp_path)
    await s.phone.start()
    await s.relay.start()
    try:
        yield s
    finally:
        await s.relay.stop()
        await s.phone.stop()


async def _serves(node: Node) -> None:
    """The node's own API still answers."""
    async with aiohttp.ClientSession() as http:
        async with http.get(Scene.url(node) + "/v1/info") as r:
            assert r.status == 200
            assert wire.unpack(await r.read(), {"key": bytes})["key"] == node.key.id
        async with http.get(Scene.url(node) + "/v1/status") as r:
            assert r.status == 200


async def _gets_the_genuine_data(s: Scene) -> None:
    rep = await s.relay.sync_now(Scene.url(s.phone))
    assert rep.ok, rep.error
    assert await s.relay.store.read(StoreDB.has, [s.result]) == {s.result}
    raws = await s.relay.store.read(StoreDB.get_raw, [s.result])
    assert raws == await s.phone.store.read(StoreDB.get_raw, [s.result])
    for sha in s.shas:
        assert await s.relay.store.read(StoreDB.has_blob, sha)
    assert await s.relay.store.read(StoreDB.check) == []


MISBEHAVIOUR = {
    "content": "not asked for (tampered or junk)",
    "signature": "failed verification, first: bad-signature",
    "non-canonical": "not canonical",
    "oversized": f"response larger than {wire.MAX_BODY}",
    "blob": "served a wrong blob",
}


@pytest.mark.parametrize("mode", list(MISBEHAVIOUR))
async def test_forgery_is_refused_logged_and_penalised(
    scene: Scene, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    relay = scene.relay
    async with Hostile(scene.phone, mode) as hostile:
        rep = await relay.sync_now(hostile.url)
        assert not rep.ok
        reason = MISBEHAVIOUR[mode]
        assert rep.error.startswith("misbehaved: ") and reason in rep.error, rep.error
        peer = relay.peers[hostile.url]
        # labelled with the key its handshake proved (the phone's, whose handlers it fronts),
        # never the one its /v1/info claims
        assert peer.key == scene.phone.key_hex
        assert peer.penalties == 1
        assert peer.backoff_until - relay.clock() >= 300  # a long backoff: a penalty
        events = await relay.store.read(StoreDB.events)
        mine = [e for e in events if e["peer"] == peer.label]
        assert any(reason in e["reason"] for e in mine), mine
        assert any(reason in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        if mode == "signature":  # the forgery itself was logged against the object
            assert any(
                e["reason"].startswith("rejected bad-signature") and e["object"] == scene.result
                for e in mine
            )
        if mode == "blob":
            assert any("did not match its hash" in e["reason"] for e in mine)
            assert not any([await relay.store.read(StoreDB.has_blob, s) for s in scene.shas])
        if mode in ("content", "signature"):
            held = await relay.store.read(StoreDB.objects, "result")
            assert held == []  # nothing forged was stored
        await _serves(relay)
    await _gets_the_genuine_data(scene)


@pytest.mark.parametrize("what", ["objects", "blob"])
async def test_slow_trickle_is_cut_and_backed_off(
    scene: Scene, what: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    quick = aiohttp.ClientTimeout(total=2, connect=2, sock_read=2)
    monkeypatch.setattr(client, "REQUEST_TIMEOUT", quick)
    monkeypatch.setattr(client, "BLOB_TIMEOUT", quick)
    relay = scene.relay
    mode = "trickle" if what == "objects" else "trickle-blob"
    async with Hostile(scene.phone, mode) as hostile:
        session = asyncio.create_task(relay.sync_now(hostile.url))
        await asyncio.sleep(0.5)
        assert not session.done()
        await _serves(relay)  # serving goes on while one of its sessions is stuck
        rep = await asyncio.wait_for(session, 10)
        assert not rep.ok and rep.error.startswith("unreachable"), rep.error
        peer = relay.peers[hostile.url]
        assert peer.failures == 1 and peer.backoff_until > relay.clock()
        assert any("failed (unreachable" in r.getMessage() for r in caplog.records)
        if what == "blob":  # the trickled bytes are kept: a resume starts after them
            assert sum(relay.store.blobs.partial_size(s) for s in scene.shas) >= 1
    await _gets_the_genuine_data(scene)


async def test_an_unexpected_error_in_a_session_does_not_stop_the_scheduler(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """E.g. the disk filling up mid-session: logged, the peer backs off, the loop goes on."""
    monkeypatch.setattr(Node, "_scheduler", SCHEDULER)
    real_run = sync.SyncSession.run
    calls = 0

    async def run(self: sync.SyncSession) -> sync.Report:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return await real_run(self)

    monkeypatch.setattr(sync.SyncSession, "run", run)
    relay = make_node(scene.world, scene.tmp, "sched", peers=[f"127.0.0.1:{scene.phone.port}"])
    await relay.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            relay.clock.t += 5  # type: ignore[attr-defined]  # past the backoff
            if await relay.store.read(StoreDB.has, [scene.result]):
                break
        assert await relay.store.read(StoreDB.has, [scene.result]) == {scene.result}
        assert calls >= 2
        assert any("disk is full" in (r.exc_text or "") + r.getMessage() for r in caplog.records)
    finally:
        await relay.stop()


# --- the server side: hostile requests to a real node ---------------------------------------------


async def _request(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    async with http.request(method, base + path, data=body, headers=headers) as r:
        await r.read()
        return r.status


# {"ids": [32 zero bytes]} with the array length in three bytes where one is canonical
NON_CANONICAL_IDS = b"\x81\xa3ids\xdc\x00\x01\xc4\x20" + bytes(32)


async def test_malformed_bodies_get_4xx_and_the_node_keeps_serving(scene: Scene) -> None:
    relay, base = scene.relay, Scene.url(scene.relay)
    await scene.phone.sync_now(base)  # the relay now holds the result and its photos' names
    await relay.store.write(lambda sdb: sdb.db.execute("DELETE FROM blobs"))
    for sha in scene.shas:
        relay.store.blobs.delete(sha)
    wanted = scene.shas[0].hex()
    junk = b"\xc1\xff not msgpack"
    cases = [
        ("POST", "/v1/reconcile", junk, None, 400),
        ("POST", "/v1/reconcile", b"", None, 400),
        ("POST", "/v1/objects/get", junk, None, 400),
        ("POST", "/v1/objects/get", wire.pack([1, 2]), None, 400),
        ("POST", "/v1/objects/get", wire.pack({"ids": [b"short"]}), None, 400),
        ("POST", "/v1/objects/get", wire.pack({"ids": [bytes(32)] * 5000}), None, 413),
        ("POST", "/v1/objects/get", NON_CANONICAL_IDS, None, 400),
        ("POST", "/v1/objects/put", junk, None, 400),
        ("POST", "/v1/objects/put", wire.pack({"objects": "many"}), None, 400),
        ("POST", "/v1/objects/put", wire.pack({"objects": [1]}), None, 400),
        ("POST", "/v1/receipts", junk, None, 400),
        ("POST", "/v1/receipts", wire.pack({"ids": [7]}), None, 400),
        ("POST", "/v1/blobs/want", junk, None, 400),
        ("POST", "/v1/blobs/want", wire.pack({"blobs": [b"x" * 31]}), None, 400),
        ("GET", "/v1/blobs/not-hex", None, None, 400),
        ("GET", "/v1/blobs/" + "ab" * 31, None, None, 400),
        ("GET", "/v1/blobs/" + "ab" * 32, None, None, 404),
        ("PUT", "/v1/blobs/zz", b"x", None, 400),
        ("PUT", "/v1/blobs/" + "ab" * 32, b"x", None, 403),
        ("PUT", f"/v1/blobs/{wanted}", b"x", {"X-Estafet-Offset": "ten"}, 400),
        ("PUT", f"/v1/blobs/{wanted}", b"x", {"X-Estafet-Offset": "-1"}, 400),
        ("PUT", f"/v1/blobs/{wanted}", b"x", {"X-Estafet-Offset": "2000"}, 409),
        ("PUT", f"/v1/blobs/{wanted}", b"x" * 5000, None, 413),
        ("POST", "/v1/info", b"", None, 405),
        ("DELETE", "/v1/objects/get", b"", None, 405),
    ]
    token = await auth_headers(base, scene.phone)
    async with aiohttp.ClientSession() as http:
        for method, path, body, headers, want in cases:
            got = await _request(http, base, method, path, body, {**token, **(headers or {})})
            assert got == want, (method, path, body[:40] if body else body, got)
            await _serves(relay)
        # and a well-formed request still works after all that
        async with http.post(
            base + "/v1/objects/get", data=wire.pack({"ids": [scene.result]})
        ) as r:
            assert r.status == 200
            assert len(wire.unpack(await r.read(), {"objects": list})["objects"]) == 1
    assert relay.stats.rejected >= 10
    assert await relay.store.read(StoreDB.check) == []


async def test_forged_objects_pushed_to_a_node_are_refused_with_a_reason(scene: Scene) -> None:
    relay, base = scene.relay, Scene.url(scene.relay)
    raw = (await scene.phone.store.read(StoreDB.get_raw, [scene.result]))[0]
    forged = [_tamper_signature(raw), _tamper_content(raw), b"\x93junk"]
    token = await auth_headers(base, scene.phone)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            base + "/v1/objects/put",
            data=wire.pack({"objects": forged}),
            headers={"X-Estafet-Node": "mallory", **token},  # the claimed name is not believed
        ) as r:
            assert r.status == 200
            results = wire.unpack(await r.read(), {"results": list})["results"]
    assert [x["status"] for x in results] == ["rejected"] * 3
    assert any("bad-signature" in x["reason"] for x in results)
    events = await relay.store.read(StoreDB.events)
    assert len([e for e in events if e["peer"] == scene.phone.key_hex]) == 3
    assert not [e for e in events if e["peer"] == "mallory"]
    assert await relay.store.read(StoreDB.objects, "result") == []
    await _serves(relay)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_cap_gets_413(scene: Scene, chunked: bool) -> None:
    base = Scene.url(scene.relay)
    big = b"\0" * (wire.MAX_BODY + 1)

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    token = await auth_headers(base, scene.phone)
    async with aiohttp.ClientSession() as http:
        data = stream() if chunked else big
        try:
            status = await _request(http, base, "POST", "/v1/objects/put", data, token)  # type: ignore[arg-type]
        except aiohttp.ClientOSError:  # the server may answer and close before all is sent
            status = 413
        assert status == 413
    await _serves(scene.relay)


async def test_a_trickled_request_body_is_cut_by_the_read_timeout(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "READ_TIMEOUT", 1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", scene.relay.port)
    body = wire.pack({"ids": [scene.result]})
    writer.write(
        b"POST /v1/objects/get HTTP/1.1\r\nHost: relay\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    await writer.drain()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def trickle() -> None:
        for b in body:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.3)

    sender = asyncio.create_task(trickle())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        sender.cancel()
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert 0.9 <= loop.time() - t0 < 3
    await _serves(scene.relay)
