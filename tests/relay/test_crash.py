"""kill -9 of a receiving node during transfers, at seeded points; and the crash states it leaves.

The receiver is a real process (``tests/relay/run_node.py``); the sender is an in-process node
whose pushes go through a counting TCP proxy that SIGKILLs the receiver once a seeded number of
bytes has crossed. After every kill the store must reopen consistent, hold every object the
sender was told was stored, expose no partial photo as complete, and finish the sync once
restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from estafet.crypto.seal import seal
from estafet.protocol.objects import EndorsementBody
from estafet.relay.home import Home, NodeConfig
from estafet.relay.node import Node
from estafet.relay.store import Store
from tests.kit import TPS_A, World, photo_bytes
from tests.relay.nodes import enroll, make_node

REPO = Path(__file__).resolve().parents[2]
SEED = 20241127
ROUNDS = 6
RESULTS = 12
PHOTO = 40_000


# --- the receiver process -------------------------------------------------------------------


def make_home(world: World, tmp: Path, label: str) -> Path:
    home = tmp / label
    key, cert = world.officer(label, role="relay", scope=("630214",))
    enroll(world, home, key, cert)
    Home(home).save_config(
        NodeConfig(listen="127.0.0.1:0", mdns=False, beacon=False, sync_interval=0.5)
    )
    return home


class Receiver:
    """``run_node.py`` on a home, as a child process."""

    def __init__(self, home: Path, now: int) -> None:
        self.home = home
        self.now = now
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.relay.run_node",
            "--home",
            str(self.home),
            "--now",
            str(self.now),
            "--log",
            "WARNING",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.startswith(b"READY "), line
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 30)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            rc = await self.wait()
            assert rc == 0, f"the node did not stop cleanly: exit {rc}"


class KillingProxy:
    """TCP proxy that calls ``on_limit`` once ``limit`` bytes (both directions) have crossed."""

    def __init__(self, target: int, limit: int, on_limit: Callable[[], None]) -> None:
        self.target = target
        self.limit = limit
        self.on_limit = on_limit
        self.count = 0
        self.fired = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> KillingProxy:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        self._writers += [cw, sw]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if up:  # keep the receiver from learning the sender's own address, so
                        # every byte it gets crosses this proxy (no sessions of its own)
                        data = re.sub(rb"(?i)x-estafet-listen: [^\r]*\r\n", b"", data)
                    self.count += len(data)
                    if not self.fired and self.count >= self.limit:
                        self.fired = True
                        self.on_limit()
                    dst.write(data)
                    await dst.drain()
            for w in (cw, sw):
                w.close()

        await asyncio.gather(pump(cr, sw, True), pump(sr, cw, False))


# --- the sender ---------------------------------------------------------------------------------


async def _idle(self: Node) -> None:
    await asyncio.Event().wait()


def add_results(node: Node, world: World, start: int, n: int) -> None:
    """``n`` more results (three photos each, held here) and four endorsements of each."""
    chair, chair_cert = world.officer("chair", scope=(TPS_A,))
    member, member_cert = world.officer("member", role="kpps-member", scope=(TPS_A,))
    trust = world.trust()
    sdb = node.store.sync_db()
    with sdb.db.atomic():
        for i in range(start, start + n):
            photos = [photo_bytes(f"crash-{i}-{s}", PHOTO + s) for s in (1, 2, 3)]
            res, _ = world.result(chair, chair_cert, photos=photos, created=world.now + i)
            sdb.put(trust.verify(res.encode(), world.now), "relayed", None, world.now)
            for data in photos:
                sha = hashlib.sha256(data).digest()
                node.store.blobs.write_whole(sha, data)
                sdb.add_blob(sha, len(data), world.now)
            for j in range(4):
                body = EndorsementBody(res.id, TPS_A, "bupati", "agree")
                end = seal(
                    "endorsement",
                    body,
                    member,
                    world.now + 10_000 + i * 4 + j,
                    chain=world.chain(member_cert),
                )
                sdb.put(trust.verify(end.encode(), world.now), "relayed", None, world.now)


@pytest.fixture
async def sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """A relay that syncs only when told to (results are added round by round)."""
    monkeypatch.setattr(Node, "_scheduler", _idle)
    world = World()
    node = make_node(world, tmp_path, "sender")
    node.world = world  # type: ignore[attr-defined]
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


# --- checks -----------------------------------------------------------------------------------


def _complete_files_are_whole(home: Path) -> int:
    """Every file in the complete-blob area hashes to its name; returns how many there are."""
    n = 0
    for sub in (home / "blobs").iterdir():
        if sub.name == "partial" or not sub.is_dir():
            continue
        for f in sub.iterdir():
            assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name, f"{f} is not whole"
            n += 1
    return n


def _check_after_kill(home: Path, now: int, acked: set[bytes]) -> tuple[int, int]:
    _complete_files_are_whole(home)  # before the store gets a chance to tidy up
    conn = sqlite3.connect(str(home / "store.db"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    store = Store.open(home, now)
    try:
        sdb = store.sync_db()
        assert sdb.check() == []
        assert sdb.has(acked) == acked, "an object acknowledged as stored was lost"
        rows = [bytes(r[0]) for r in sdb.db.execute("SELECT sha256 FROM blobs")]
        for sha in rows:
            data = store.blobs.path(sha).read_bytes()
            assert hashlib.sha256(data).digest() == sha
        assert _complete_files_are_whole(home) == len(rows)  # no orphans left after reopening
        return sdb.counts()["objects"], len(rows)
    finally:
        store.close()


def _acked(sender: Node, peer_key: str) -> set[bytes]:
    rows = sender.store.sync_db().db.execute(
        "SELECT object FROM holders WHERE peer = ?", [peer_key]
    )
    return {bytes(r[0]) for r in rows}


async def _status(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(url + "/v1/status") as resp:
        assert resp.status == 200
        doc: dict[str, object] = await resp.json()
        return doc


async def _sync_until_done(sender: Node, url: str, want_blobs: int) -> None:
    for _ in range(10):
        rep = await sender.sync_now(url)
        if rep.ok and rep.in_sync:
            counts = (await _status(url))["objects"]
            assert isinstance(counts, dict)
            if counts["blobs"] == want_blobs:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"sync did not complete: {rep}")


# --- the test -------------------------------------------------------------------------------


async def test_kill9_during_transfers(sender: Node, tmp_path: Path) -> None:
    """Each round the sender gets new results and pushes them; the receiver is killed at a
    seeded byte count, checked, restarted, and the sync completes; the restarted process is
    the one killed in the next round."""
    world: World = sender.world  # type: ignore[attr-defined]
    rng = random.Random(SEED)
    round_bytes = RESULTS * 3 * PHOTO + 150_000  # about what one round's sync moves
    home = make_home(world, tmp_path, "receiver")
    key = Home(home).load_key(None).id.hex()
    rx = Receiver(home, world.now)
    await rx.start()
    stages = []
    try:
        for round_ in range(ROUNDS):
            add_results(sender, world, round_ * RESULTS, RESULTS)
            limit = rng.randrange(2_000, round_bytes)
            async with KillingProxy(rx.port, limit, rx.kill9) as proxy:
                rep = await sender.sync_now(f"http://127.0.0.1:{proxy.port}")
            assert proxy.fired, f"round {round_}: the sync ended before the kill point ({rep})"
            assert not rep.ok
            assert await rx.wait() == -9
            objects, blobs = _check_after_kill(home, world.now, _acked(sender, key))
            stages.append((limit, objects, blobs))
            await rx.start()
            want = (round_ + 1) * RESULTS * 3
            await _sync_until_done(sender, rx.url, want)
            counts = (await _status(rx.url))["objects"]
            assert isinstance(counts, dict)
            assert counts["objects"] >= sender.store.sync_db().counts()["objects"]
        await rx.stop()
    finally:
        rx.kill9()
        with contextlib.suppress(Exception):
            await rx.wait()
    objects, blobs = _check_after_kill(home, world.now, _acked(sender, key))
    assert blobs == ROUNDS * RESULTS * 3
    print("kill points (bytes into the round, objects held, photos held):", stages)


# --- crash states, built directly ---------------------------------------------------------------


def _store_with_result(tmp: Path) -> tuple[Store, list[bytes], World]:
    world = World()
    chair, cert = world.officer("chair", scope=(TPS_A,))
    photos = [photo_bytes(f"state-{i}", 30_000 + i) for i in (1, 2, 3)]
    res, _ = world.result(chair, cert, photos=photos)
    store = Store.open(tmp / "home", world.now)
    sdb = store.sync_db()
    sdb.put(world.trust().verify(res.encode(), world.now), "relayed", None, world.now)
    return store, photos, world


def test_reopen_finishes_a_full_partial_and_adopts_an_orphan(tmp_path: Path) -> None:
    store, photos, world = _store_with_result(tmp_path)
    shas = [hashlib.sha256(p).digest() for p in photos]
    # photo 1: every byte arrived, killed before the rename (a full-size partial file)
    store.blobs.partial_path(shas[0]).write_bytes(photos[0])
    # photo 2: renamed into place, killed before the row was committed (an orphan file)
    store.blobs.path(shas[1]).parent.mkdir(exist_ok=True)
    store.blobs.path(shas[1]).write_bytes(photos[1])
    # photo 3: killed half-way (a partial to resume), plus a full-size partial of junk
    store.blobs.partial_path(shas[2]).write_bytes(photos[2][:10_000])
    store.close()
    again = Store.open(tmp_path / "home", world.now)
    try:
        sdb = again.sync_db()
        assert sdb.has_blob(shas[0]) and sdb.has_blob(shas[1])
        assert not again.blobs.partial_path(shas[0]).exists()
        assert not sdb.has_blob(shas[2])
        assert again.blobs.partial_size(shas[2]) == 10_000  # kept, to resume from
        assert sdb.missing_photos() == [(shas[2], len(photos[2]))]
        assert sdb.check() == []
    finally:
        again.close()


def test_reopen_drops_a_full_partial_that_does_not_match(tmp_path: Path) -> None:
    store, photos, world = _store_with_result(tmp_path)
    sha = hashlib.sha256(photos[0]).digest()
    store.blobs.partial_path(sha).write_bytes(b"\xff" * len(photos[0]))
    store.close()
    again = Store.open(tmp_path / "home", world.now)
    try:
        assert not again.sync_db().has_blob(sha)
        assert not again.blobs.partial_path(sha).exists()  # fetched afresh next time
        assert not again.blobs.has(sha)
    finally:
        again.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs processes")
def test_runner_script_has_help() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "tests.relay.run_node", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--home" in out.stdout
