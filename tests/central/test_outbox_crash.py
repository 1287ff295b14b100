"""kill -9 of the central server between its two databases; every receipt still reaches a gateway.

The central server is a real process (``tests/central/run_central.py``) that SIGKILLs itself right
after ``central.db`` commits an ingest (or a photo arrival) and before the node store (what
gateways sync) commits. After a restart, a gateway that syncs with it must hold every receipt of
the central ingest log, and the phone that sent the first result must learn it is a conflict:
the receipts of *other* objects whose status an ingest changed are the ones a second store
loses. (On the code before the single outbox, the first case left the first result "delivered"
forever.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import make_node

REPO = Path(__file__).resolve().parents[2]


class CentralProcess:
    def __init__(self, home: Path, now: int, kill_when: str = "") -> None:
        self.home, self.now, self.kill_when = home, now, kill_when
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> CentralProcess:
        args = ["--home", str(self.home), "--now", str(self.now)]
        if self.kill_when:
            args += ["--kill-when", self.kill_when]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.central.run_central", *args, cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert line.startswith(b"READY "), line
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), 30)

    async def killed(self) -> bool:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 30) == -9


def log_receipts(home: Path) -> dict[bytes, str]:
    """Receipt id -> status of every entry of the central ingest log, read from central.db."""
    with sqlite3.connect(home / "central.db") as db:
        rows = db.execute(
            "SELECT r.id, l.status FROM receipts r JOIN log l ON l.idx = r.log_idx"
        ).fetchall()
    return {bytes(i): s for i, s in rows}


async def submit(node: Node, world: World, tmp: Path, tag: str, **form: object) -> bytes:
    sub = submit_result(node.store, node.key, world.root.public, form_json(**form),
                        photo_files(tmp, tag, 3000), world.now)  # fmt: skip
    return sub.id


@pytest.mark.parametrize("case", ["conflict", "photos"])
async def test_a_kill_between_the_two_databases_loses_no_receipt(tmp_path: Path, case: str) -> None:
    """conflict: killed right after B's ingest logged B and the earlier A as conflicts.
    photos: killed right after A's third photo logged A's photos-complete receipt."""
    world = World()
    home = tmp_path / "central"
    home.mkdir()
    chair = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    thief = make_node(world, tmp_path, "thief", role="kpps-chair", scope=(TPS_A,))
    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    for n in (chair, thief, gw):
        await n.start()
    gw_url = f"http://127.0.0.1:{gw.port}"
    try:
        first = await submit(chair, world, tmp_path, "a")
        assert (await chair.sync_now(gw_url)).ok
        async with CentralProcess(home, world.now, case) as central:
            report = await gw.sync_now(central.url)
            if case == "conflict":
                assert report.ok, report.error
                await submit(thief, world, tmp_path, "b", invalid=0)
                assert (await thief.sync_now(gw_url)).ok
                await gw.sync_now(central.url)
            assert await central.killed(), "the central server was not killed where planned"
        issued = log_receipts(home)
        assert len(issued) >= 2
        async with CentralProcess(home, world.now) as central:
            for _ in range(3):
                gw.peers.clear()  # no backoff from the kill: a fresh try each round
                report = await gw.sync_now(central.url)
                assert report.ok, report.error
        held = await gw.store.read(StoreDB.has, list(issued))
        lost = {i.hex()[:12]: s for i, s in issued.items() if i not in held}
        assert not lost, f"receipts of the central log that never reached the gateway: {lost}"
        assert (await chair.sync_now(gw_url)).ok
        mine = {o["id"]: o for o in await chair.store.read(StoreDB.objects, "result")}
        want = "conflict" if case == "conflict" else "delivered"
        assert mine[first]["state"] == want
        if case == "photos":
            assert mine[first]["photos_complete"] == 1
    finally:
        for n in (chair, thief, gw):
            await n.stop()
