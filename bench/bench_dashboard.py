"""Figure 10: ``/api/status`` and ``/`` under load, against a static file of the same size.

A central server (real central.db, real ``Central.ingest``, the real aiohttp routes) holds a
full Kotabaru (551 TPS x 2 elections = 1,102 accepted results) and, in a full run, 100,000
results (a synthetic kabupaten of 50,000 TPS). Eight clients then request each path as fast as
they can; the baseline is a static file of the same byte size served by the same aiohttp
application (``web.FileResponse``). Both are warm: the status view is computed once per change of
the store (the cost of that one computation is reported in the note). Target: median latency
<= 2x the static file's.

Server and clients share one process (server loop in a thread, clients in another), so the
ratio compares like with like on the same CPU; absolute figures are per this machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from bench_ingest import authority
from benchkit import World, cli, row

from estafet.central.ingest import Central
from estafet.central.web import CACHE_KEY, add_central_routes
from estafet.protocol.manifest import Election, Manifest, Tps

CLIENTS = 8
CENTRAL = web.AppKey("bench.central", Central)
TARGET = 2.0


def synthetic_manifest(n_tps: int) -> Manifest:
    """A kabupaten (6302) of ``n_tps`` TPS in 99 kecamatan of 50 desa each."""
    codes = []
    for kec in range(1, 100):
        for desa in range(1, 51):
            for tps in range(1, 12):
                codes.append(f"6302{kec:02d}{2000 + desa:04d}{tps:03d}")
    tps = {c: Tps(c, 250) for c in codes[:n_tps]}
    regions = {f"6302{k:02d}": f"Kecamatan {k}" for k in range(1, 100)}
    elections = (Election("gubernur", "63", (1, 2)), Election("bupati", "6302", (1, 2, 3)))
    return Manifest("Bench kabupaten", 1, elections, tps, regions)


def fill(world: World, home: Path, n_results: int) -> tuple[Central, float]:
    """Ingest ``n_results`` results. Setup, not measured: without fsync per ingest (a real
    server keeps ``synchronous=FULL``, restored before the requests are timed)."""
    central = Central(home, authority(world, home))
    central.db.conn.execute("PRAGMA synchronous=OFF")  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    codes = sorted(world.manifest.tps)
    done = 0
    for tps in codes:
        for election in ("gubernur", "bupati"):
            if done >= n_results:
                break
            env, _ = world.result(tps, election, [])
            status = central.ingest(env.encode(), world.now)[1]
            assert status == "accepted", status
            done += 1
            if done % 10_000 == 0:
                print(f"  {done:,} results ingested", file=sys.stderr, flush=True)
    central.db.conn.execute("PRAGMA synchronous=FULL")  # type: ignore[attr-defined]
    return central, time.perf_counter() - t0


class Server:
    def __init__(self, central: Central, static: Path) -> None:
        self.central, self.static = central, static
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app[CENTRAL] = self.central
        add_central_routes(app, CENTRAL)

        async def static(_: web.Request) -> web.StreamResponse:
            return web.FileResponse(self.static)

        app.router.add_get("/static", static)
        self.app = app
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Server:
        self.thread.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


async def load(url: str, per_client: int) -> list[float]:
    """``CLIENTS`` concurrent clients, each making ``per_client`` sequential requests."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def client() -> list[float]:
            out = []
            for _ in range(per_client):
                t0 = time.perf_counter()
                async with http.get(url) as r:
                    await r.read()
                    assert r.status == 200, r.status
                out.append(time.perf_counter() - t0)
            return out

        runs = await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return [x for run in runs for x in run]


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def measure(n_results: int, per_client: int, quick: bool, tmp: Path) -> list[dict[str, Any]]:
    world = World() if n_results <= 1102 else World(manifest=synthetic_manifest(n_results // 2))
    home = Path(tempfile.mkdtemp(dir=tmp))
    central, fill_s = fill(world, home, n_results)
    rows = []
    try:
        with Server(central, home / "static.bin") as server:
            for path in ("/api/status", "/"):
                t0 = time.perf_counter()
                body = asyncio.run(load(server.url + path, 1))  # cold: one computation
                cold = time.perf_counter() - t0
                assert body
                size = len(asyncio.run(fetch(server.url + path)))
                (home / "static.bin").write_bytes(b"x" * size)
                asyncio.run(load(server.url + "/static", 2))  # warm the file cache
                lat = asyncio.run(load(server.url + path, per_client))
                base = asyncio.run(load(server.url + "/static", per_client))
                med, bmed = statistics.median(lat), statistics.median(base)
                computed = server.app[CACHE_KEY].computed
                rows.append(row("14", f"GET {path} at {n_results:,} results, 8 clients (median)",
                                med * 1000, "ms", baseline=bmed * 1000, target=f"<= {TARGET}x",
                                ok=med / bmed <= TARGET, quick=quick,
                                note=f"{size / 1000:.0f} kB; p95 {p95(lat) * 1000:.1f} ms vs "
                                     f"{p95(base) * 1000:.1f} ms static; first request "
                                     f"(computes) {cold * 1000:.0f} ms; computed {computed}x "
                                     f"for {CLIENTS * (per_client + 1)} requests; "
                                     f"filled in {fill_s:.0f} s"))  # fmt: skip
    finally:
        central.close()
        shutil.rmtree(home, ignore_errors=True)
    return rows


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return await r.read()


def main(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-dashboard-"))
    try:
        rows = measure(1102, 10 if quick else 100, quick, tmp)
        if not quick:
            large = int(os.environ.get("ESTAFET_BENCH_DASHBOARD_RESULTS", "100000"))
            rows += measure(large, 25, quick, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": rows, "clients": CLIENTS}


if __name__ == "__main__":
    cli("dashboard", main, __doc__)
