"""The extra fields of the status view that the dashboards draw: pair names, progress over time,
and the list of TPS to chase. Pure functions of the view, the manifest and times handed in; the
central server (:mod:`estafet.central.views`) and a gateway's recap
(:mod:`estafet.relay.recap`) both call :func:`enrich`, so their pages show the same things.

Times are Unix seconds. Local time is WITA (UTC+8), where Kotabaru votes; polls close at 13:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from estafet.protocol.manifest import Manifest, desa_of, kecamatan_of

WITA = 8 * 3600
POLLS_CLOSE = 13 * 3600  # seconds after local midnight
STEP = 15 * 60
MAX_POINTS = 400
MAX_CHASE = 100


def timeline(times: Iterable[int]) -> dict[str, Any]:
    """TPS counted so far at each quarter hour since polls closed (13:00 WITA on the day of the
    first count; earlier counts start the axis at their own quarter hour). ``counts[i]`` is
    the number counted by ``start + i * step``; the step doubles when the span is long."""
    ts = sorted(times)
    if not ts:
        return {"start": None, "step": STEP, "counts": []}
    first = ts[0]
    close = (first + WITA) // 86400 * 86400 - WITA + POLLS_CLOSE
    start = close if first >= close else first - first % STEP
    step = STEP
    while (ts[-1] - start) // step + 2 > MAX_POINTS:
        step *= 2
    n = -(-(ts[-1] - start) // step) + 1
    counts, i = [], 0
    for k in range(n):
        edge = start + k * step
        while i < len(ts) and ts[i] <= edge:
            i += 1
        counts.append(i)
    return {"start": start, "step": step, "counts": counts}


def _not_counted(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """TPS code -> what is missing there, over every election of the view."""
    out: dict[str, dict[str, Any]] = {}
    for el in view["elections"]:
        for kec in el["kecamatan"]:
            for tps in kec["missing"]:
                out.setdefault(tps, {"missing": [], "conflict": []})["missing"].append(el["kind"])
    for c in view["conflicts"]:
        out.setdefault(c["tps"], {"missing": [], "conflict": []})["conflict"].append(c["election"])
    return out


def chase_list(
    view: Mapping[str, Any], manifest: Manifest, last_heard: Mapping[str, int]
) -> list[dict[str, Any]]:
    """TPS not fully counted, longest silent first (never heard from at the top)."""
    rows = []
    for tps, what in _not_counted(view).items():
        heard = last_heard.get(tps)
        rows.append(
            {
                "tps": tps,
                "desa": manifest.region_name(desa_of(tps)),
                "kecamatan": manifest.region_name(kecamatan_of(tps)),
                "missing": sorted(set(what["missing"])),
                "conflict": sorted(set(what["conflict"])),
                "last_heard": heard,
            }
        )
    rows.sort(key=lambda r: (r["last_heard"] is not None, r["last_heard"] or 0, r["tps"]))
    return rows


def enrich(
    view: dict[str, Any],
    manifest: Manifest,
    counted_at: Mapping[str, Iterable[int]],
    last_heard: Mapping[str, int],
) -> dict[str, Any]:
    """Add ``pairs`` and ``timeline`` to each election and ``chase`` / ``chase_total`` to the
    view (in place; returned for convenience). ``counted_at`` maps an election kind to the
    times its counted TPS were counted."""
    for el in view["elections"]:
        election = manifest.election(el["kind"])
        el["pairs"] = election.pair_names() if election else {}
        el["region_name"] = manifest.region_name(el["region"])
        el["timeline"] = timeline(counted_at.get(el["kind"], ()))
    chase = chase_list(view, manifest, last_heard)
    view["chase_total"] = len(chase)
    view["chase"] = chase[:MAX_CHASE]
    return view
