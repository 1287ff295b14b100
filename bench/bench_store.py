"""Figure 9: the disk a village relay's store takes after carrying a whole kecamatan.

A source relay holds all 76 TPS of kecamatan 630206 (Pulaulaut Utara, the largest in the
fixture) x 2 elections, 3 photos of 0.5 MB each (228 MB; quick: 4 TPS); an empty relay pulls
everything over loopback, as it would at the PPK office (sessions until it holds every photo: one
session fetches at most 200), and stops. Measured: the bytes its home directory takes on disk
(allocated blocks of every file: SQLite database, WAL, blobs, config, key), both while running
and after a clean stop (which checkpoints the WAL).
Baseline: the raw bytes it carries: the photos plus the signed objects it holds (results,
certificates, the manifest) as their raw envelope bytes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench_transfer import Village
from benchkit import World, cli, make_node, row, start_quiet

N_TPS = 76


def disk_usage(path: Path) -> tuple[int, int, int]:
    """(allocated bytes, apparent bytes, files) under ``path``."""
    blocks = apparent = files = 0
    for f in path.rglob("*"):
        if f.is_file() and not f.is_symlink():
            st = f.stat()
            blocks += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return blocks, apparent, files


async def run(quick: bool) -> dict[str, Any]:
    n_tps = 4 if quick else N_TPS
    world = World()
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-store-"))
    try:
        src = Village(world, tmp, n_tps)
        await start_quiet(src.node)
        relay = make_node(world, tmp / "relay", "village-relay")
        await start_quiet(relay)
        try:
            # one session fetches at most 200 photos (then the scheduler's next round goes on)
            blobs_in = pulled = sessions = 0
            while blobs_in < len(src.shas) and sessions < 10:
                rep = await relay.sync_now(f"http://127.0.0.1:{src.node.port}")
                if not rep.ok:
                    raise RuntimeError(f"session failed: {rep}")
                blobs_in += rep.blobs_in
                pulled += rep.pulled
                sessions += 1
            if blobs_in != len(src.shas):
                raise RuntimeError(f"the relay got {blobs_in} of {len(src.shas)} photos")

            def raw_sizes(sdb: Any) -> tuple[int, int, int]:
                objs = sdb.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM objects")
                n, size = objs.fetchone()
                blobs = sdb.db.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0]
                return int(n), int(size), int(blobs)

            n_objects, object_bytes, photo_bytes = await relay.store.read(raw_sizes)
            running = disk_usage(relay.home.path)
        finally:
            await relay.stop()
            await src.node.stop()
        stopped = disk_usage(relay.home.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw = object_bytes + photo_bytes
    ratio = stopped[0] / raw
    rows = [
        row("9", f"relay store after {n_tps} TPS, stopped (disk)", stopped[0] / 1e6, "MB",
            baseline=raw / 1e6, ratio=ratio, target="<= 1.1x", ok=ratio <= 1.1, quick=quick,
            note=f"{n_objects} objects, {len(src.shas)} photos"),
        row("9", f"relay store after {n_tps} TPS, running (WAL)", running[0] / 1e6, "MB",
            baseline=raw / 1e6, ratio=running[0] / raw, target="(info)", ok=None, quick=quick),
    ]  # fmt: skip
    return {
        "rows": rows,
        "tps": n_tps,
        "objects": n_objects,
        "object_bytes": object_bytes,
        "photos": len(src.shas),
        "photo_bytes": photo_bytes,
        "raw_bytes": raw,
        "disk_stopped": {"allocated": stopped[0], "apparent": stopped[1], "files": stopped[2]},
        "disk_running": {"allocated": running[0], "apparent": running[1], "files": running[2]},
        "sessions": {"count": sessions, "pulled": pulled, "blobs_in": blobs_in},
    }


def main(quick: bool) -> dict[str, Any]:
    return asyncio.run(run(quick))


if __name__ == "__main__":
    cli("store", main, __doc__)
