"""Phone -> relay -> gateway on loopback with real aiohttp servers and SQLite files."""

from __future__ import annotations

from pathlib import Path

from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import make_node


async def test_phone_relay_gateway(tmp_path: Path) -> None:
    world = World()
    phone = make_node(world, tmp_path, "phone", role="kpps-chair", scope=(TPS_A,))
    relay = make_node(world, tmp_path, "relay", role="relay", scope=("630214",))
    gateway = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    ids = []
    for election in ("bupati", "gubernur"):
        sub = submit_result(phone.store, phone.key, world.root.public, form_json(election),
                            photo_files(tmp_path, election, 50_000), world.now)  # fmt: skip
        ids.append(sub.id)
    for n in (phone, relay, gateway):
        await n.start()
    try:
        # the phone cannot accept connections: it dials the relay; one session moves both ways
        rep = await phone.sync_now(f"http://127.0.0.1:{relay.port}")
        assert rep.ok, rep.error
        assert rep.pushed >= 2
        # the relay may also dial back the phone it just heard from and pull some photos
        # itself; either way it must end holding all six
        relay_missing = await relay.store.read(StoreDB.missing_photos, 10)
        assert relay_missing == []
        assert (await relay.store.read(StoreDB.counts))["blobs"] == 6
        rep2 = await relay.sync_now(f"http://127.0.0.1:{gateway.port}")
        assert rep2.ok, rep2.error
        held = await gateway.store.read(StoreDB.has, ids)
        assert held == set(ids)
        missing = await gateway.store.read(StoreDB.missing_photos, 10)
        assert missing == []
        again = await relay.sync_now(f"http://127.0.0.1:{gateway.port}")
        assert again.in_sync and again.round_trips == 1
        assert again.reconcile_bytes <= 256
    finally:
        for n in (phone, relay, gateway):
            await n.stop()


async def _phone_and_gateway(tmp_path: Path) -> tuple[Node, Node]:
    """A KPPS phone holding a signed bupati result and a Hampang gateway, both started."""
    world = World()
    phone = make_node(world, tmp_path, "phone", role="kpps-chair", scope=(TPS_A,))
    gateway = make_node(world, tmp_path, "gw", role="gateway", scope=("630214",))
    submit_result(phone.store, phone.key, world.root.public, form_json("bupati"),
                  photo_files(tmp_path, "b", 50_000), world.now)  # fmt: skip
    await phone.start()
    await gateway.start()
    return phone, gateway


async def test_gateway_recap_offline(tmp_path: Path) -> None:
    """A PPK gateway shows the kecamatan recap from the signed results it holds."""
    import aiohttp

    phone, gateway = await _phone_and_gateway(tmp_path)
    try:
        assert (await phone.sync_now(f"http://127.0.0.1:{gateway.port}")).ok
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gateway.port}/api/status") as r:
                view = await r.json()
            async with http.get(f"http://127.0.0.1:{gateway.port}/") as r:
                html = await r.text()
        bupati = next(e for e in view["elections"] if e["kind"] == "bupati")
        assert bupati["tally"] == {"1": 101, "2": 80, "3": 23}
        kec = next(k for k in bupati["kecamatan"] if k["code"] == "630214")
        assert kec["tps_accepted"] == 1
        assert kec["tps_photos_complete"] == 1
        assert "Hampang" in html
    finally:
        await phone.stop()
        await gateway.stop()


async def test_gateway_recap_is_cached_until_the_store_changes(tmp_path: Path) -> None:
    """Repeated requests verify nothing again; a poller with the ETag gets 304; a new object
    changes the answer."""
    import aiohttp

    phone, gateway = await _phone_and_gateway(tmp_path)
    calls = []
    verify = gateway.trust.verify
    gateway.trust.verify = lambda *a, **k: calls.append(1) or verify(*a, **k)  # type: ignore[method-assign]
    url = f"http://127.0.0.1:{gateway.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/status") as r:
                etag = r.headers["ETag"]
            before = len(calls)
            for path in ("/", "/api/status") * 5:
                async with http.get(url + path) as r:
                    assert r.status == 200 and r.headers["ETag"] == etag
            async with http.get(url + "/", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
            assert len(calls) == before
            assert (await phone.sync_now(url)).ok
            async with http.get(url + "/api/status", headers={"If-None-Match": etag}) as r:
                assert r.status == 200 and r.headers["ETag"] != etag
                view = await r.json()
        bupati = next(e for e in view["elections"] if e["kind"] == "bupati")
        assert bupati["tps_accepted"] == 1 and bupati["timeline"]["counts"][-1] == 1
    finally:
        await phone.stop()
        await gateway.stop()
