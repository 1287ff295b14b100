"""The node store: idempotent writes, every kind, receipts, quota and eviction, ``check()``.

Real SQLite files in ``tmp_path``; objects and receipts signed by the test World.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore, Verified
from estafet.protocol.objects import (
    KINDS,
    LOG_GENESIS,
    Envelope,
    ReceiptBody,
    ResultBody,
    VoidBody,
    log_entry_hash,
)
from estafet.protocol.plenary import Numbers, make_dhasil
from estafet.relay import store as store_mod
from estafet.relay.errors import StoreFull
from estafet.relay.store import Store, StoreDB
from tests.kit import TPS_A, TPS_B, World, photo_bytes, seeded_key

# the central server's receipt reason saying every photo of the result arrived there: only then
# may relays drop their copies


class Env:
    """A World, its trust store and an open Store in tmp_path."""

    def __init__(self, tmp: Path) -> None:
        self.world = World()
        self.trust: TrustStore = self.world.trust()
        self.store = Store.open(tmp / "home", self.world.now)
        self.sdb: StoreDB = self.store.sync_db()
        self.chair, self.chair_cert = self.world.officer("chair", scope=(TPS_A,))
        self._created = self.world.now

    def verified(self, env: Envelope) -> Verified:
        return self.trust.verify(env.encode(), self.world.now)

    def put(self, env: Envelope, origin: str = "relayed", peer: str | None = None) -> bool:
        return self.sdb.put(self.verified(env), origin, peer, self.world.now).new

    def result(self, tag: str, size: int = 2000, **over: object) -> tuple[Envelope, list[bytes]]:
        """A distinct signed result with three photos of ``size`` bytes named by ``tag``."""
        self._created += 1
        photos = [photo_bytes(f"{tag}-{i}", size) for i in (1, 2, 3)]
        return self.world.result(
            self.chair, self.chair_cert, photos=photos, created=self._created, **over
        )

    def add_blobs(self, photos: list[bytes], at: int | None = None) -> None:
        for data in photos:
            sha = hashlib.sha256(data).digest()
            self.store.blobs.write_whole(sha, data)
            self.sdb.add_blob(sha, len(data), at or self.world.now)

    def receipt(
        self, obj: Envelope, status: str, index: int, reason: str = "", photos: bool = False
    ) -> Envelope:
        created = self.world.now + 1000 + index
        body = ReceiptBody(
            object=obj.id,
            object_kind=obj.kind,
            tps=obj.tps,
            election=obj.election,
            status=status,
            reason=reason,
            log_index=index,
            log_prev=LOG_GENESIS,
            log_hash=log_entry_hash(LOG_GENESIS, index, obj.id, status, reason, created, photos),
            photos_complete=photos,
        )
        return seal("receipt", body, self.world.issuer, created)

    def row(self, oid: bytes) -> dict[str, object]:
        rows = [r for r in self.sdb.objects() if r["id"] == oid]
        assert len(rows) == 1
        return rows[0]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.store.close()


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- idempotence and kinds ------------------------------------------------------------------


def test_storing_twice_is_a_noop(env: Env) -> None:
    res, _ = env.result("twice")
    assert env.put(res, peer="p1") is True
    before = env.sdb.db.execute("SELECT * FROM objects").fetchall()
    assert env.put(res, peer="p1") is False
    assert env.put(res, peer="p2") is False  # a second holder is remembered, nothing else
    assert env.sdb.db.execute("SELECT * FROM objects").fetchall() == before
    assert env.sdb.counts()["objects"] == 1
    photos = env.sdb.db.execute("SELECT count(*) FROM photos").fetchone()[0]
    assert photos == 3
    holders = {r[0] for r in env.sdb.db.execute("SELECT peer FROM holders")}
    assert holders == {"p1", "p2"}
    assert env.sdb.get_raw([res.id]) == [res.encode()]


def trail_objects(
    w: World, chair: SigningKey, chair_cert: Envelope, res: Envelope
) -> dict[str, Envelope]:
    """One object of each issue-13 kind about ``res``."""
    saksi = seeded_key("saksi store")
    adm = w.admit(chair, chair_cert, saksi)
    ppk, ppk_cert = w.officer("ppk store", role="ppk", scope=("630214",))
    assert isinstance(res.body, ResultBody)
    f = res.body.form
    numbers = {res.id: Numbers(f.tps, f.election, f.votes, f.valid, f.invalid)}
    dh = make_dhasil("630214", f.election, tuple(f.votes), numbers, {})
    return {
        "admission": adm,
        "objection": w.object_to(saksi, w.admitted_chain(adm, chair_cert), res),
        "correction": w.correct(ppk, ppk_cert, res, created=w.now + 600),
        "dhasil": seal("dhasil", dh, ppk, w.now + 900, w.chain(ppk_cert)),
    }


def test_objects_of_every_kind(env: Env) -> None:
    w = env.world
    res, _ = env.result("kinds")
    member, member_cert = w.officer("member", role="kpps-member", scope=(TPS_A,))
    objects = {
        "revocation": w.revocation(1),
        "certificate": env.chair_cert,
        "manifest": w.manifest_env,
        "receipt": env.receipt(res, "accepted", 1),
        "result": res,
        "endorsement": w.endorse(member, member_cert, res),
        "void": seal("void", VoidBody(res.id, res.tps, res.election, "test"), w.root, w.now),
        **trail_objects(w, env.chair, env.chair_cert, res),
    }
    assert set(objects) == set(KINDS)
    for env_ in objects.values():
        assert env.put(env_) is True
    rows = {r["kind"]: r for r in env.sdb.objects()}
    assert set(rows) == set(KINDS)
    for kind, env_ in objects.items():
        assert rows[kind]["id"] == env_.id
        assert env.sdb.get_raw([env_.id]) == [env_.encode()]  # exactly the bytes received
        assert env.sdb.raw_by_kind([kind]) == [env_.encode()]
    # only what travels to the central server has a delivery state
    assert {k for k, r in rows.items() if r["state"] is not None} == set(store_mod.DELIVERY_KINDS)
    assert rows["result"]["state"] == "delivered"  # its receipt was stored before it
    assert rows["endorsement"]["state"] == "pending"
    # scoping: a TPS phone's session includes global objects and its own TPS, not others
    tps_items = {i for _, i in env.sdb.items(TPS_A)}
    assert tps_items == {e.id for e in objects.values()}
    tps_only = {
        "result",
        "receipt",
        "endorsement",
        "certificate",
        "void",
        "admission",
        "objection",
        "correction",
    }  # region: the TPS (a D.Hasil: its kecamatan)
    assert {i for _, i in env.sdb.items(TPS_B)} == {
        e.id for k, e in objects.items() if k not in tps_only
    }


# --- receipts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        ("accepted", "delivered", ""),
        ("superseded", "delivered", "revision 1 supersedes it"),
        ("conflict", "conflict", "another result for this TPS differs"),
        ("rejected", "rejected", "invalid-content: valid votes do not add up"),
    ],
)
def test_receipt_updates_the_object_it_names(
    env: Env, status: str, state: str, reason: str
) -> None:
    res, _ = env.result("r")
    env.put(res)
    assert env.row(res.id)["state"] == "pending"
    assert env.sdb.pending_ids() == [res.id]
    rec = env.receipt(res, status, 7, reason)
    assert env.put(rec) is True
    row = env.row(res.id)
    assert row["state"] == state
    assert row["reason"] == reason
    assert row["receipt"] == rec.id
    assert env.sdb.receipt_raw(res.id) == rec.encode()
    assert env.sdb.pending_ids() == []
    assert env.put(rec) is False  # the same receipt again changes nothing
    assert env.row(res.id) == row


def test_newer_log_index_wins_older_does_not(env: Env) -> None:
    res, _ = env.result("order")
    env.put(res)
    first = env.receipt(res, "accepted", 5)
    newer = env.receipt(res, "conflict", 9, "a second chair signed different numbers")
    older = env.receipt(res, "rejected", 7, "late and stale")
    env.put(first)
    assert env.row(res.id)["state"] == "delivered"
    env.put(newer)
    assert (env.row(res.id)["state"], env.row(res.id)["receipt"]) == ("conflict", newer.id)
    env.put(older)  # arrives last but is older in the log: ignored
    row = env.row(res.id)
    assert (row["state"], row["reason"], row["receipt"]) == (
        "conflict",
        "a second chair signed different numbers",
        newer.id,
    )
    assert env.sdb.receipt_raw(res.id) == newer.encode()


def test_receipts_before_their_object_apply_when_it_arrives(env: Env) -> None:
    res, photos = env.result("early")
    env.put(env.receipt(res, "accepted", 3))
    env.put(env.receipt(res, "rejected", 4, "duplicate sheet photo"))
    assert env.sdb.has([res.id]) == set()
    env.put(res)
    row = env.row(res.id)
    assert (row["state"], row["reason"]) == ("rejected", "duplicate sheet photo")
    assert env.sdb.missing_photos() == []  # photos of a receipted relayed result: not fetched
    assert env.sdb.photo(_sha(photos[0])) == (len(photos[0]), False)


# --- quota and eviction ---------------------------------------------------------------------


def test_eviction_takes_only_receipted_relayed_photos_oldest_first(env: Env) -> None:
    """ "Receipted": the central server's receipt says the photos arrived there."""
    done_old, p_old = env.result("done-old", 20_000)  # relayed and receipted: evictable
    done_new, p_new = env.result("done-new", 20_000)  # relayed and receipted: evictable
    waiting, p_wait = env.result("waiting", 20_000)  # relayed, no receipt: must stay
    mine, p_mine = env.result("mine", 20_000)  # made here, receipted: must stay
    for r in (done_old, done_new, waiting):
        env.put(r)
    env.put(mine, origin="local")
    env.add_blobs(p_old, at=env.world.now - 100)
    env.add_blobs(p_new, at=env.world.now)
    env.add_blobs(p_wait)
    env.add_blobs(p_mine)
    for i, r in enumerate((done_old, done_new, mine)):
        env.put(env.receipt(r, "accepted", 10 + i, photos=True))
    env.sdb.quota = env.sdb.usage()  # exactly full

    env.sdb.make_room(1)  # one photo is enough: the oldest evictable one goes
    held = {_sha(p) for p in p_old + p_new + p_wait + p_mine if env.sdb.has_blob(_sha(p))}
    gone = {_sha(p) for p in p_old + p_new + p_wait + p_mine} - held
    assert len(gone) == 1
    assert gone <= {_sha(p) for p in p_old}
    assert not env.store.blobs.has(next(iter(gone)))  # the file went with the row

    env.sdb.make_room(6 * 20_000)  # the rest of the evictable photos
    for p in p_old + p_new:
        assert not env.sdb.has_blob(_sha(p))
        assert not env.store.blobs.has(_sha(p))
    for p in p_wait + p_mine:
        assert env.sdb.has_blob(_sha(p))
        assert env.store.blobs.has(_sha(p))
    with pytest.raises(StoreFull, match="store full"):
        env.sdb.make_room(6 * 20_000 + 1)  # would need un-receipted or local photos
    for p in p_wait + p_mine:
        assert env.sdb.has_blob(_sha(p))
    assert env.sdb.check() == []


def test_a_photo_shared_with_an_undelivered_result_is_never_evicted(env: Env) -> None:
    shared = photo_bytes("shared-sheet", 20_000)
    done_photos = [shared, photo_bytes("d2", 100), photo_bytes("d3", 100)]
    wait_photos = [shared, photo_bytes("w2", 100), photo_bytes("w3", 100)]
    done, _ = env.world.result(
        env.chair, env.chair_cert, photos=done_photos, created=env.world.now + 500
    )
    waiting, _ = env.world.result(
        env.chair,
        env.chair_cert,
        photos=wait_photos,
        created=env.world.now + 501,
        election="gubernur",
    )
    env.put(done)
    env.put(waiting)
    env.add_blobs([shared])
    env.put(env.receipt(done, "accepted", 1, photos=True))
    env.sdb.quota = env.sdb.usage()
    with pytest.raises(StoreFull):
        env.sdb.make_room(1)
    assert env.sdb.has_blob(_sha(shared))


def test_store_full_still_accepts_small_objects(env: Env) -> None:
    res, photos = env.result("full", 20_000)
    env.put(res)
    env.add_blobs(photos)
    env.sdb.quota = env.sdb.usage()
    with pytest.raises(StoreFull):
        env.sdb.make_room(1)
    # receipts, endorsements and results keep flowing: objects are never refused for space
    member, member_cert = env.world.officer("member", role="kpps-member", scope=(TPS_A,))
    other, _ = env.result("full-2")
    assert env.put(env.receipt(res, "accepted", 1, photos=True)) is True
    assert env.put(env.world.endorse(member, member_cert, res)) is True
    assert env.put(other) is True
    assert env.sdb.usage() > env.sdb.quota
    # and now that the first result is receipted, its photos can make room
    env.sdb.make_room(1)
    assert not all(env.sdb.has_blob(_sha(p)) for p in photos)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    e = Env(tmp_path)
    res, photos = e.result("reopen")
    e.put(res)
    e.add_blobs(photos)
    e.put(e.receipt(res, "accepted", 1))
    before = (e.sdb.objects(), e.sdb.counts())
    e.store.close()
    again = Store.open(tmp_path / "home", e.world.now)
    try:
        sdb = again.sync_db()
        assert (sdb.objects(), sdb.counts()) == before
        assert sdb.check() == []
    finally:
        again.close()


# --- consistency check ----------------------------------------------------------------------


def test_check_finds_a_blob_row_without_a_file(env: Env) -> None:
    res, photos = env.result("check")
    env.put(res)
    env.add_blobs(photos)
    assert env.sdb.check() == []
    lost = _sha(photos[1])
    env.store.blobs.path(lost).unlink()
    assert env.sdb.check() == [f"blob row without file: {lost.hex()}"]


async def test_async_facade_reads_see_writes(env: Env) -> None:
    res, _ = env.result("async")
    v = env.verified(res)
    stored = await env.store.write(StoreDB.put, v, "relayed", None, env.world.now)
    assert stored.new
    assert await env.store.read(StoreDB.has, [res.id]) == {res.id}
    again = await env.store.write(StoreDB.put, v, "relayed", None, env.world.now)
    assert not again.new


def test_a_batch_stores_a_certificate_whose_issuer_certificate_sorts_after_it(
    tmp_path: Path,
) -> None:
    """Certificates share one fetch priority, so inside a batch (a sync push, a bundle on a
    stick) a device's certificate may come before the issuer certificate that vouches for it;
    it was refused `unknown-signer` (seen once as a failed `bundle import` at a witness)."""
    from estafet.crypto.trust import TrustStore
    from estafet.relay.accept import accept_batch

    world = World()
    _, device_cert = world.officer("chair", scope=(TPS_A,))
    store = Store.open(tmp_path / "home", world.now)
    try:
        trust = TrustStore(world.root.public)  # a fresh node: only the pinned root
        raws = [device_cert.encode(), world.issuer_cert.encode()]  # the issuer's last
        outs = accept_batch(store.sync_db(), trust, raws, peer="", origin="relayed", scope="",
                            now=world.now)  # fmt: skip
        assert [o.status for o in outs] == ["stored", "stored"], outs
    finally:
        store.close()
