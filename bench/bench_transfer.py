"""Figures 3, 4 and 5: moving a village's results with their photos between two real nodes.

Two in-process nodes on loopback (real aiohttp servers, SQLite stores, blob files, their
schedulers stopped so only the measured session runs). The source relay holds a village's
results as phones left them: 20 TPS x 2 elections, 3 photos of 0.5 MB each (quick: 2 TPS).

* Figure 3, throughput of one sync session that moves everything (objects verified and stored,
  photos appended, fsynced, re-hashed and renamed into place), in both directions: **pull**
  (the empty node dials the full one: ``objects/get`` and ``GET /v1/blobs`` with Range) and
  **push** (the full node dials the empty one: ``objects/put`` and ``PUT /v1/blobs``);
  (a) over loopback, (b) through one 40 Mbit/s link: ``bench/shaper.py`` in its own process, a
  TCP proxy whose one token bucket per direction (depth 8 KiB) all connections share, reading
  only as fast as it forwards. Baseline, on the same path in the same run: a plain aiohttp client
  streaming the same files (photos + one file of the signed objects) one after another into
  files with fsync (GET for pull, PUT to a plain aiohttp handler for push).
* Figure 4, CPU seconds (user + system, ``getrusage`` of this process, which runs both ends)
  per GB moved in the loopback sessions. Baseline: raw aiohttp streaming of the same files with
  SHA-256 of every byte, nothing written.
* Figure 5, photo bytes sent twice when the link is cut at a random point of a photo and the
  transfer then resumes (pull: the cut is in the response body; push: in the request body). The
  proxy forwards exactly ``header + r`` bytes then closes the connection (``cut_mode=close``);
  ``r`` is uniform in [16 KiB, photo size). Re-sent = ``r`` - bytes the receiver kept + bytes a
  resume answered with 200 instead of 206 (``blob_bytes_resent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from benchkit import (
    BENCH,
    KECAMATAN,
    PHOTO_BYTES,
    ROOT,
    World,
    cli,
    make_node,
    photo,
    row,
    start_quiet,
    summarize,
)

from estafet.relay.accept import accept_batch
from estafet.relay.node import Node
from estafet.relay.store import StoreDB

RATE = 40_000_000 / 8  # 40 Mbit/s in bytes per second
READ = 256 * 1024
SEED = 20_241_127
MIN_CUT = 16 * 1024  # cut points below this could also hit the session's small responses


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --- the source relay ------------------------------------------------------------------------
class Village:
    """A relay holding ``n_tps`` TPS' results and photos, as if their phones had pushed them."""

    def __init__(self, world: World, tmp: Path, n_tps: int, photo_size: int = PHOTO_BYTES,
                 label: str = "relay-source") -> None:  # fmt: skip
        self.world = world
        self.node = make_node(world, tmp / "source", label)
        sdb = self.node.store.sync_db()
        self.raws: list[bytes] = []
        self.shas: list[bytes] = []
        for tps in world.tps_codes(KECAMATAN)[:n_tps]:
            for election in ("bupati", "gubernur"):
                photos = [photo(f"{tps}-{election}-{i}", photo_size) for i in (1, 2, 3)]
                env, _ = world.result(tps, election, photos)
                for data in photos:
                    sha = hashlib.sha256(data).digest()
                    self.node.store.blobs.write_whole(sha, data)
                    sdb.add_blob(sha, len(data), world.now)
                    self.shas.append(sha)
                self.raws.append(env.encode())
        outcomes = accept_batch(sdb, self.node.trust, self.raws, peer="phones", origin="relayed",
                                scope=self.node.scope, now=world.now)  # fmt: skip
        assert all(o.status == "stored" for o in outcomes), outcomes[:1]
        self.photo_bytes = len(self.shas) * photo_size
        self.object_bytes = sum(len(r) for r in self.raws)
        self.total = self.photo_bytes + self.object_bytes
        # the baseline moves the same bytes: every photo file and one file of the objects
        self.objects_file = tmp / "objects.bin"
        self.objects_file.write_bytes(b"".join(self.raws))
        self.files = {sha.hex(): self.node.store.blobs.path(sha) for sha in self.shas}
        self.files["objects"] = self.objects_file


# --- baseline: plain aiohttp -------------------------------------------------------------------
class PlainServer:
    """GET serves a file; PUT streams the body into a file and fsyncs it. Nothing else."""

    def __init__(self, files: dict[str, Path], upload_dir: Path) -> None:
        self.files = files
        self.upload_dir = upload_dir
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def get(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.files[request.match_info["name"]])

    async def put(self, request: web.Request) -> web.Response:
        path = self.upload_dir / request.match_info["name"]
        with path.open("wb") as fh:
            while chunk := await request.content.read(READ):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/f/{name}", self.get)
        app.router.add_put("/f/{name}", self.put)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def plain_download(base: str, files: dict[str, Path], into: Path, sha: bool) -> int:
    """Fetch every file in turn; into files with fsync, or (``sha``) hash and drop the bytes."""
    n = 0
    async with aiohttp.ClientSession() as http:
        for name in files:
            async with http.get(f"{base}/f/{name}") as resp:
                resp.raise_for_status()
                if sha:
                    h = hashlib.sha256()
                    while chunk := await resp.content.read(READ):
                        h.update(chunk)
                        n += len(chunk)
                    h.digest()
                    continue
                with (into / name).open("wb") as fh:
                    while chunk := await resp.content.read(READ):
                        fh.write(chunk)
                        n += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
    return n


async def plain_upload(base: str, files: dict[str, Path]) -> int:
    n = 0
    async with aiohttp.ClientSession() as http:
        for name, path in files.items():
            with path.open("rb") as fh:
                async with http.put(f"{base}/f/{name}", data=fh) as resp:
                    resp.raise_for_status()
                    await resp.read()
            n += path.stat().st_size
    return n


# --- the rate-limiting (or cutting) proxy, in its own process ---------------------------------
class ProxyProc:
    """``tests/net/proxy.py`` (cuts) in its own process, or with ``link`` the shaper that makes
    one 40 Mbit/s link shared by every connection (``bench/shaper.py``)."""

    def __init__(self, target: int, *args: str, link: bool = False) -> None:
        self.target = target
        self.args = args
        self.link = link
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> ProxyProc:
        run = [str(BENCH / "shaper.py"), "--rate", str(RATE)] if self.link else [
            "-m", "tests.net.proxy", "--listen", "127.0.0.1:0"]  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *run, "--target", f"127.0.0.1:{self.target}", *self.args,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 20)
        parts = line.decode().split()
        if not parts or parts[0] != "READY":
            raise RuntimeError(f"proxy did not start: {line!r}")
        self.port = int(parts[2])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.communicate(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


# --- estafet sessions ------------------------------------------------------------------------
class Destinations:
    """Fresh, empty, enrolled relays of the same kecamatan, one per measured session."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.world = world
        self.tmp = tmp
        self.count = 0

    async def new(self) -> Node:
        self.count += 1
        node = make_node(self.world, self.tmp / f"dest-{self.count}", f"relay-dest-{self.count}")
        await start_quiet(node)
        return node

    async def done(self, node: Node) -> None:
        await node.stop()
        shutil.rmtree(node.home.path, ignore_errors=True)


def _check(rep: Any, n_blobs: int, attr: str) -> None:
    if not rep.ok or getattr(rep, attr) != n_blobs:
        raise RuntimeError(f"session incomplete: {rep}")


async def estafet_pull(src: Village, dests: Destinations, port: int) -> tuple[float, float]:
    dest = await dests.new()
    try:
        t0, c0 = time.perf_counter(), cpu()
        rep = await dest.sync_now(f"http://127.0.0.1:{port}")
        t1, c1 = time.perf_counter(), cpu()
        _check(rep, len(src.shas), "blobs_in")
        return t1 - t0, c1 - c0
    finally:
        await dests.done(dest)


async def estafet_push(src: Village, dests: Destinations, via: int | None) -> tuple[float, float]:
    dest = await dests.new()
    try:
        async with contextlib.AsyncExitStack() as stack:
            port = dest.port
            if via is not None:
                proxy = await stack.enter_async_context(ProxyProc(dest.port, link=True))
                port = proxy.port
            t0, c0 = time.perf_counter(), cpu()
            rep = await src.node.sync_now(f"http://127.0.0.1:{port}")
            t1, c1 = time.perf_counter(), cpu()
        _check(rep, len(src.shas), "blobs_out")
        return t1 - t0, c1 - c0
    finally:
        await dests.done(dest)


async def baseline_pull(
    src: Village, port: int, tmp: Path, sha: bool = False
) -> tuple[float, float]:
    into = Path(tempfile.mkdtemp(dir=tmp))
    try:
        t0, c0 = time.perf_counter(), cpu()
        n = await plain_download(f"http://127.0.0.1:{port}", src.files, into, sha)
        t1, c1 = time.perf_counter(), cpu()
        assert n == src.total, (n, src.total)
        return t1 - t0, c1 - c0
    finally:
        shutil.rmtree(into, ignore_errors=True)


async def baseline_push(src: Village, plain: PlainServer, via: bool) -> tuple[float, float]:
    async with contextlib.AsyncExitStack() as stack:
        port = plain.port
        if via:
            proxy = await stack.enter_async_context(ProxyProc(plain.port, link=True))
            port = proxy.port
        t0, c0 = time.perf_counter(), cpu()
        n = await plain_upload(f"http://127.0.0.1:{port}", src.files)
        t1, c1 = time.perf_counter(), cpu()
    for f in plain.upload_dir.iterdir():
        f.unlink()
    assert n == src.total
    return t1 - t0, c1 - c0


# --- figure 5: a cut at a random point of a photo -------------------------------------------
async def header_length(port: int, request: bytes) -> int:
    """Bytes of the response head to a raw request (what precedes the body on the wire)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return len(head)


def _fresh_http(node: Node) -> None:
    """One connection per request for this node's client, so the proxy's byte offset of the
    cut counts from the start of the photo's own request (bench-only)."""
    assert node.http is not None
    old = node.http
    node.http = aiohttp.ClientSession(
        timeout=old.timeout, headers=dict(old.headers),
        connector=aiohttp.TCPConnector(force_close=True),
    )  # fmt: skip
    asyncio.get_running_loop().create_task(old.close())


async def cut_pull(world: World, tmp: Path, dests: Destinations, rnd: random.Random,
                   size: int) -> dict[str, Any]:  # fmt: skip
    """The receiver pulls one result's photos from a relay; the link dies inside photo 1."""
    src = Village(world, Path(tempfile.mkdtemp(dir=tmp)), 1, size, label=f"cut-{dests.count}")
    await start_quiet(src.node)
    dest = await dests.new()
    try:
        sdb = dest.store.sync_db()
        accept_batch(sdb, dest.trust, src.raws, peer="x", origin="relayed", scope=dest.scope,
                     now=world.now)  # fmt: skip
        first = (await dest.store.read(StoreDB.missing_photos, 10))[0][0]
        # as the force_close client asks, so the answer has the same head ("Connection: close")
        request = (f"GET /v1/blobs/{first.hex()} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: close\r\n\r\n")  # fmt: skip
        head = await header_length(src.node.port, request.encode())
        r = rnd.randrange(MIN_CUT, size)
        _fresh_http(dest)
        async with ProxyProc(src.node.port, "--cut-after", str(head + r), "--cut-dir", "down",
                             "--cut-mode", "close") as proxy:  # fmt: skip
            rep = await dest.sync_now(f"http://127.0.0.1:{proxy.port}")
        assert not rep.ok, "the cut did not happen"
        kept = dest.store.blobs.partial_size(first)
        rep2 = await dest.sync_now(f"http://127.0.0.1:{src.node.port}")
        _check(rep2, len(src.shas), "blobs_in")
        resent = (r - kept) + dest.stats.blob_bytes_resent
        return {"cut_at": r, "kept": kept, "resent": resent, "error": rep.error[:120]}
    finally:
        await dests.done(dest)
        await src.node.stop()


async def cut_push(world: World, tmp: Path, dests: Destinations, rnd: random.Random,
                   size: int) -> dict[str, Any]:  # fmt: skip
    """A phone-like node pushes one result's photos; the link dies inside photo 1's upload."""
    src = Village(world, Path(tempfile.mkdtemp(dir=tmp)), 1, size, label=f"cut-{dests.count}")
    await start_quiet(src.node)
    _fresh_http(src.node)
    try:
        # the request head of the upload, measured on a dry run through a plain proxy
        dry = await dests.new()
        async with ProxyProc(dry.port) as proxy:
            rep = await src.node.sync_now(f"http://127.0.0.1:{proxy.port}")
            _check(rep, len(src.shas), "blobs_out")
            stats = await _proxy_stats(proxy)
        await dests.done(dry)
        head = max(c["up"] for c in stats["conns"]) - size
        dest = await dests.new()
        try:
            r = rnd.randrange(MIN_CUT, size)
            sent0 = src.node.stats.blob_bytes_out
            async with ProxyProc(dest.port, "--cut-after", str(head + r), "--cut-dir", "up",
                                 "--cut-mode", "close") as proxy:  # fmt: skip
                rep = await src.node.sync_now(f"http://127.0.0.1:{proxy.port}")
            await asyncio.sleep(0.2)  # let the receiver's handler see the cut and keep its bytes
            want = await dest.store.read(StoreDB.missing_photos, 10)
            # an upload's partial file is its uploader's own (``<sha>.<key id>.part``)
            partial = {sha: _partials(dest, sha) for sha, _ in want}
            kept = max(partial.values(), default=0)
            rep2 = await src.node.sync_now(f"http://127.0.0.1:{dest.port}")
            _check(rep2, len(src.shas) - rep.blobs_out, "blobs_out")
            sent = src.node.stats.blob_bytes_out - sent0
            resent = (r - kept) if not rep.ok else 0
            return {"cut_at": r, "kept": kept, "resent": resent, "source_read": sent,
                    "error": rep.error[:120]}  # fmt: skip
        finally:
            await dests.done(dest)
    finally:
        await src.node.stop()


def _partials(node: Node, sha: bytes) -> int:
    """Bytes held of ``sha`` in partial files: ours and every uploader's."""
    return sum(p.stat().st_size for p in node.store.blobs.partial_dir.glob(f"{sha.hex()}*.part"))


async def _proxy_stats(proxy: ProxyProc) -> dict[str, Any]:
    import json

    assert proxy.proc is not None and proxy.proc.stdout is not None
    proxy.proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proxy.proc.communicate(), 10)
    for line in out.decode().splitlines():
        if line.startswith("STATS "):
            return dict(json.loads(line[6:]))
    raise RuntimeError("proxy printed no STATS")


# --- the whole bench -------------------------------------------------------------------------
async def run(quick: bool) -> dict[str, Any]:
    repeats = 1 if quick else 5
    n_tps = 2 if quick else 20
    cuts = 1 if quick else 5
    world = World()
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-transfer-"))
    src = Village(world, tmp, n_tps)
    await start_quiet(src.node)
    plain = PlainServer(src.files, tmp / "uploads")
    plain.upload_dir.mkdir()
    await plain.start()
    dests = Destinations(world, tmp)
    t: dict[str, list[float]] = {}
    c: dict[str, list[float]] = {}

    def add(key: str, tc: tuple[float, float]) -> None:
        t.setdefault(key, []).append(tc[0])
        c.setdefault(key, []).append(tc[1])

    try:
        for _ in range(repeats):  # interleaved, so a noisy minute hurts both sides alike
            add("plain-get", await baseline_pull(src, plain.port, tmp))
            add("pull", await estafet_pull(src, dests, src.node.port))
            add("plain-sha", await baseline_pull(src, plain.port, tmp, sha=True))
            add("plain-put", await baseline_push(src, plain, via=False))
            add("push", await estafet_push(src, dests, None))
        for _ in range(repeats):
            async with ProxyProc(plain.port, link=True) as p:
                add("plain-get-40", await baseline_pull(src, p.port, tmp))
            async with ProxyProc(src.node.port, link=True) as p:
                add("pull-40", await estafet_pull(src, dests, p.port))
            add("plain-put-40", await baseline_push(src, plain, via=True))
            add("push-40", await estafet_push(src, dests, RATE))
        rnd = random.Random(SEED)
        cut_size = PHOTO_BYTES
        cut_rows = [await cut_pull(world, tmp, dests, rnd, cut_size) for _ in range(cuts)]
        push_cuts = [await cut_push(world, tmp, dests, rnd, cut_size) for _ in range(cuts)]
    finally:
        await plain.stop()
        await src.node.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    mb = src.total / 1e6
    tp = {k: summarize([mb / s for s in v]) for k, v in t.items()}
    gb = src.total / 1e9
    cpu_gb = {k: summarize([x / gb for x in v]) for k, v in c.items()}
    rows = []
    for fig, key, base, target, name in (
        ("3a", "pull", "plain-get", 0.6, "sync pull, loopback"),
        ("3a", "push", "plain-put", 0.6, "sync push, loopback"),
        ("3b", "pull-40", "plain-get-40", 0.95, "sync pull, 40 Mbit/s proxy"),
        ("3b", "push-40", "plain-put-40", 0.95, "sync push, 40 Mbit/s proxy"),
    ):
        ratio = tp[key]["median"] / tp[base]["median"]
        rows.append(row(fig, f"{name} ({len(src.shas)} photos, {mb:.1f} MB)",
                        tp[key]["median"], "MB/s", baseline=tp[base]["median"], ratio=ratio,
                        target=f">= {target}x", ok=ratio >= target, quick=quick,
                        spread=tp[key]["spread"]))  # fmt: skip
    for key, plain_key in (("pull", "plain-get"), ("push", "plain-put")):
        ratio = cpu_gb[key]["median"] / cpu_gb["plain-sha"]["median"]
        durable = cpu_gb[key]["median"] / cpu_gb[plain_key]["median"]
        rows.append(
            row(
                "4",
                f"CPU s per GB, both ends, {key}",
                cpu_gb[key]["median"],
                "cpu-s/GB",
                baseline=cpu_gb["plain-sha"]["median"],
                ratio=ratio,
                target="<= 1.25x",
                ok=ratio <= 1.25,
                quick=quick,
                spread=cpu_gb[key]["spread"],
                note=f"{durable:.2f}x a plain {plain_key.split('-')[1].upper()} into files "
                f"with fsync ({cpu_gb[plain_key]['median']:.2f} cpu-s/GB)",
            )
        )
    for name, cut_list in (("pull", cut_rows), ("push", push_cuts)):
        worst = max(x["resent"] for x in cut_list)
        med = summarize([float(x["resent"]) for x in cut_list])
        rows.append(row("5", f"bytes re-sent after a cut, {name} (max of {len(cut_list)})",
                        float(worst), "B", baseline=0.0, ratio=None, target="<= 65,536 B",
                        ok=worst <= 65_536, quick=quick, spread=None,
                        note=f"median {med['median']:.0f} B"))  # fmt: skip
    return {
        "rows": rows,
        "bytes_moved": src.total,
        "photos": len(src.shas),
        "objects": len(src.raws),
        "throughput_mb_s": tp,
        "cpu_s_per_gb": cpu_gb,
        "cuts_pull": cut_rows,
        "cuts_push": push_cuts,
        "repeats": repeats,
        "proxy_rate_bytes_s": RATE,
    }


def main(quick: bool) -> dict[str, Any]:
    return asyncio.run(run(quick))


if __name__ == "__main__":
    cli("transfer", main, __doc__)
