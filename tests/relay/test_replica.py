"""The replica alone: a real SQLite store in tmp_path, no sockets, no aiohttp, no node."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import decode_envelope
from estafet.protocol.reconcile import Reconciler, fingerprint
from estafet.relay.accept import accept_one
from estafet.relay.auth import AuthError
from estafet.relay.replica import MAX_CERTIFICATE, Replica
from estafet.relay.store import Store, StoreDB
from tests.kit import TPS_A, World
from tests.relay.nodes import Clock, enroll

QUOTA = 64 * 1024 * 1024
SCOPE = "630214"


@pytest.fixture
def world() -> World:
    return World()


def enrolled(world: World, tmp: Path, label: str = "relay", role: str = "relay") -> Path:
    home = tmp / label
    key, cert = world.officer(label, role=role, scope=(SCOPE,))
    enroll(world, home, key, cert)
    return home


@pytest.fixture
def replica(world: World, tmp_path: Path) -> Iterator[Replica]:
    wakes: list[int] = []
    rep = Replica.open(enrolled(world, tmp_path), world.root.public, Clock(world.now),
                       quota=QUOTA, on_change=lambda: wakes.append(1))  # fmt: skip
    rep.wakes = wakes  # type: ignore[attr-defined]
    try:
        yield rep
    finally:
        rep.close()


def store_result(sdb: StoreDB, trust: TrustStore, world: World, label: str, **form: Any) -> bytes:
    key, cert = world.officer(label)
    env, _photos = world.result(key, cert, tps=TPS_A, **form)
    out = accept_one(sdb, trust, env.encode(), peer="", origin="local", scope="", now=world.now)
    assert out.status == "stored", out
    return env.id


def ids_held_by(responder: Reconciler) -> set[bytes]:
    """What a responder holds, found by reconciling an empty initiator against it."""
    init = Reconciler([])
    msg: bytes | None = init.initiate()
    need: set[bytes] = set()
    while msg is not None:
        msg, _have, got = init.reconcile(responder.respond(msg))
        need.update(got)
    return need


# --- identity ----------------------------------------------------------------------------------
async def test_identity_comes_from_the_enrolled_certificate(replica: Replica, world: World) -> None:
    assert (replica.role, replica.scope) == ("relay", SCOPE)
    assert replica.cert is not None and replica.trust.manifest is not None
    own = replica.own_certificate()
    assert own is not None
    # a peer that holds only the root checks our chain with what we send
    stranger = TrustStore(world.root.public)
    assert stranger.verify(own, world.now).signer.role == "issuer"
    assert len(decode_envelope(own).chain) == 1  # the issuer's certificate rides along


def test_config_wins_over_the_certificate_and_the_centre_is_everywhere(
    world: World, tmp_path: Path
) -> None:
    home = enrolled(world, tmp_path, "gw", role="gateway")
    clock = Clock(world.now)
    rep = Replica.open(home, world.root.public, clock, quota=QUOTA, role="gateway", scope="6302")
    try:
        assert (rep.role, rep.scope) == ("gateway", "6302")
    finally:
        rep.close()
    rep = Replica.open(home, world.root.public, clock, quota=QUOTA, scope="6302",
                       reaches_centre=True)  # fmt: skip
    try:
        assert (rep.role, rep.scope) == ("central", "")
    finally:
        rep.close()


def test_a_store_with_no_certificate_has_no_identity_to_offer(world: World, tmp_path: Path) -> None:
    rep = Replica.open(tmp_path / "fresh", world.root.public, Clock(world.now), quota=QUOTA)
    try:
        assert rep.cert is None and rep.own_certificate() is None and rep.role == "node"
    finally:
        rep.close()


async def test_check_certificate_refuses_strangers_and_oversized_chains(
    replica: Replica, world: World
) -> None:
    _, cert = world.officer("gw", role="gateway", scope=("6302",))
    body = await replica.check_certificate(cert.encode())
    assert body.role == "gateway"
    other = World(root=world.issuer, issuer=world.root)  # a root we never pinned
    _, forged = other.officer("gw", role="gateway", scope=("6302",))
    with pytest.raises(AuthError, match="refused"):
        await replica.check_certificate(forged.encode())
    with pytest.raises(AuthError, match="too large"):
        await replica.check_certificate(b"\x00" * (MAX_CERTIFICATE + 1))


# --- change notification --------------------------------------------------------------------
def test_changed_bumps_the_version_and_wakes(replica: Replica) -> None:
    before = replica.version
    replica.changed()
    replica.changed()
    assert replica.version == before + 2
    assert replica.wakes == [1, 1]  # type: ignore[attr-defined]


# --- the reconciler cache ----------------------------------------------------------------------
async def test_the_responder_is_cached_until_something_is_stored(
    replica: Replica, world: World
) -> None:
    first = await replica.reconciler(SCOPE)
    assert await replica.reconciler(SCOPE) is first
    initiator = await replica.reconciler(SCOPE, initiator=True)
    assert initiator is not first  # an initiator keeps per-session state: never shared
    held = ids_held_by(first)

    new = await replica.store.write(store_result, replica.trust, world, "chair-a")
    after = await replica.reconciler(SCOPE)
    assert after is not first
    assert ids_held_by(after) == held | {new}
    assert new not in ids_held_by(first)  # a session already answering keeps its view
    assert await replica.reconciler(SCOPE) is after


async def test_scopes_are_cached_apart_and_the_cache_is_bounded(replica: Replica) -> None:
    kec = await replica.reconciler(SCOPE)
    tps = await replica.reconciler(TPS_A)
    assert kec is not tps and await replica.reconciler(TPS_A) is tps
    for i in range(40):
        await replica.reconciler(f"{i:06d}")
    assert len(replica._rec_cache) <= 16
    assert await replica.reconciler(SCOPE) is not kec  # evicted, rebuilt, still right
    assert ids_held_by(await replica.reconciler(SCOPE)) == ids_held_by(kec)


# --- the fingerprint cache ---------------------------------------------------------------------
async def test_the_fingerprint_follows_commits_of_another_process(
    replica: Replica, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    real_read = replica.store.read

    async def counting_read(fn: Any, *args: Any, **kw: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(fn, *args, **kw)

    monkeypatch.setattr(replica.store, "read", counting_read)
    fp = await replica.store_fingerprint()
    assert await replica.store_fingerprint() == fp and reads == 1  # unchanged: no reader thread

    # another writer (``result submit`` while the daemon runs): its own connections, no call
    # into this replica at all
    other = Store.open(replica.store.path.parent, world.now, quota=QUOTA)
    try:
        trust = world.trust()
        new = other.sync_db()
        rid = store_result(new, trust, world, "chair-a")
    finally:
        other.close()
    fresh = await replica.store_fingerprint()
    assert fresh != fp and reads == 2
    items = await real_read(StoreDB.items, SCOPE)
    assert fresh == fingerprint(items) and rid in {i for _, i in items}


async def test_the_store_stamp_changes_with_every_commit(replica: Replica, world: World) -> None:
    stamp = replica.store_stamp()
    assert len(stamp) == 6 and stamp[:3] != (0, 0, 0)
    await replica.store.write(store_result, replica.trust, world, "chair-a")
    assert replica.store_stamp() != stamp


def test_the_replica_and_the_scheduler_load_no_http_or_discovery() -> None:
    """They are unit-tested alone because they need no network stack: keep it so."""
    code = (
        "import sys, estafet.relay.replica, estafet.relay.scheduler, estafet.relay.peers\n"
        "print(sorted(m for m in ('aiohttp', 'zeroconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
