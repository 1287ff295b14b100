"""Issue 11, item 2, through real nodes on loopback: peers prove their enrolled keys.

Each test performs an attack with a plain HTTP client (the attacker needs no key) or with a
node enrolled under another root, and checks what the old code let through: a forged
``X-Estafet-Node`` moving a peer's entry to the attacker, uploads and ``blobs/want`` from
anyone, a token that works from another address, forged beacons filling the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from estafet.protocol.objects import encode_envelope
from estafet.relay import wire
from estafet.relay.auth import HEADER, client_proof
from estafet.relay.client import HttpPeerClient
from estafet.relay.errors import PeerError
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.peers import MAX_PEERS
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files, seeded_key
from tests.relay.nodes import auth_headers, make_node

SCHEDULER = Node._scheduler


pytestmark = pytest.mark.usefixtures("manual_sync")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[World, Node, Node]]:
    world = World()
    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    relay = make_node(world, tmp_path, "relay")
    await gw.start()
    await relay.start()
    try:
        yield world, gw, relay
    finally:
        await relay.stop()
        await gw.stop()


def url(node: Node) -> str:
    return f"http://127.0.0.1:{node.port}"


async def test_a_forged_node_header_moves_no_peer(pair: tuple[World, Node, Node]) -> None:
    """One request claiming a known peer's key id (public: it is in every advert) used to move
    that peer's entry, a static gateway or the central uplink included, to the attacker."""
    _, gw, relay = pair
    assert (await gw.sync_now(url(relay))).ok  # the gateway knows the relay's key now
    central = gw.add_peer("http://127.0.0.1:9", "central")
    central.is_central = True
    central.key = "ab" * 16
    for claimed in (relay.key_hex, central.key):
        hdr = {"X-Estafet-Node": claimed, "X-Estafet-Listen": ":6666", "X-Estafet-Central-OK": "1"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url(gw) + "/v1/reconcile", data=b"\x00", headers=hdr) as r:
                await r.read()
    assert set(gw.peers) == {url(relay), "http://127.0.0.1:9"}
    assert gw.peers[url(relay)].key == relay.key_hex
    assert gw.peers["http://127.0.0.1:9"].is_central


async def test_uploads_and_wanted_offsets_need_a_proven_key(
    pair: tuple[World, Node, Node], tmp_path: Path
) -> None:
    world, gw, relay = pair
    phone = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    sub = submit_result(phone.store, phone.key, world.root.public, form_json(),
                        photo_files(tmp_path, "a", 3000), world.now)  # fmt: skip
    raw = (await phone.store.read(StoreDB.get_raw, [sub.id]))[0]
    sha = hashlib.sha256((photo_files(tmp_path, "a", 3000)[0]).read_bytes()).digest()
    base = url(relay)
    async with aiohttp.ClientSession() as http:
        put = wire.pack({"objects": [raw]})
        async with http.post(base + "/v1/objects/put", data=put) as r:
            assert r.status == 401
        async with http.post(base + "/v1/blobs/want", data=wire.pack({"blobs": [sha]})) as r:
            assert r.status == 401
        async with http.put(f"{base}/v1/blobs/{sha.hex()}", data=b"x" * 100) as r:
            assert r.status == 401
        # with a token proving an enrolled key, the same push is taken
        token = await auth_headers(base, gw)
        async with http.post(base + "/v1/objects/put", data=put, headers=token) as r:
            assert r.status == 200
            assert (
                wire.unpack(await r.read(), {"results": list})["results"][0]["status"] == "stored"
            )
        async with http.post(base + "/v1/blobs/want", data=wire.pack({"blobs": [sha]}),
                             headers=token) as r:  # fmt: skip
            assert r.status == 200
    assert len(relay.peers) == 0  # nobody told us a listening port with a token yet
    # a session of the gateway's: it enters the table under the key it proved
    assert (await gw.sync_now(base)).ok
    assert [(p.url, p.key) for p in relay.peers.values()] == [(url(gw), gw.key_hex)]


async def test_a_key_from_another_root_or_a_token_from_another_address_is_refused(
    pair: tuple[World, Node, Node], tmp_path: Path
) -> None:
    _, gw, relay = pair
    evil = World(root=seeded_key("evil-root"), issuer=seeded_key("evil-issuer"))
    key, cert = evil.officer("stranger")
    stranger = make_node(evil, tmp_path, "stranger")  # enrolled under another root
    await stranger.start()
    try:
        async with aiohttp.ClientSession() as http:
            # the stranger refuses the relay (its certificate does not chain to its root) ...
            client = HttpPeerClient(http, url(relay), "t", dict, credentials=stranger)
            with pytest.raises(PeerError, match="handshake"):
                await client.authenticate()
            # ... and the relay refuses the stranger's certificate, correctly signed or not
            nonce = bytes(16)
            async with http.post(url(relay) + "/v1/hello", data=wire.pack({"nonce": nonce})) as r:
                ch = wire.unpack(await r.read(), {"challenge": bytes})["challenge"]
            for chain in ((), evil.chain(cert)):
                raw = encode_envelope(cert.content, cert.signature, chain)
                proof = {"challenge": ch, "cert": raw, "sig": client_proof(key, ch, relay.key.id)}
                async with http.post(url(relay) + "/v1/auth", data=wire.pack(proof)) as r:
                    assert r.status == 403, await r.text()
        token = await auth_headers(url(relay), gw)
        # the same token from 127.0.0.2 (another address on loopback): worthless
        conn = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=conn) as http:
            body = wire.pack({"blobs": []})
            async with http.post(url(relay) + "/v1/blobs/want", data=body, headers=token) as r:
                assert r.status == 401
        # a made-up token: worthless
        async with aiohttp.ClientSession() as http:
            bad = {HEADER: "00" * 40}
            async with http.post(url(relay) + "/v1/blobs/want", data=body, headers=bad) as r:
                assert r.status == 401
    finally:
        await stranger.stop()


async def test_forged_beacons_fill_no_more_than_the_cap(pair: tuple[World, Node, Node]) -> None:
    """2,000 forged UDP beacons made 1,585 peers (no cap, all saved on shutdown)."""
    _, gw, _ = pair
    for i in range(2000):
        gw.add_peer(f"http://10.{i // 250}.{i % 250}.1:8470", "beacon", key=f"{i:032x}")
    assert len(gw.peers) <= MAX_PEERS
    assert all(p.key == "" for p in gw.peers.values())  # proposals carry no identity


async def test_sessions_run_concurrently_so_black_holes_hold_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three peers that accept a connection and never answer, claiming an uplink, sorted ahead
    of the honest gateway: sessions ran one at a time, so delivery waited for all three."""
    monkeypatch.setattr(Node, "_scheduler", SCHEDULER)
    world = World()
    holes = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    for _ in range(3):
        holes.append(await asyncio.start_server(swallow, "127.0.0.1", 0))
    phone = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    sub = submit_result(phone.store, phone.key, world.root.public, form_json(),
                        photo_files(tmp_path, "a", 3000), world.now)  # fmt: skip
    await gw.start()
    await phone.start()
    try:
        for h in holes:
            port = h.sockets[0].getsockname()[1]
            phone.add_peer(f"http://127.0.0.1:{port}", "beacon", central_ok=True)
        phone.add_peer(url(gw), "beacon")
        t0 = time.monotonic()
        while not await gw.store.read(StoreDB.has, [sub.id]):
            assert time.monotonic() - t0 < 15, "delivery held up by black-hole peers"
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
    finally:
        await phone.stop()
        await gw.stop()
        for h in holes:
            h.close()
    assert elapsed < 5, elapsed


async def test_nobody_can_spoil_another_uploaders_partial_photo(
    pair: tuple[World, Node, Node], tmp_path: Path
) -> None:
    """Issue 11, item 3: ``PUT /v1/blobs/{sha}`` at offset 0 overwrote a wanted partial; the
    honest uploader's resume then failed its hash (422) and it was penalised. Now each proven
    uploader has its own partial file, and an anonymous caller may not upload at all."""
    world, gw, relay = pair
    phone = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    photos = photo_files(tmp_path, "p", 30_000)
    sub = submit_result(phone.store, phone.key, world.root.public, form_json(), photos,
                        world.now)  # fmt: skip
    data = photos[0].read_bytes()
    sha = hashlib.sha256(data).digest()
    base = url(relay)
    await phone.start()
    try:
        honest = await auth_headers(base, phone)
        mallory = await auth_headers(base, gw)  # an enrolled device turned hostile
        raw = (await phone.store.read(StoreDB.get_raw, [sub.id]))[0]
        async with aiohttp.ClientSession() as http:

            async def put(offset: int, body: bytes, hdr: dict[str, str]) -> int:
                h = {**hdr, "X-Estafet-Offset": str(offset)}
                async with http.put(f"{base}/v1/blobs/{sha.hex()}", data=body, headers=h) as r:
                    await r.read()
                    return r.status

            async with http.post(base + "/v1/objects/put", headers=honest,
                                 data=wire.pack({"objects": [raw]})) as r:  # fmt: skip
                assert r.status == 200
            assert await put(0, data[:10_000], honest) == 200  # cut after 10,000 bytes
            assert await put(0, b"\xff" * 20_000, {}) == 401
            assert await put(0, b"\xff" * 20_000, mallory) == 200  # its own partial only
            want = wire.pack({"blobs": [sha]})
            async with http.post(base + "/v1/blobs/want", data=want, headers=honest) as r:
                offsets = wire.unpack(await r.read(), {"want": list})["want"]
            assert offsets == [[sha, 10_000]]  # the honest uploader's own offset
            assert await put(10_000, data[10_000:], honest) == 200  # the resume completes
        assert await relay.store.read(StoreDB.has_blob, sha)
        assert relay.store.blobs.path(sha).read_bytes() == data
        assert not list(relay.store.blobs.partial_dir.glob(f"{sha.hex()}*"))
    finally:
        await phone.stop()
