"""Figure 1 through real nodes: two relays whose stores are already in sync, at 10,000 objects.

``bench_reconcile.py`` measures the protocol alone at 1k .. 1M items; this is the same check
through two in-process nodes' HTTP API (``/v1/info``, ``/v1/reconcile``, then the photo steps,
which find nothing to do). Both stores get the same 10,000 rows, inserted by SQL (ids, times
and regions are what reconciliation reads; the objects are never fetched because the stores
agree), then one session exchanges the two nodes' own certificates, and the measured session
follows: ``SyncSession`` report ``reconcile_bytes`` (request + response bodies) and
``round_trips``. Baseline: the full id inventory, 32 B per object held in the session scope.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import KECAMATAN, World, cli, make_node, row, start_quiet

from estafet.relay.node import Node
from estafet.relay.store import StoreDB

N = 10_000
SEED = 20_241_127
LIMIT = 256


def fill(node: Node, rows: list[tuple[Any, ...]]) -> None:
    db = node.store.sync_db().db
    with db.atomic():
        db.conn.executemany(
            "INSERT INTO objects (id, kind, region, tps, election, created, raw, size, origin,"
            " received, state, revoked) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,0)",
            rows,
        )


def synthetic_rows(world: World, n: int) -> list[tuple[Any, ...]]:
    rnd = random.Random(SEED)
    codes = world.tps_codes(KECAMATAN)
    out = []
    for _ in range(n):
        tps = rnd.choice(codes)
        raw = rnd.randbytes(600)
        created = world.now - rnd.randrange(86_400)
        out.append((rnd.randbytes(32), "endorsement", tps, tps, "bupati", created, raw, len(raw),
                    "relayed", world.now))  # fmt: skip
    return out


async def run(quick: bool) -> dict[str, Any]:
    repeats = 1 if quick else 5
    world = World()
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-insync-"))
    a = make_node(world, tmp / "a", "insync-a")
    b = make_node(world, tmp / "b", "insync-b")
    rows = synthetic_rows(world, N)
    fill(a, rows)
    fill(b, rows)
    reports = []
    times = []
    try:
        await start_quiet(a)
        await start_quiet(b)
        url = f"http://127.0.0.1:{a.port}"
        first = await b.sync_now(url)  # the two nodes' own certificates cross once
        if not first.ok or first.pulled < 1:
            raise RuntimeError(f"first session failed: {first}")
        for _ in range(repeats):
            t0 = time.perf_counter()
            rep = await b.sync_now(url)
            times.append(time.perf_counter() - t0)
            if not rep.ok:
                raise RuntimeError(f"in-sync session failed: {rep}")
            reports.append(rep)
        held = len(await a.store.read(StoreDB.items, KECAMATAN))
    finally:
        await a.stop()
        await b.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    worst = max(r.reconcile_bytes for r in reports)
    rts = max(r.round_trips for r in reports)
    in_sync = all(r.in_sync for r in reports)
    baseline = 32 * held
    ok = in_sync and rts == 1 and worst <= LIMIT
    return {
        "rows": [
            row(
                "1",
                f"in sync, {held:,} objects, 2 nodes over HTTP",
                float(worst),
                "B",
                baseline=float(baseline),
                target=f"<= {LIMIT} B, 1 RT",
                ok=ok,
                quick=quick,
                note=f"{rts} round trip(s); session {statistics.median(times) * 1000:.1f} ms",
            ),
        ],
        "objects_in_scope": held,
        "reconcile_bytes": [r.reconcile_bytes for r in reports],
        "round_trips": [r.round_trips for r in reports],
        "in_sync": in_sync,
        "session_seconds": times,
        "first_session": {
            "reconcile_bytes": first.reconcile_bytes,
            "round_trips": first.round_trips,
            "pulled": first.pulled,
            "pushed": first.pushed,
        },
    }


def main(quick: bool) -> dict[str, Any]:
    return asyncio.run(run(quick))


if __name__ == "__main__":
    cli("insync", main, __doc__)
