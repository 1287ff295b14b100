"""Photo arrivals: a photo is reported complete only once its row is committed, rows of photos
that finish together share one transaction, and a session's photos move a few at a time.

Real store (SQLite file, blob files, its threads); the photo bodies come from in-memory streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from estafet.relay.peers import Stats
from estafet.relay.receiver import BlobReceiver
from estafet.relay.sink import CARRIER
from estafet.relay.store import Store
from estafet.relay.sync import in_flight
from tests.kit import TPS_A, World, photo_bytes

SIZE = 200_000


class Body:
    """A photo body arriving in 64 KiB pieces, as ``request.content`` would give it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int = -1) -> bytes:
        await asyncio.sleep(0)
        chunk, self.data = self.data[: min(n, 65536)], self.data[min(n, 65536) :]
        return chunk


def _store(tmp: Path) -> tuple[Store, list[bytes], World]:
    world = World()
    chair, cert = world.officer("chair", scope=(TPS_A,))
    photos = [photo_bytes(f"arrive-{i}", SIZE + i) for i in (1, 2, 3)]
    res, _ = world.result(chair, cert, photos=photos)
    store = Store.open(tmp / "home", world.now)
    store.sync_db().put(world.trust().verify(res.encode(), world.now), "relayed", None, world.now)
    return store, photos, world


def _rows(tmp: Path) -> set[bytes]:
    """The blob rows a fresh connection sees: what a crash now would keep."""
    conn = sqlite3.connect(str(tmp / "home" / "store.db"))
    try:
        return {bytes(r[0]) for r in conn.execute("SELECT sha256 FROM blobs")}
    finally:
        conn.close()


async def test_a_photo_is_complete_only_once_its_row_is_committed_and_rows_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, photos, world = _store(tmp_path)
    shas = [hashlib.sha256(p).digest() for p in photos]
    receiver = BlobReceiver(store, CARRIER, Stats(), lambda: None, lambda: world.now)
    sdb = store.sync_db()
    commit_rows = sdb.add_blobs
    gate = threading.Event()
    groups: list[list[bytes]] = []

    def slow_commit(blobs: list[tuple[bytes, int]], now: int) -> None:
        groups.append([sha for sha, _ in blobs])
        assert gate.wait(20)  # the writer thread is busy (a slow disk)
        commit_rows(blobs, now)

    monkeypatch.setattr(sdb, "add_blobs", slow_commit)
    try:
        first = asyncio.create_task(receiver.receive(shas[0], SIZE + 1, 0, Body(photos[0]), "x"))
        while not groups:
            await asyncio.sleep(0.01)
        rest = [
            asyncio.create_task(receiver.receive(sha, len(p), 0, Body(p), "x"))
            for sha, p in zip(shas[1:], photos[1:], strict=True)
        ]
        for _ in range(500):  # both finish their files while the first commit waits
            if all(store.blobs.has(s) for s in shas):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert all(store.blobs.has(s) for s in shas)  # hash-checked and renamed into place
        assert not first.done() and not any(t.done() for t in rest)  # but none reported
        assert _rows(tmp_path) == set()
        gate.set()
        got = await asyncio.wait_for(asyncio.gather(first, *rest), 20)
        assert got == [len(p) for p in photos]
        assert _rows(tmp_path) == set(shas)  # reported complete: committed
        assert groups == [[shas[0]], shas[1:]] or groups == [[shas[0]], shas[2:0:-1]]
    finally:
        gate.set()
        store.close()


async def test_a_photo_already_in_place_is_not_written_again(tmp_path: Path) -> None:
    """A second transfer of a photo another one just finished writes nothing and leaves no
    partial file; it is reported complete (its row is committed)."""
    store, photos, world = _store(tmp_path)
    sha = hashlib.sha256(photos[0]).digest()
    stats = Stats()
    receiver = BlobReceiver(store, CARRIER, stats, lambda: None, lambda: world.now)
    try:
        assert await receiver.receive(sha, len(photos[0]), 0, Body(photos[0]), "x") == SIZE + 1
        again = await receiver.receive(sha, len(photos[0]), 0, Body(photos[0]), "y", "ab" * 8)
        assert again == SIZE + 1
        assert stats.blob_bytes_in == SIZE + 1  # the second one's bytes were not written
        assert list(store.blobs.partial_dir.glob("*.part")) == []
    finally:
        store.close()
    assert _rows(tmp_path) == {sha}


async def test_in_flight_moves_n_at_a_time_and_stops_like_a_loop() -> None:
    running = 0
    peak = 0
    started: list[int] = []

    async def move(i: int) -> bool:
        nonlocal running, peak
        started.append(i)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (i % 3 + 1))
        running -= 1
        if i == 7:
            raise ValueError("the peer misbehaved at 7")
        return i != 4  # a full peer at 4: nothing new starts after it

    await in_flight(list(range(4)), move, 3)
    assert peak == 3 and sorted(started) == [0, 1, 2, 3]

    async def until_full(i: int) -> bool:
        started.append(i)
        await asyncio.sleep(0.01 if i != 4 else 0.05)
        return i != 4  # a full peer at 4: nothing new starts once it said so

    started.clear()
    await in_flight(list(range(40)), until_full, 3)
    assert 4 in started and len(started) < 15  # stopped soon after 4

    started.clear()
    with pytest.raises(ValueError, match="at 7"):  # raised as itself, not as a group
        await in_flight([5, 6, 7, 8, 9, 10, 11], move, 2)
    assert 11 not in started
    await in_flight([], move, 3)  # nothing to move: returns
