"""Benchmark of estafet.protocol.reconcile: bytes and round trips against the targets.

Figure 1: two sets already in sync, N = 1k .. 1M: one round trip, <= 256 bytes in total.
Figure 2: d differences among 10,000 items (timestamps ~one per 8.6 s over a day), either
recent (among the last hour's items) or uniformly spread, split both ways (even-numbered
differences only in A, the initiator; odd-numbered only in B): total body bytes must not
exceed the negentropy-v1 model figures, with O(log N) round trips.

Usage: python bench/bench_reconcile.py [--quick] [--json OUT]
Everything is seeded, so byte counts and round trips are deterministic; times (median of 3,
"cold" = building both Reconcilers from the item lists included, "warm" = reusing them) are
for information only. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from estafet.protocol.reconcile import Reconciler

SEED = 20_240_214
BASE_TS = 1_700_000_000
DAY = 86_400
HOUR = 3_600
SYNC_LIMIT_BYTES = 256
NEGENTROPY_MODEL = {(1, "recent"): 1_100, (1, "uniform"): 1_100, (100, "recent"): 13_600}
NEGENTROPY_MODEL[(100, "uniform")] = 42_000
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "reconcile.json"

Item = tuple[int, bytes]


def make_items(n: int, seed: int, span: int) -> list[Item]:
    r = random.Random(seed)
    ids: dict[bytes, None] = {}  # insertion-ordered, so runs do not depend on hash seeds
    while len(ids) < n:
        ids[r.randbytes(32)] = None
    return sorted((BASE_TS + r.randrange(span), i) for i in ids)


def exchange(init: Reconciler, resp: Reconciler) -> dict[str, Any]:
    """Run one session to completion; count body bytes in both directions."""
    out: bytes | None = init.initiate()
    up = down = rounds = 0
    have: list[bytes] = []
    need: list[bytes] = []
    while out is not None:
        up += len(out)
        reply = resp.respond(out)
        down += len(reply)
        rounds += 1
        out, h, n = init.reconcile(reply)
        have += h
        need += n
    return {
        "up": up,
        "down": down,
        "bytes": up + down,
        "rounds": rounds,
        "have": have,
        "need": need,
    }


def cold_exchange(items: list[Item]) -> dict[str, Any]:
    return exchange(Reconciler(items), Reconciler(items))


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_model(result: dict[str, Any], a: list[Item], b: list[Item]) -> None:
    ids_a = {i for _, i in a}
    ids_b = {i for _, i in b}
    have, need = result["have"], result["need"]
    if sorted(have) != sorted(ids_a - ids_b) or sorted(need) != sorted(ids_b - ids_a):
        raise SystemExit("reconciliation result does not match the set difference")


def figure1(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        items = make_items(n, SEED + n, max(DAY, 8 * n))
        a, b = Reconciler(items), Reconciler(list(items))
        result = exchange(a, b)
        check_model(result, items, items)
        cold = median_time(partial(cold_exchange, items), repeats)
        warm = median_time(partial(exchange, a, b), repeats)
        baseline = 32 * n
        ok = result["rounds"] == 1 and result["bytes"] <= SYNC_LIMIT_BYTES
        rows.append(
            {
                "n": n,
                "bytes": result["bytes"],
                "bytes_up": result["up"],
                "bytes_down": result["down"],
                "round_trips": result["rounds"],
                "baseline_bytes": baseline,
                "ratio": result["bytes"] / baseline,
                "target_bytes": SYNC_LIMIT_BYTES,
                "pass": ok,
                "seconds_cold": round(cold, 4),
                "seconds_warm": round(warm, 6),
            }
        )
    return rows


def diff_sets(n: int, d: int, dist: str, seed: int) -> tuple[list[Item], list[Item], list[Item]]:
    base = make_items(n, seed, DAY)
    r = random.Random(seed * 31 + d)
    if dist == "recent":
        cut = base[-1][0] - HOUR
        candidates = [k for k, item in enumerate(base) if item[0] >= cut]
        if len(candidates) < d:  # more differences than last-hour items: the latest d
            candidates = list(range(n - d, n))
    else:
        candidates = list(range(n))
    chosen = r.sample(candidates, d)
    only_a, only_b = set(chosen[0::2]), set(chosen[1::2])
    a = [item for k, item in enumerate(base) if k not in only_b]
    b = [item for k, item in enumerate(base) if k not in only_a]
    return base, a, b


def figure2(n: int, ds: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    max_rounds = math.ceil(math.log2(n))
    for d in ds:
        for dist in ("recent", "uniform"):
            _, a, b = diff_sets(n, d, dist, SEED + d)
            ra, rb = Reconciler(a), Reconciler(b)
            result = exchange(ra, rb)
            check_model(result, a, b)
            warm = median_time(partial(exchange, ra, rb), repeats)
            model = NEGENTROPY_MODEL.get((d, dist))
            ok = result["rounds"] <= max_rounds and (model is None or result["bytes"] <= model)
            rows.append(
                {
                    "d": d,
                    "distribution": dist,
                    "only_in_initiator": len(result["have"]),
                    "only_in_responder": len(result["need"]),
                    "bytes": result["bytes"],
                    "bytes_up": result["up"],
                    "bytes_down": result["down"],
                    "round_trips": result["rounds"],
                    "max_round_trips": max_rounds,
                    "baseline_bytes": 32 * n,
                    "ratio": result["bytes"] / (32 * n),
                    "negentropy_model_bytes": model,
                    "pass": ok,
                    "seconds_warm": round(warm, 5),
                }
            )
    return rows


def print_tables(fig1: list[dict[str, Any]], fig2: list[dict[str, Any]], n2: int) -> None:
    print("Figure 1: sets in sync (target: 1 round trip, <= 256 bytes in total)")
    print(f"{'N':>9} {'bytes':>6} {'RTs':>4} {'baseline':>11} {'ratio':>9} {'cold s':>7} {'ok':>5}")
    for r in fig1:
        print(
            f"{r['n']:>9,} {r['bytes']:>6} {r['round_trips']:>4} {r['baseline_bytes']:>11,} "
            f"{r['ratio']:>9.2e} {r['seconds_cold']:>7.3f} {'PASS' if r['pass'] else 'FAIL':>5}"
        )
    print()
    print(f"Figure 2: d differences among {n2:,} items (split both ways)")
    head = f"{'d':>5} {'dist':>8} {'A/B':>9} {'bytes':>8} {'RTs':>4} {'baseline':>9} "
    print(head + f"{'ratio':>6} {'negentropy':>10} {'ok':>5}")
    for r in fig2:
        model = r["negentropy_model_bytes"]
        split = f"{r['only_in_initiator']}/{r['only_in_responder']}"
        print(
            f"{r['d']:>5} {r['distribution']:>8} {split:>9} {r['bytes']:>8,} "
            f"{r['round_trips']:>4} {r['baseline_bytes']:>9,} {r['ratio']:>6.3f} "
            f"{(f'{model:,}' if model else '-'):>10} {'PASS' if r['pass'] else 'FAIL':>5}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small sizes only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    ds = [1, 100] if args.quick else [1, 10, 100, 1000]
    repeats = 1 if args.quick else 3
    n2 = 10_000
    t0 = time.perf_counter()
    fig1 = figure1(sizes, repeats)
    fig2 = figure2(n2, ds, repeats)
    print_tables(fig1, fig2, n2)
    all_pass = all(r["pass"] for r in fig1 + fig2)
    elapsed = time.perf_counter() - t0
    print(f"\n{'ALL PASS' if all_pass else 'SOME TARGETS MISSED'} ({elapsed:.1f} s)")
    report = {
        "benchmark": "reconcile",
        "quick": args.quick,
        "seed": SEED,
        "python": platform.python_version(),
        "figure1_in_sync": fig1,
        "figure2_differences": fig2,
        "all_pass": all_pass,
        "seconds_total": round(elapsed, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
