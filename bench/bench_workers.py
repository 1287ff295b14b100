"""Figure 12: central ingest with 1, 2 and 4 worker processes, PostgreSQL against SQLite.

Every signed result of Kotabaru (551 TPS x 2 elections = 1,102; quick: 200), each by its own
KPPS chair, split into disjoint slices, one per worker process (as gateways of different
kecamatan push to different workers behind the reverse proxy). Each worker is a real process
(fork) with its own ``Central`` on the shared database, taking its slice in pushes of 128 as the
central node does (``Central.batch``, group commit): the batch verified outside the lock, in
parallel with the other workers, then one serialised write (SQLite: ``BEGIN IMMEDIATE`` on one
file; PostgreSQL: the advisory chain lock) and one commit per batch. Timed from a common start
to the last worker's end; each repeat on a fresh database (PostgreSQL: a real server started for
the bench, tests/pgserver.py, fsync on).

Baseline: the 1-worker SQLite rate measured in the same run (figure 6's path). Per core: this
machine's cores are counted; with ``v`` the verification seconds per result (parallel) and ``w``
the serialised write seconds (``v`` measured alone, ``TrustStore.verify``; ``w = 1/r1 - v``), the
projection for ``c`` cores is ``1 / (v/c + w)``, and the national evening (435,000 TPS, 2.5
elections each on average: 1,087,500 results) takes ``1,087,500 / rate``. The rate is shown
per quarter of the run (first and last quarter) to check it stays flat as the tables grow.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_ingest import KOTABARU_TPS, authority, make_results, trust_verify
from benchkit import World, cli, row, summarize

from estafet.central.config import write_config
from estafet.central.ingest import Central
from estafet.protocol.objects import decode_envelope

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pgserver import PgServer, PgUnavailable

NATION_RESULTS = int(435_000 * 2.5)
WORKERS = (1, 2, 4)
BATCH = 128
"""Results per push (a gateway sends up to 512; smaller here so each worker's slice makes
several batches and the workers' writes interleave)."""
CORES_PROJECTED = (2, 4, 8, 16, 32)


def _worker(home: str, raws: list[bytes], now: int, go: Any, out: Any) -> None:
    world = World()
    central = Central(Path(home), authority(world, Path(home)))
    go.wait()
    stamps = []
    for i in range(0, len(raws), BATCH):
        chunk = raws[i : i + BATCH]
        envs = [decode_envelope(raw) for raw in chunk]
        with central.batch(envs, now):  # verified before the lock, then one write
            for raw, env in zip(chunk, envs, strict=True):
                done = central.ingest_verified(raw, now, env=env)
                assert done.status == "accepted", done.status
        stamps += [time.perf_counter()] * len(chunk)  # answered once the batch committed
    central.close()
    out.put(stamps)


def run(
    backend: str, workers: int, raws: list[bytes], tmp: Path, pg: PgServer | None
) -> dict[str, float]:
    world = World()
    home = Path(tempfile.mkdtemp(dir=tmp))
    url = None
    if backend == "postgresql":
        assert pg is not None
        url = pg.fresh()
        write_config(home, url)
    Central(home, authority(world, home)).close()  # schema first, outside the timing
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    slices = [raws[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=_worker, args=(str(home), s, world.now, go, out)) for s in slices]
    for p in procs:
        p.start()
    time.sleep(0.5)  # every worker has opened its database and waits
    t0 = time.perf_counter()
    go.set()
    stamps = sorted(t for _ in procs for t in out.get(timeout=600))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, p.exitcode
    check = Central(home, authority(world, home))
    check.verify_log()
    assert check.db.log_head()[0] == len(raws)
    check.close()
    if url is not None and pg is not None:
        pg.drop(url)
    shutil.rmtree(home, ignore_errors=True)
    n, q = len(stamps), len(stamps) // 4
    first = q / max(1e-6, stamps[q - 1] - t0)
    last = q / max(1e-6, stamps[-1] - stamps[n - q - 1])  # 0 when one batch spans the quarter
    return {"rate": n / (stamps[-1] - t0), "first_quarter": first, "last_quarter": last}


def main(quick: bool) -> dict[str, Any]:
    repeats = 1 if quick else 3
    n = 100 if quick else 2 * KOTABARU_TPS
    world = World()
    raws = make_results(world, n)
    verify_rates = [trust_verify(world, raws)[0] for _ in range(repeats)]  # first sight
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-workers-"))
    try:
        pg: PgServer | None = PgServer()
    except PgUnavailable as exc:
        print(f"PostgreSQL not available, its rows are left out: {exc}")
        pg = None
    backends = ["sqlite"] + (["postgresql"] if pg else [])
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for _ in range(repeats):
            for backend in backends:
                for w in WORKERS:
                    runs.setdefault(f"{backend}-{w}", []).append(run(backend, w, raws, tmp, pg))
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rates = {k: summarize([r["rate"] for r in v]) for k, v in runs.items()}
    base = rates["sqlite-1"]["median"]
    cores = os.cpu_count() or 1
    rows, projections = [], {}
    for backend in backends:
        r1 = rates[f"{backend}-1"]["median"]
        v = 1 / summarize(verify_rates)["median"]  # parallel: verification on each core
        w = max(1e-6, 1 / r1 - v)  # serial: the locked write, measured as the rest
        projections[backend] = {"verify_s": v, "write_s": w, **{
            str(c): 1 / (v / c + w) for c in CORES_PROJECTED}}  # fmt: skip
        for workers in WORKERS:
            key = f"{backend}-{workers}"
            rate = rates[key]["median"]
            flat = [r["last_quarter"] / r["first_quarter"] for r in runs[key]]
            per_core = rate / min(workers, cores)
            rows.append(row("12", f"{backend}, {workers} worker(s) (results/s)", rate, "/s",
                            baseline=base, target="recorded", ok=True, quick=quick,
                            spread=rates[key]["spread"],
                            note=f"{per_core:.0f}/s per core used; last/first quarter "
                                 f"{min(flat):.2f}; nation "
                                 f"{NATION_RESULTS / rate / 60:.0f} min"))  # fmt: skip
        proj = ", ".join(f"{c} cores {projections[backend][str(c)]:.0f}/s "
                         f"({NATION_RESULTS / projections[backend][str(c)] / 60:.0f} min)"
                         for c in CORES_PROJECTED)  # fmt: skip
        rows.append(row("12", f"{backend}: projected for 8 cores", projections[backend]["8"],
                        "/s", target="recorded", ok=True, quick=quick,
                        note=f"verify {v * 1e3:.2f} ms + serial write {w * 1e3:.2f} ms; "
                             f"{proj}"))  # fmt: skip
    return {
        "rows": rows,
        "results": n,
        "repeats": repeats,
        "cores": cores,
        "rates": rates,
        "quarters": runs,
        "projection": projections,
        "nation_results": NATION_RESULTS,
    }


if __name__ == "__main__":
    cli("workers", main, __doc__)
