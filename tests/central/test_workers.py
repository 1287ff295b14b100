"""Several central processes on one database (issue 16): each a real OS process ingesting and
enrolling at the same moment as the others.

Attacks: the same objects pushed to every worker at once (duplicates racing), two results for
the same TPS and election from different chairs racing (the counting rule must see both: a
conflict, never two accepted), every code tried by every worker (single-use across processes),
and a worker SIGKILLed mid-ingest (every receipt it handed out is in the log). Afterwards the
hash chain verifies from genesis: no gap, no fork.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack

from estafet.central.authority import Authority
from estafet.central.ingest import Central
from tests.kit import NOW, World

from .conftest import result

WORKERS = 4
ROOT = Path(__file__).resolve().parents[2]


def _tps(world: World, n: int) -> list[str]:
    return sorted(world.manifest.tps)[:n]


def _objects(
    world: World, n_tps: int, n_conflicts: int
) -> tuple[list[bytes], set[bytes], set[bytes]]:
    """One result per TPS, plus a second chair's different result for the first
    ``n_conflicts`` TPS. Returns (raw objects, ids alone in their slot, ids in conflict)."""
    alone, conflict, raws = set(), set(), []
    for i, tps in enumerate(_tps(world, n_tps)):
        key, cert = world.officer(f"chair-{i}", scope=(tps,))
        env = result(world, key, cert, tps=tps)
        raws.append(env.encode())
        if i < n_conflicts:
            key2, cert2 = world.officer(f"thief-{i}", scope=(tps,))
            other = result(world, key2, cert2, tps=tps, invalid=0)
            raws.append(other.encode())
            conflict |= {env.id, other.id}
        else:
            alone.add(env.id)
    return raws, alone, conflict


def _start(
    home: Path, tmp: Path, name: str, raws: list[bytes], codes: list[str], go: Path
) -> subprocess.Popen[str]:
    objects, code_file = tmp / f"{name}.objects", tmp / f"{name}.codes"
    objects.write_bytes(msgpack.packb(raws))
    code_file.write_text("\n".join(codes))
    args = [
        "--home",
        str(home),
        "--objects",
        str(objects),
        "--codes",
        str(code_file),
        "--go",
        str(go),
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.central.run_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _entries_per_object(central: Central) -> collections.Counter[bytes]:
    return collections.Counter(
        bytes(r["object"]) for r in central.db.query("SELECT object FROM log")
    )


def test_workers_racing_keep_one_chain_and_single_use_codes(
    authority: Authority, world: World, tmp_path: Path
) -> None:
    home = authority.home
    setup = Central(home, authority)  # migrations done once, before the race
    codes = [m["code"] for m in setup.enrollment.make_codes("relay", 12, NOW + 3600, NOW)]
    setup.close()
    raws, alone, conflict = _objects(world, 16, 6)
    go = tmp_path / "go"
    procs = []
    for w in range(WORKERS):
        mine = raws[:]
        random.Random(w).shuffle(mine)
        procs.append(_start(home, tmp_path, f"w{w}", mine, codes, go))
    time.sleep(1.0)  # let every worker open the database and wait at the barrier
    go.touch()
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS
    lines = [line.split() for out in outs for line in out.splitlines()]
    central = Central(home, authority)
    try:
        central.verify_log()  # one chain from genesis: no gap, no fork, every receipt signed
        per_object = _entries_per_object(central)
        # alone in its slot: exactly one entry (accepted); a racing pair: three in all
        # (the first accepted, then both conflict), never a second "accepted"
        assert {oid: per_object[oid] for oid in alone} == dict.fromkeys(alone, 1)
        states = {oid: central.db.object_state(oid) for oid in alone | conflict}
        assert {oid: s["status"] for oid, s in states.items() if s} == {
            **dict.fromkeys(alone, "accepted"),
            **dict.fromkeys(conflict, "conflict"),
        }
        assert sum(per_object[oid] for oid in conflict) == 3 * len(conflict) // 2
        # every receipt a worker handed out is an entry of the log
        logged = {bytes(r["id"]).hex() for r in central.db.query("SELECT id FROM receipts")}
        handed = {parts[1] for parts in lines if parts[0] == "R"}
        assert handed <= logged
        # each code issued exactly one certificate, whichever worker won it
        used = collections.Counter(parts[1] for parts in lines if parts[0] == "E")
        assert used == dict.fromkeys(codes, 1)
        serials = [parts[2] for parts in lines if parts[0] == "E"]
        assert len(set(serials)) == len(codes)
        assert central.db.query("SELECT count(*) AS n FROM issued_certs") == [{"n": len(codes)}]
    finally:
        central.close()


def test_a_worker_killed_mid_ingest_loses_nothing_acknowledged(
    authority: Authority, world: World, tmp_path: Path
) -> None:
    home = authority.home
    Central(home, authority).close()
    raws, alone, _ = _objects(world, 60, 0)
    go = tmp_path / "go"
    go.touch()
    victim = _start(home, tmp_path, "victim", raws, [], go)
    other = _start(home, tmp_path, "other", raws[::-1], [], go)
    assert victim.stdout is not None
    acked = []
    for line in victim.stdout:  # kill it once it has handed out a few receipts
        acked.append(line.split()[1])
        if len(acked) == 10:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert other.wait(timeout=240) == 0
    central = Central(home, authority)
    try:
        central.verify_log()
        logged = {bytes(r["id"]).hex() for r in central.db.query("SELECT id FROM receipts")}
        assert set(acked) <= logged, "a receipt handed out by the killed worker is not in the log"
        assert _entries_per_object(central) == dict.fromkeys(alone, 1)
    finally:
        central.close()
