"""Figure 13: does ingest stay flat as central.db fills, what a phone pays, the national evening.

* 13a ``Central.ingest`` of all 1,102 Kotabaru results, in pushes of 512 as the central node
  takes them (``Central.batch``, group commit), on top of a ``central.db`` already holding N
  results (N = 10,000, 100,000 and 300,000; ``--held`` for other sizes, e.g. 1,000,000, which
  does not fit the bench's budget: building a held set costs ~0.4 ms per result). The
  held set is built fast, outside the timed part, by direct inserts of valid rows: each held
  result is really signed (by one of 64 chair keys, for synthetic TPS codes outside the
  manifest, so it never shares a slot with Kotabaru), its log entry chains to the previous one
  and its receipt is signed by the issuer, all in one transaction. Each repeat ingests into a
  fresh copy of the held database; sizes are interleaved repeat by repeat with the same run's
  bare Ed25519 baseline. Flat means the rate at the largest N is within 20% of the rate at the
  smallest. The central's RSS (this process's ``VmRSS`` after the ingest; the held set is not
  kept in memory) is reported with each size.
* 13b the phone: ``relay.local.submit_result_data`` (check the form, hash the photos, sign,
  store the result and its three 400 KB photos durably) with the node's own trust store, as
  the phone app calls it, against the bare Ed25519 signature of the same kind of content plus
  writing the three files with fsync; wall time and CPU time.
* 13c the national evening (about 435,000 TPS, two elections: 870,000 results; three elections
  where a governor, a regent and a mayor are elected: up to 1,305,000), projected from 13a's
  rate at the largest N measured, and the photos separately (three 400 KB photos per result,
  at the CPU-bound loopback rate of figure 3a, which this bench does not remeasure: the rate
  used is the one passed with ``--photo-mbps``, default the last full run's push median).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_ingest import BATCH, authority, bare_ed25519, central_only, make_results
from benchkit import (
    RESULTS,
    World,
    machine,
    print_rows,
    row,
    seeded_key,
    summarize,
    write_json,
)

from estafet.central.ingest import Central
from estafet.crypto.keys import SigningKey
from estafet.demo.forms import example_form
from estafet.protocol.form import parse_form
from estafet.protocol.objects import (
    LOG_GENESIS,
    ReceiptBody,
    ResultBody,
    encode_envelope,
    log_entry_hash,
    make_content,
    object_id,
    signing_message,
)
from estafet.protocol.photos import PhotoRef

NATION_TPS = 435_000
PHONE_PHOTO = 400_000
INGESTED = 1102  # every Kotabaru result, per size and repeat: three pushes (512, 512, 78)
DEFAULT_PHOTO_MBPS = 80.4  # figure 3a push median of the last full run (BENCHMARKS.md)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sign(
    kind: str, key: SigningKey, now: int, body: Any, chain: tuple[bytes, ...] = ()
) -> tuple[bytes, bytes]:
    content = make_content(kind, key.id, now, body)
    raw = encode_envelope(content, key.sign(signing_message(kind, content)), chain)
    return object_id(content), raw


def build_held(world: World, home: Path, n: int) -> None:
    """A central.db holding ``n`` accepted results with their log entries and receipts."""
    central = Central(home, authority(world, home))
    keys = [seeded_key(f"held-chair-{i}") for i in range(64)]
    issuer, issuer_cert = world.issuer, (world.issuer_cert.encode(),)
    forms = {e: parse_form(example_form(e, "9100000000000")) for e in ("bupati", "gubernur")}
    conn = central.db.conn  # type: ignore[attr-defined]
    now, prev, batch = world.now, LOG_GENESIS, 5000
    try:
        with central.db.write():
            for start in range(0, n, batch):
                objects, results, photos, log, receipts = [], [], [], [], []
                for i in range(start, min(n, start + batch)):
                    tps, election = f"91{i // 2:011d}", ("bupati", "gubernur")[i % 2]
                    key = keys[i % len(keys)]
                    form = dataclasses.replace(forms[election], tps=tps)
                    refs = tuple(PhotoRef(s, hashlib.sha256(b"%d/%d" % (i, s)).digest(),
                                          PHONE_PHOTO, "jpeg") for s in (1, 2, 3))  # fmt: skip
                    oid, raw = _sign("result", key, now, ResultBody(form, refs, ()))
                    digest = log_entry_hash(prev, i, oid, "accepted", "", now)
                    rbody = ReceiptBody(oid, "result", tps, election, "accepted", "", i, prev,
                                        digest)  # fmt: skip
                    rid, rraw = _sign("receipt", issuer, now, rbody, issuer_cert)
                    log.append((i, oid, "accepted", "", now, prev, digest))
                    prev = digest
                    objects.append((oid, "result", tps, election, len(raw), raw, now, 1,
                                    "accepted", ""))  # fmt: skip
                    results.append((oid, tps, election, 0, None, key.id, i % 64, issuer.id,
                                    f"held chair {i % 64}", now,
                                    json.dumps(dict(form.votes)), form.valid, form.invalid,
                                    "[]"))  # fmt: skip
                    photos += [(oid, p.sheet, p.sha256, p.size, p.type) for p in refs]
                    receipts.append((rid, oid, i, rraw))
                conn.executemany(
                    "INSERT INTO objects (id, kind, tps, election, size, raw, received, "
                    "verified, status, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    objects,
                )
                conn.executemany(
                    "INSERT INTO results (id, tps, election, revision, supersedes, signer, "
                    "signer_serial, issuer, signer_label, received, votes, valid, invalid, "
                    "warnings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    results,
                )
                conn.executemany(
                    "INSERT INTO photos (result, sheet, sha256, size, type) VALUES (?,?,?,?,?)",
                    photos,
                )
                conn.executemany(
                    "INSERT INTO log (idx, object, status, reason, server_time, prev, hash) "
                    "VALUES (?,?,?,?,?,?,?)",
                    log,
                )
                conn.executemany(
                    "INSERT INTO receipts (id, object, log_idx, raw) VALUES (?,?,?,?)", receipts
                )
    finally:
        central.close()


def ingest_rate(world: World, template: Path, raws: list[bytes], tmp: Path) -> tuple[float, float]:
    """Results/s of ``Central.ingest`` of ``raws`` into a copy of ``template``, in pushes of
    512 as the central node takes them (``Central.batch``: one commit each); RSS after."""
    return central_only(world, raws, tmp, template, batch=BATCH), _rss_mib()


def phone_cost(world: World, tmp: Path, runs: int) -> dict[str, list[float]]:
    """submit_result_data with three 400 KB photos vs a bare signature + three fsynced files."""
    from benchkit import make_node, photo

    from estafet.relay.local import submit_result_data

    codes = world.tps_codes("6302")
    node = make_node(world, tmp / "phone", "bench-phone-chair", role="kpps-chair",
                     scope=("6302",))  # fmt: skip
    key = seeded_key("bench-phone-chair")
    out: dict[str, list[float]] = {"wall": [], "cpu": [], "base_wall": [], "base_cpu": []}
    try:
        for i in range(runs):
            tps, election = codes[i % len(codes)], ("bupati", "gubernur")[i // len(codes) % 2]
            datas = [photo(f"phone-{i}-{s}", PHONE_PHOTO) for s in (1, 2, 3)]
            w0, c0 = time.perf_counter(), time.process_time()
            submit_result_data(node.store, key, world.root.public, example_form(election, tps),
                               datas, world.now, trust=node.replica.trust)  # fmt: skip
            out["wall"].append((time.perf_counter() - w0) * 1000)
            out["cpu"].append((time.process_time() - c0) * 1000)
            content = make_content(
                "result",
                key.id,
                world.now,
                ResultBody(
                    parse_form(example_form(election, tps)),
                    tuple(PhotoRef(s, bytes(32), PHONE_PHOTO, "jpeg") for s in (1, 2, 3)),
                    (),
                ),
            )
            w0, c0 = time.perf_counter(), time.process_time()
            key.sign(signing_message("result", content))
            for s, data in enumerate(datas, 1):
                path = tmp / f"base-{i}-{s}.jpg"
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            out["base_wall"].append((time.perf_counter() - w0) * 1000)
            out["base_cpu"].append((time.process_time() - c0) * 1000)
    finally:
        node.store.close()
    return out


def add_indexes(home: Path) -> None:
    """The experiment of ``--with-indexes``: the two indexes whose absence makes two queries
    per ingested object scan the whole table (``trust_marker`` on objects by kind and status,
    ``held_naming`` on results by supersedes). central.db now has both (migrations 3 and 5),
    so this changes nothing on a current schema; kept to reproduce the numbers measured before
    they were added."""
    conn = sqlite3.connect(home / "central.db")
    try:
        conn.execute("CREATE INDEX IF NOT EXISTS bench_kind ON objects (kind, status)")
        conn.execute("CREATE INDEX IF NOT EXISTS bench_supersedes ON results (supersedes)")
        conn.commit()
    finally:
        conn.close()


def main(quick: bool, held: list[int], photo_mbps: float, indexes: bool = False) -> dict[str, Any]:
    repeats = 1 if quick else 2
    world = World()
    raws = make_results(world, 50 if quick else INGESTED)
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-scale-"))
    runs: dict[str, list[float]] = {"bare": []}
    rss: dict[int, list[float]] = {n: [] for n in held}
    build_s: dict[int, float] = {}
    try:
        templates = {}
        for n in held:
            templates[n] = tmp / f"held-{n}"
            t0 = time.perf_counter()
            build_held(world, templates[n], n)
            if indexes:
                add_indexes(templates[n])
            build_s[n] = time.perf_counter() - t0
            print(f"  held {n:,}: built in {build_s[n]:.1f} s", flush=True)
        for _ in range(repeats):
            runs["bare"] += bare_ed25519(raws, 1)
            for n in held:
                rate, mib = ingest_rate(world, templates[n], raws, tmp)
                runs.setdefault(str(n), []).append(rate)
                rss[n].append(mib)
        phone = phone_cost(world, tmp, 3 if quick else 15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = {k: summarize(v) for k, v in runs.items()}
    bare = s["bare"]["median"]
    first = s[str(held[0])]["median"]
    rows = []
    for n in held:
        rate = s[str(n)]["median"]
        flat = rate / first
        rows.append(row("13a", f"Central.ingest with {n:,} results held (results/s)", rate,
                        "/s", baseline=bare, target=f"within 20% of {held[0]:,} held",
                        ok=flat >= 0.8, quick=quick, spread=s[str(n)]["spread"],
                        note=f"{flat:.2f}x the rate at {held[0]:,} held; RSS "
                             f"{max(rss[n]):.0f} MiB; held set built in "
                             f"{build_s[n]:.0f} s"))  # fmt: skip
    ps = {k: summarize(v) for k, v in phone.items()}
    for what, unit in (("wall", "ms"), ("cpu", "ms cpu")):
        m, b = ps[what]["median"], ps[f"base_{what}"]["median"]
        rows.append(row("13b", f"phone: sign + store one result, 3 x 400 KB photos ({what})",
                        m, unit, baseline=b, target="(info)", ok=None, quick=True,
                        spread=ps[what]["spread"],
                        note="baseline: bare signature + 3 files written with fsync"))  # fmt: skip
    rate = s[str(held[-1])]["median"]
    photo_bytes = 3 * PHONE_PHOTO
    for elections in (2, 3):
        n = NATION_TPS * elections
        rows.append(row("13c", f"national evening, {elections} elections: {n:,} results, "
                        "numbers (min)", n / rate / 60, "min", baseline=None, target="(info)",
                        ok=None, quick=True,
                        note=f"at {rate:.0f}/s measured with {held[-1]:,} held"))  # fmt: skip
        rows.append(row("13c", f"national evening, {elections} elections: photos, "
                        f"{n * photo_bytes / 1e12:.2f} TB (h)",
                        n * photo_bytes / (photo_mbps * 1e6) / 3600, "h", baseline=None,
                        target="(info)", ok=None, quick=True,
                        note=f"at {photo_mbps:.0f} MB/s (figure 3a push, one box, "
                             "loopback)"))  # fmt: skip
    return {"rows": rows, "rates": s, "rss_mib": rss, "build_seconds": build_s,
            "phone": ps, "held": held, "photo_mbps": photo_mbps, "with_indexes": indexes,
            "ingested": len(raws)}  # fmt: skip


def cli_main() -> None:
    """``bench.benchkit.cli`` plus ``--held`` and ``--photo-mbps``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small and fast")
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--held", default="", help="comma-separated held sizes (13a)")
    parser.add_argument(
        "--photo-mbps",
        type=float,
        default=DEFAULT_PHOTO_MBPS,
        help="photo rate for 13c, MB/s (figure 3a push)",
    )
    parser.add_argument("--with-indexes", action="store_true",
                        help="experiment: add the two missing indexes to the held "
                             "databases")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(x) for x in args.held.split(",") if x] or (
        [1000, 3000] if args.quick else [10_000, 100_000, 300_000]
    )
    t0 = time.perf_counter()
    report = main(args.quick, sizes, args.photo_mbps, args.with_indexes)
    report.update(benchmark="scale", quick=args.quick, machine=machine(),
                  seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    print_rows(report["rows"])
    for r in report["rows"]:
        if r["note"]:
            print(f"  [{r['figure']}] {r['name']}: {r['note']}")
    write_json(args.json, report)
    print(f"({report['seconds']} s) wrote {args.json}")


if __name__ == "__main__":
    cli_main()
