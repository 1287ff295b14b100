"""Run every benchmark, print one summary table, write bench/results/summary.json.

Each bench runs in its own process (``python bench/<name>.py [--quick] --json ...``) so one that
crashes cannot take the others with it, and none inherits another's memory or threads. Figures
(see BENCHMARKS.md):

  1  reconciliation bytes for two stores in sync (protocol, 1k..1M; and two real nodes at 10k)
  2  reconciliation bytes and round trips for d differences among 10,000
  3  sync throughput of a village's results with photos, loopback and 40 Mbit/s
  4  CPU seconds per GB moved, both ends
  5  bytes re-sent after a link cut inside a photo
  6  central ingest rate (and Kotabaru / nationwide ingest time)
  7  an idle node daemon: CPU, wake-ups, peak RSS
  8  node run -> ready
  9  a village relay's disk after carrying a kecamatan
  10 a hostile 4 MiB body of nested empty arrays: RSS added and decode time
  11 the officer's phone app: first-load bytes, first render (CPU 4x slower), sign -> stored
  12 central ingest with 1, 2, 4 worker processes, PostgreSQL against SQLite; per core
  13 ingest with 10k/30k results held, the phone's cost to sign and store, the national evening
  14 /api/status and / latency under 8 clients vs a static file of the same size

``--quick`` is a smoke run (small sizes, one repeat, under ~90 s): it checks that every bench
still works and gives no verdicts. Exit status: 0, or 2 if a bench crashed (or, with
``--strict``, 1 if a full run missed a target).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import BENCH, RESULTS, machine, print_rows, row, verdict, write_json

BENCHES = [  # (name, script, figures it reports)
    ("reconcile", "bench_reconcile.py", ["1", "2"]),
    ("insync", "bench_insync.py", ["1"]),
    ("transfer", "bench_transfer.py", ["3", "4", "5"]),
    ("ingest", "bench_ingest.py", ["6"]),
    ("daemon", "bench_daemon.py", ["7", "8"]),
    ("store", "bench_store.py", ["9"]),
    ("decode", "bench_decode.py", ["10"]),
    ("app", "bench_app.py", ["11"]),
    ("workers", "bench_workers.py", ["12"]),
    ("scale", "bench_scale.py", ["13"]),
    ("dashboard", "bench_dashboard.py", ["14"]),
]
FIGURES = sorted({f for _, _, figs in BENCHES for f in figs}, key=int)


def reconcile_rows(report: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """bench_reconcile.py's JSON as summary rows (its own verdicts, plus the full-inventory
    bound where it has no negentropy figure to compare with)."""
    rows = []
    for r in report["figure1_in_sync"]:
        rows.append(row("1", f"in sync, N={r['n']:,} (protocol)", float(r["bytes"]), "B",
                        baseline=float(r["baseline_bytes"]), target="<= 256 B, 1 RT",
                        ok=bool(r["pass"]), quick=quick,
                        note=f"{r['round_trips']} round trip(s)"))  # fmt: skip
    for r in report["figure2_differences"]:
        model = r.get("negentropy_model_bytes")
        bound = model or r["baseline_bytes"]
        ok = r["round_trips"] <= r["max_round_trips"] and r["bytes"] <= bound
        target = f"<= {model:,} B (negentropy)" if model else "< full inventory"
        rows.append(row("2", f"d={r['d']} {r['distribution']} among 10,000", float(r["bytes"]),
                        "B", baseline=float(r["baseline_bytes"]), target=target, ok=ok,
                        quick=quick, note=f"{r['round_trips']} round trips "
                        f"(bound {r['max_round_trips']})"))  # fmt: skip
    return rows


def run_one(
    name: str, script: str, quick: bool, results: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = results / f"{name}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH / script), "--json", str(out)]
    if quick:
        argv.append("--quick")
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=BENCH.parent, check=False)
    seconds = time.perf_counter() - t0
    info: dict[str, Any] = {"script": script, "returncode": proc.returncode,
                            "seconds": round(seconds, 1), "json": str(out)}  # fmt: skip
    try:
        report = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        info["crashed"] = True
        info["error"] = f"no result JSON ({exc}); exit status {proc.returncode}"
        return info, []
    # bench_reconcile.py exits 1 when a target is missed: a verdict, not a crash
    info["crashed"] = proc.returncode not in (0, 1) or (
        proc.returncode == 1 and name != "reconcile"
    )
    rows = reconcile_rows(report, quick) if name == "reconcile" else report["rows"]
    for r in rows:
        r["bench"] = name
    return info, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small, one repeat")
    parser.add_argument("--only", default="", help="comma-separated bench names to run")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="directory for each bench's JSON and summary.json")  # fmt: skip
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {b[0] for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    results: Path = args.out.resolve()
    results.mkdir(parents=True, exist_ok=True)
    started = time.time()
    benches: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name, script, _figs in BENCHES:
        if only and name not in only:
            continue
        info, got = run_one(name, script, args.quick, results)
        benches[name] = info
        rows += got
    rows.sort(key=lambda r: (int(r["figure"].rstrip("abc")), r["figure"]))
    figures = {f: [r for r in rows if r["figure"].rstrip("abc") == f] for f in FIGURES}
    crashed = [n for n, i in benches.items() if i.get("crashed")]
    missed = [r for r in rows if r["pass"] is False]
    seconds = round(time.time() - started, 1)
    mode = "quick (smoke: no verdicts)" if args.quick else "full"
    print(f"\nSummary, {mode}, {seconds} s, {machine()['nproc']} cores, {machine()['cpu']}")
    print_rows(rows)
    for r in rows:
        if r["note"]:
            print(f"  [{r['figure']}] {r['name']}: {r['note']}")
    if crashed:
        print(f"\nCRASHED: {', '.join(crashed)}")
    if not args.quick:
        print(f"\n{len(rows) - len(missed)} PASS, {len(missed)} MISSED"
              + "".join(f"\n  MISSED [{r['figure']}] {r['name']}" for r in missed))  # fmt: skip
    summary = {
        "quick": args.quick,
        "started": started,
        "seconds": seconds,
        "machine": machine(),
        "benches": benches,
        "figures": figures,
        "rows": rows,
        "verdicts": {f"{r['figure']} {r['name']}": verdict(r) for r in rows},
        "crashed": crashed,
    }
    write_json(results / "summary.json", _finite(summary))
    print(f"wrote {results / 'summary.json'}")
    if crashed:
        return 2
    return 1 if (args.strict and missed) else 0


def _finite(v: Any) -> Any:
    """JSON has no inf/nan: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


if __name__ == "__main__":
    sys.exit(main())
