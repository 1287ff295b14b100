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
import sys
from pathlib import Path

import aiohttp
import pytest

from estafet.central.config import open_db, write_config
from estafet.central.ingest import Central
from estafet.protocol import codec
from estafet.relay import wire
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.central.conftest import world_authority
from tests.kit import TPS_A, World, form_json, photo_files
from tests.relay.nodes import auth_headers, make_node

REPO = Path(__file__).resolve().parents[2]


class CentralProcess:
    def __init__(self, home: Path, now: int, kill_when: str = "", kill_at_entry: int = 0) -> None:
        self.home, self.now, self.kill_when = home, now, kill_when
        self.kill_at_entry = kill_at_entry
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> CentralProcess:
        args = ["--home", str(self.home), "--now", str(self.now)]
        if self.kill_when:
            args += ["--kill-when", self.kill_when]
        if self.kill_at_entry:
            args += ["--kill-at-entry", str(self.kill_at_entry)]
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
    """Receipt id -> status of every entry of the central ingest log that travels (names a TPS:
    a certificate's receipt stays at the centre), read from its database."""
    db = open_db(home)
    try:
        rows = db.query(
            "SELECT r.id, l.status FROM receipts r JOIN log l ON l.idx = r.log_idx"
            " JOIN objects o ON o.id = l.object WHERE o.tps != ''"
        )
    finally:
        db.close()
    return {bytes(r["id"]): r["status"] for r in rows}


async def submit(node: Node, world: World, tmp: Path, tag: str, **form: object) -> bytes:
    sub = submit_result(node.store, node.key, world.root.public, form_json(**form),
                        photo_files(tmp, tag, 3000), world.now)  # fmt: skip
    return sub.id


@pytest.mark.parametrize("case", ["conflict", "photos"])
async def test_a_kill_between_the_two_databases_loses_no_receipt(
    tmp_path: Path, case: str, backend: str
) -> None:
    """conflict: killed right after B's ingest logged B and the earlier A as conflicts.
    photos: killed right after A's third photo logged A's photos-complete receipt."""
    world = World()
    home = tmp_path / "central"
    home.mkdir()
    if backend != "sqlite":
        write_config(home, backend)
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


async def test_two_central_servers_on_one_home_serve_one_log(tmp_path: Path, backend: str) -> None:
    """docs/deploy.md 5b: two `central serve` workers share a home (and, on PostgreSQL, the
    database). A gateway pushes to one; the other, syncing with a second gateway that holds a
    conflicting result, logs the conflict; every receipt of the one log reaches both gateways,
    photos included, whichever worker took the object."""
    world = World()
    home = tmp_path / "central"
    home.mkdir()
    if backend != "sqlite":
        write_config(home, backend)
    chair = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    thief = make_node(world, tmp_path, "thief", role="kpps-chair", scope=(TPS_A,))
    gw1 = make_node(world, tmp_path, "gw1", role="gateway", scope=("6302",))
    gw2 = make_node(world, tmp_path, "gw2", role="gateway", scope=("6302",))
    nodes = (chair, thief, gw1, gw2)
    for n in nodes:
        await n.start()
    try:
        first = await submit(chair, world, tmp_path, "a")
        assert (await chair.sync_now(f"http://127.0.0.1:{gw1.port}")).ok
        await submit(thief, world, tmp_path, "b", invalid=0)
        assert (await thief.sync_now(f"http://127.0.0.1:{gw2.port}")).ok
        async with CentralProcess(home, world.now) as one, CentralProcess(home, world.now) as two:
            for _ in range(2):
                for gw in (gw1, gw2):
                    for worker in (one, two):
                        gw.peers.clear()
                        report = await gw.sync_now(worker.url)
                        assert report.ok, report.error
        issued = log_receipts(home)
        statuses = sorted(issued.values())
        assert statuses.count("conflict") >= 2 and "accepted" in statuses, statuses  # + photos
        for gw in (gw1, gw2):
            held = await gw.store.read(StoreDB.has, list(issued))
            assert set(held) == set(issued), "a receipt of the one log missed a gateway"
        assert (await chair.sync_now(f"http://127.0.0.1:{gw1.port}")).ok
        mine = {o["id"]: o for o in await chair.store.read(StoreDB.objects, "result")}
        assert mine[first]["state"] == "conflict"
    finally:
        for n in nodes:
            await n.stop()


BATCH = 16


async def _push(url: str, headers: dict[str, str], raws: list[bytes]) -> list[bytes] | None:
    """One objects/put; the receipts it answered, or None when the connection died first."""
    try:
        async with aiohttp.ClientSession() as http:
            body = wire.pack({"objects": raws})
            async with http.post(f"{url}/v1/objects/put", data=body, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=60)) as r:  # fmt: skip
                assert r.status == 200, r.status
                answer = codec.decode(await r.read())
    except (aiohttp.ClientError, ConnectionError):
        return None
    assert isinstance(answer, dict)
    return list(answer["receipts"])


async def test_a_kill_in_the_middle_of_a_batch_loses_nothing_acknowledged(
    tmp_path: Path, backend: str
) -> None:
    """Group commit: the central server dies (kill -9) while appending the 5th log entry of the
    second pushed batch, before its one COMMIT. Every receipt a pusher was answered with is in
    the log after the restart, byte for byte; the dying batch left nothing (no half batch, no
    receipt nobody got); the log verifies (``central audit``); pushed again, the batch gets its
    receipts."""
    world = World()
    home = tmp_path / "central"
    home.mkdir()
    if backend != "sqlite":
        write_config(home, backend)
    raws = []
    for tps in sorted(world.manifest.tps)[: BATCH * 3]:
        key, cert = world.officer(f"chair-{tps}", scope=(tps,))
        raws.append(world.result(key, cert, tps=tps)[0].encode())
    batches = [raws[i : i + BATCH] for i in range(0, len(raws), BATCH)]
    gw = make_node(world, tmp_path, "gw", role="gateway", scope=("6302",))
    await gw.start()
    answered: list[bytes] = []
    try:
        async with CentralProcess(home, world.now, kill_at_entry=BATCH + 5) as central:
            headers = await auth_headers(central.url, gw)
            for batch in batches[:2]:
                got = await _push(central.url, headers, batch)
                answered += got or []
            assert await central.killed(), "the central server was not killed mid-batch"
        assert len(answered) == BATCH, "the first batch was answered, the second was not"
        in_log = log_receipts_all(home)
        assert set(answered) <= in_log, "a receipt handed out is missing from the log"
        assert len(in_log) == BATCH, "the killed batch left entries behind"
        audit(home, world)
        async with CentralProcess(home, world.now) as central:
            headers = await auth_headers(central.url, gw)
            for batch in batches[1:]:
                got = await _push(central.url, headers, batch)
                assert got is not None and len(got) == BATCH
                answered += got
        assert set(answered) == log_receipts_all(home)
        audit(home, world)
    finally:
        await gw.stop()


def log_receipts_all(home: Path) -> set[bytes]:
    db = open_db(home)
    try:
        return {bytes(r["raw"]) for r in db.query("SELECT raw FROM receipts")}
    finally:
        db.close()


def audit(home: Path, world: World) -> None:
    """What ``central audit`` does: recompute the chain, check every receipt."""
    central = Central(home, world_authority(world, home))
    try:
        central.verify_log()
    finally:
        central.close()
