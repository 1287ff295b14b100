"""Phone -> relay -> gateway on loopback with real aiohttp servers and SQLite files."""

from __future__ import annotations

from pathlib import Path

from estafet.relay.local import submit_result
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json
from tests.relay.nodes import make_node


def _photos(tmp: Path, tag: str) -> list[Path]:
    from tests.kit import photo_bytes

    out = []
    for i in (1, 2, 3):
        p = tmp / f"{tag}-{i}.jpg"
        p.write_bytes(photo_bytes(f"{tag}-{i}", 50_000))
        out.append(p)
    return out


async def test_phone_relay_gateway(tmp_path: Path) -> None:
    world = World()
    phone = make_node(world, tmp_path, "phone", role="kpps-chair", scope=(TPS_A,))
    relay = make_node(world, tmp_path, "relay", role="relay", scope=("630214",))
    gateway = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    ids = []
    for election in ("bupati", "gubernur"):
        sub = submit_result(phone.store, phone.key, world.root.public, form_json(election),
                            _photos(tmp_path, election), world.now)  # fmt: skip
        ids.append(sub.id)
    for n in (phone, relay, gateway):
        await n.start()
    try:
        # the phone cannot accept connections: it dials the relay; one session moves both ways
        rep = await phone.sync_now(f"http://127.0.0.1:{relay.port}")
        assert rep.ok, rep.error
        assert rep.pushed >= 2
        assert rep.blobs_out == 6
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
