"""Group commit at the centre (issue 15): a pushed batch is one central.db transaction.

``Central.batch`` must not change what happens to any object: the same objects ingested one by
one into one central and as one batch into another must give the same statuses, the same log
and byte-identical receipts (Ed25519 signatures are deterministic, the log hashes chain the
same), including duplicates, a broken copy before its genuine twin, an equivocation, a revision
held until its base arrives, and a revocation in the middle of the batch that must reach results
verified before the batch's write began. A batch that fails part-way leaves nothing; the central
node's ``objects/put`` path commits central.db once per batch and answers with the receipts the
log holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from estafet.central.authority import Authority
from estafet.central.config import write_config
from estafet.central.db import AUTO_CHECKPOINT, BIG_COMMIT, SQLiteCentralDB
from estafet.central.ingest import Central
from estafet.central.outbox import CentralSink
from estafet.protocol.objects import RevokedEntry, decode_envelope, encode_envelope
from estafet.relay.accept import accept_batch
from estafet.relay.home import NodeConfig
from estafet.relay.node import Node
from tests.kit import NOW, TPS_B, World

from .conftest import result, world_authority
from .test_ingest import receipt_of


def _objects(world: World) -> list[bytes]:
    """A batch that exercises every ordering rule of the ingest."""
    key, cert = world.officer("chair-a")
    thief, thief_cert = world.officer("thief")
    rogue, rogue_cert = world.officer("rogue", scope=(TPS_B,))
    one = result(world, key, cert)
    two = result(world, thief, thief_cert, invalid=9)  # equivocation with one
    base = result(world, key, cert, election="gubernur")
    rev = result(world, key, cert, election="gubernur", revision=1, supersedes=base.id.hex())
    env = decode_envelope(one.encode())
    broken = encode_envelope(env.content, bytes([env.signature[0] ^ 1]) + env.signature[1:],
                             env.chain)  # fmt: skip
    early = result(world, rogue, rogue_cert, tps=TPS_B)
    late = result(world, rogue, rogue_cert, tps=TPS_B, election="gubernur")
    serial = rogue_cert.body.serial  # type: ignore[union-attr]
    revocation = world.revocation(2, RevokedEntry(serial, None, "phone stolen", NOW, since=NOW))
    return [
        broken,  # unverified: no row, and must not shadow the genuine copy that follows
        one.encode(),
        one.encode(),  # duplicate inside the batch
        rev.encode(),  # held: its base comes later in the same batch
        two.encode(),  # conflict: both one and two get new entries
        early.encode(),  # accepted, then flagged by the revocation below
        revocation.encode(),
        late.encode(),  # verified before the batch took the lock: must be re-verified, revoked
        base.encode(),  # releases rev
        world.endorse(*world.officer("witness-a", role="witness"), one).encode(),
        b"\x81\xa1c\xc4\x03abc",  # junk with a binary c
        broken,  # a duplicate now, answered with the genuine copy's receipt
    ]


def _log(c: Central) -> list[Any]:
    return [
        (bytes(r["object"]), r["status"], r["reason"], r["photos"], bytes(r["receipt"]))
        for r in c.db.iter_log()
    ]


def _objects_table(c: Central) -> list[Any]:
    rows = c.db.query("SELECT id, status, reason, verified FROM objects ORDER BY id")
    return [(bytes(r["id"]), r["status"], r["reason"], r["verified"]) for r in rows]


@pytest.fixture
def second_home(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Path:
    """A home for a second, independent central (its own PostgreSQL database)."""
    home = tmp_path / "central-2"
    home.mkdir()
    if backend != "sqlite":
        write_config(home, request.getfixturevalue("pg_server").fresh())
    return home


def _open(world: World, home: Path) -> Central:
    return Central(home, world_authority(world, home))


def test_a_batch_ends_exactly_as_one_by_one(
    central: Central, world: World, second_home: Path
) -> None:
    raws = _objects(world)
    alone = [central.ingest(raw, NOW + 5) for raw in raws]
    grouped = _open(world, second_home)
    try:
        envs = [_decoded(raw) for raw in raws]
        with grouped.batch(envs, NOW + 5):
            together = [
                grouped.ingest_verified(raw, NOW + 5, env=env)
                for raw, env in zip(raws, envs, strict=True)
            ]
        assert [(d.receipt, d.status) for d in together] == alone
        statuses = [s for _, s in alone]
        assert statuses[:5] == ["unverified", "accepted", "accepted", "held", "conflict"]
        assert statuses[7] == "rejected" and receipt_of(alone[7][0], world).reason == (
            "revoked-signer"
        )
        assert statuses[-2:] == ["unverified", "conflict"]
        assert _log(grouped) == _log(central)
        assert _objects_table(grouped) == _objects_table(central)
        grouped.verify_log()
    finally:
        grouped.close()


def _decoded(raw: bytes) -> Any:
    try:
        return decode_envelope(raw)
    except Exception:
        return None


def test_a_batch_that_fails_part_way_leaves_nothing(
    central: Central, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = _objects(world)
    calls: list[object] = []
    original = central.db.append_log

    def failing_append(*args: object) -> None:
        calls.append(args)
        if len(calls) == 6:  # well inside the batch: five entries already appended
            raise OSError("disk full")
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(central.db, "append_log", failing_append)
    envs = [_decoded(raw) for raw in raws]
    with pytest.raises(OSError, match="disk full"), central.batch(envs, NOW):
        for raw, env in zip(raws, envs, strict=True):
            central.ingest_verified(raw, NOW, env=env)
    monkeypatch.undo()
    assert central.db.log_head() == (0, None)
    assert central.db.query("SELECT id FROM objects") == []
    assert [central.ingest(raw, NOW)[1] for raw in raws][:5] == [
        "unverified", "accepted", "accepted", "held", "conflict",
    ]  # fmt: skip
    central.verify_log()


@pytest.fixture
def central_node(authority: Authority, tmp_path: Path) -> Iterator[tuple[Node, Central]]:
    c = Central(authority.home, authority)
    node = Node(tmp_path / "node", NodeConfig(listen="127.0.0.1:0", mdns=False, beacon=False),
                authority.issuer_key, authority.trust.root_public,
                sink=CentralSink(c, lambda app: None))  # fmt: skip
    try:
        yield node, c
    finally:
        node.store.close()
        c.close()


def test_objects_put_commits_central_db_once_per_batch(
    central_node: tuple[Node, Central], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, c = central_node
    raws = _objects(world)
    writes: list[int] = []
    write = c.db.write

    def counting_write() -> Any:
        writes.append(1)
        return write()

    monkeypatch.setattr(c.db, "write", counting_write)
    sdb = node.store.sync_db()
    out = accept_batch(sdb, node.trust, raws, peer="gw", origin="relayed", scope="",
                       now=NOW + 5, sink=node.sink)  # fmt: skip
    assert len(writes) == 1, "one central.db transaction for the whole batch"
    issued = {bytes(r["receipt"]) for r in c.db.iter_log()}
    given = [o.receipt for o in out if o.receipt is not None]
    assert given and set(given) <= issued, "every receipt handed out is in the log"
    for o in out:  # its receipt at its turn in the batch (a later object may change it)
        if o.id is not None and o.receipt is not None:
            assert receipt_of(o.receipt, world).object == o.id
    # the node store caught up once, after the commit: it holds every receipt of the log
    assert set(sdb.has(list(_receipt_ids(c)))) == _receipt_ids(c)
    c.verify_log()


def _receipt_ids(c: Central) -> set[bytes]:
    rows = c.db.query("SELECT r.id FROM receipts r JOIN log l ON l.idx = r.log_idx "
                      "JOIN objects o ON o.id = l.object WHERE o.tps != ''")  # fmt: skip
    return {bytes(r["id"]) for r in rows}


def test_sqlite_checkpoints_a_big_commit_in_its_own_thread_and_stops_it(tmp_path: Path) -> None:
    """A pushed batch's commit leaves its checkpoint to the database object's own thread
    (SQLite's automatic checkpoint is off for that COMMIT and back on after it), the WAL is
    folded into central.db by that thread, and close() stops it."""
    db = SQLiteCentralDB(tmp_path / "central.db")
    assert db._checkpointer.is_alive()
    n = BIG_COMMIT + 1
    with db.write():  # one big transaction, as a push of 512 results makes
        db.put_codes([{"hash": i.to_bytes(32, "big"), "role": "kpps-chair", "tps": "",
                       "scope": "", "created": NOW, "expires_at": NOW + 1}
                      for i in range(n)])  # fmt: skip
    assert db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTO_CHECKPOINT
    for _ in range(100):  # the thread copies the WAL's pages into the database file
        if (tmp_path / "central.db").stat().st_size > 64 * 1024:
            break
        time.sleep(0.05)
    assert (tmp_path / "central.db").stat().st_size > 64 * 1024, "never checkpointed"
    db.close()
    assert not db._checkpointer.is_alive()
    again = SQLiteCentralDB(tmp_path / "central.db")
    try:
        assert again.query("SELECT count(*) AS n FROM enroll_codes")[0]["n"] == n
    finally:
        again.close()
