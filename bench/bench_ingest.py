"""Figure 6: the central server's ingest rate: results verified, stored, receipted and logged.

Signed results of every TPS of Kotabaru (551 TPS x 2 elections = 1,102; quick: 100), each by
its own KPPS chair, with the officer and issuer certificates attached as phones send them.
Each repeat starts from an empty ``central.db`` (and node store). Two paths are timed:

* ``Central.ingest`` alone: decode, verify (chain on first sight of an officer), store the raw
  object and the result row with its 3 photo hashes, settle the TPS slot, append to the hash-
  chained log, sign a receipt; one SQLite transaction (``synchronous=FULL``) per object;
* the same grouped as a push arrives (``Central.batch``, batches of 512: one transaction and one
  ``COMMIT`` per batch, group commit);
* the ``objects/put`` path of the central node (``accept_batch`` with the ingest hook, batches
  of 512 as a gateway pushes them, without HTTP): the above, plus the node's own verify-then-
  store of the object and of the receipt that travels back.

A third row adds the photo side: the same results through the ``objects/put`` path, then the
arrival of each result's 3 photos recorded (``Central.note_blob``, as the node calls it when a
blob is complete; the photo bytes themselves are figure 3's business).

Baseline: bare Ed25519 verification (``cryptography``) of the same results' signatures, keys
and signed messages prepared in advance. Also reported: ``TrustStore.verify`` of the same bytes
alone (Estafet's verifier: decode, canonical check, chain, form rules), for scale, and as a row
of its own for results whose chain the store already knows (target >= 0.6x bare verify). The time to
ingest all of Kotabaru is measured; the nationwide evening (435,000 TPS x 2 = 870,000 results)
is extrapolated from the measured rate, assuming it holds as central.db grows (it is not
measured at that size).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import World, cli, row, summarize
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from estafet.central.authority import Authority
from estafet.central.ingest import Central
from estafet.central.outbox import CentralSink
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import ResultBody, RevocationBody, decode_envelope, signing_message
from estafet.relay.accept import accept_batch
from estafet.relay.home import NodeConfig
from estafet.relay.node import Node

NATION_TPS = 435_000
KOTABARU_TPS = 551
BATCH = 512


def authority(world: World, home: Path) -> Authority:
    home.mkdir(parents=True, exist_ok=True)
    revocation = seal("revocation", RevocationBody(1, ()), world.root, world.now)
    trust = TrustStore(world.root.public)
    for env in (world.issuer_cert, world.manifest_env, revocation):
        trust.learn(trust.verify(env, world.now))
    return Authority(home=home, name=world.manifest.name, issuer_key=world.issuer,
                     issuer_cert=world.issuer_cert, manifest_env=world.manifest_env,
                     revocation_env=revocation, trust=trust)  # fmt: skip


def make_results(world: World, n: int) -> list[bytes]:
    codes = world.tps_codes("6302")
    out = []
    for i in range(n):
        tps = codes[(i // 2) % len(codes)]
        election = ("bupati", "gubernur")[i % 2]
        env, _ = world.result(tps, election, [])
        out.append(env.encode())
    return out


def bare_ed25519(raws: list[bytes], repeats: int) -> list[float]:
    prepared = []
    for raw in raws:
        env = decode_envelope(raw)
        cert = decode_envelope(env.chain[0]).body
        public = Ed25519PublicKey.from_public_bytes(cert.subject)  # type: ignore[union-attr]
        prepared.append((public, env.signature, signing_message(env.kind, env.content)))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for public, sig, msg in prepared:
            public.verify(sig, msg)
        rates.append(len(prepared) / (time.perf_counter() - t0))
    return rates


def trust_verify(world: World, raws: list[bytes]) -> tuple[float, float]:
    """Estafet's own verifier alone (decode, canonical check, chain, form rules): the rate on
    first sight of each officer's chain, then again with every chain known (the same store
    and bytes a second time: every result is still decoded and its signature checked)."""
    trust = TrustStore(world.root.public)
    for env in (world.issuer_cert, world.manifest_env):
        trust.learn(trust.verify(env, world.now))
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        for raw in raws:
            trust.verify(raw, world.now, allow_revoked=True)
        rates.append(len(raws) / (time.perf_counter() - t0))
    return rates[0], rates[1]


def central_only(
    world: World, raws: list[bytes], tmp: Path, held: Path | None = None, batch: int = 0
) -> float:
    """``Central.ingest`` of ``raws`` into a fresh home (a copy of ``held``'s, if given); with
    ``batch``, grouped as a push groups them (``Central.batch``: one commit per batch; the
    objects decoded in the timed part, as ``accept_batch`` decodes them)."""
    home = Path(tempfile.mkdtemp(dir=tmp))
    if held is not None:
        shutil.copytree(held, home, dirs_exist_ok=True)
        _flush(home)
    central = Central(home, authority(world, home))
    try:
        t0 = time.perf_counter()
        if batch:
            for i in range(0, len(raws), batch):
                chunk = raws[i : i + batch]
                envs = [decode_envelope(raw) for raw in chunk]
                with central.batch(envs, world.now):
                    for raw, env in zip(chunk, envs, strict=True):
                        done = central.ingest_verified(raw, world.now, env=env)
                        assert done.status == "accepted", done.status
        else:
            for raw in raws:
                _, status = central.ingest(raw, world.now)
                assert status == "accepted", status
        return len(raws) / (time.perf_counter() - t0)
    finally:
        central.close()
        shutil.rmtree(home, ignore_errors=True)


def _flush(home: Path) -> None:
    """fsync every file of a copied held set, outside the timed part: a server's central.db is
    on disk, not hundreds of MB of dirty page cache that the first checkpoint's fsync would
    have to write out (that made the rate at 300,000 held look a third lower than it is)."""
    for path in home.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def put_path(world: World, raws: list[bytes], tmp: Path, photos: bool) -> float:
    """What ``POST /v1/objects/put`` does on the central node, minus HTTP and msgpack."""
    home = Path(tempfile.mkdtemp(dir=tmp))
    auth = authority(world, home)
    central = Central(home, auth)
    config = NodeConfig(listen="127.0.0.1:0", mdns=False, beacon=False, scope="",
                        name="KPU central")  # fmt: skip
    sink = CentralSink(central, lambda app: None)
    node = Node(home / "node", config, auth.issuer_key, world.root.public, sink=sink)
    sdb = node.store.sync_db()
    for env in (auth.revocation_env, auth.issuer_cert, auth.manifest_env):
        accept_batch(sdb, node.trust, [env.encode()], peer="", origin="local", scope="",
                     now=world.now)  # fmt: skip
    shas = []
    if photos:
        for raw in raws:
            body = decode_envelope(raw).body
            assert isinstance(body, ResultBody)
            shas.append([p.sha256 for p in body.photos])
    try:
        t0 = time.perf_counter()
        for i in range(0, len(raws), BATCH):
            out = accept_batch(sdb, node.trust, raws[i : i + BATCH], peer="gateway",
                               origin="relayed", scope="", now=world.now,
                               sink=sink)  # fmt: skip
            assert all(o.status == "stored" and o.receipt for o in out), out[:1]
            if photos:
                for three in shas[i : i + BATCH]:
                    for sha in three:
                        sink.blob_arrived(sdb, sha, world.now)
        rate = len(raws) / (time.perf_counter() - t0)
        assert sdb.counts()["objects"] >= 2 * len(raws)
        return rate
    finally:
        node.store.close()
        central.close()
        shutil.rmtree(home, ignore_errors=True)


def main(quick: bool) -> dict[str, Any]:
    repeats = 1 if quick else 5
    n = 100 if quick else 2 * KOTABARU_TPS
    world = World()
    raws = make_results(world, n)
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-ingest-"))
    runs: dict[str, list[float]] = {
        "bare": [], "verify": [], "verify-known": [], "central": [], "central-batch": [],
        "put": [], "put+photos": []
    }  # fmt: skip
    try:
        for _ in range(repeats):  # interleaved; every run on fresh databases and trust stores
            runs["bare"] += bare_ed25519(raws, 1)
            first, known = trust_verify(world, raws)
            runs["verify"].append(first)
            runs["verify-known"].append(known)
            runs["central"].append(central_only(world, raws, tmp))
            runs["central-batch"].append(central_only(world, raws, tmp, batch=BATCH))
            runs["put"].append(put_path(world, raws, tmp, photos=False))
            runs["put+photos"].append(put_path(world, raws, tmp, photos=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = {k: summarize(v) for k, v in runs.items()}
    bare = s["bare"]["median"]
    rows = []
    for key, name in (("put", "central ingest, objects/put path"),
                      ("central", "central ingest, Central.ingest alone, one by one"),
                      ("central-batch", "central ingest, Central.ingest alone, batches of 512"),
                      ("put+photos", "objects/put path + 3 photo arrivals each")):  # fmt: skip
        rate = s[key]["median"]
        kotabaru = 2 * KOTABARU_TPS / rate
        nation = 2 * NATION_TPS / rate
        rows.append(row("6", f"{name} (results/s)", rate, "/s", baseline=bare,
                        target=">= 0.5x", ok=rate / bare >= 0.5, quick=quick,
                        spread=s[key]["spread"],
                        note=f"Kotabaru {kotabaru:.1f} s; nation ~{nation / 60:.0f} min "
                             f"(extrapolated); {rate / s['verify']['median']:.2f}x "
                             f"TrustStore.verify ({s['verify']['median']:.0f}/s)"))  # fmt: skip
    known = s["verify-known"]["median"]
    rows.append(row("6", "TrustStore.verify, chain known (results/s)", known, "/s",
                    baseline=bare, target=">= 0.6x", ok=known / bare >= 0.6, quick=quick,
                    spread=s["verify-known"]["spread"],
                    note=f"first sight of each chain {s['verify']['median']:.0f}/s "
                         f"({s['verify']['median'] / bare:.2f}x)"))  # fmt: skip
    return {
        "rows": rows,
        "results": n,
        "repeats": repeats,
        "rates": s,
        "kotabaru_results": 2 * KOTABARU_TPS,
        "kotabaru_seconds": {k: 2 * KOTABARU_TPS / s[k]["median"] for k in s},
        "nation_results": 2 * NATION_TPS,
        "nation_seconds_extrapolated": {k: 2 * NATION_TPS / s[k]["median"] for k in s},
        "bare_ed25519_per_s": bare,
        "trust_verify_per_s": s["verify"]["median"],
    }


if __name__ == "__main__":
    cli("ingest", main, __doc__)
