"""The dashboards' data shaping (pages/model.py) and what the overview and TPS pages draw from
it: quarter hours since polls closed, the chase order, pair names, links only where TPS pages
exist, the objections column only when the view has the field, and escaping everywhere."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from estafet.pages.cache import snapshot
from estafet.pages.charts import progress_chart
from estafet.pages.html import iso, wita
from estafet.pages.model import MAX_CHASE, STEP, chase_list, enrich, timeline
from estafet.pages.overview import render_dashboard
from estafet.pages.tps import render_tps
from estafet.protocol.tally import progress
from tests.kit import NOW, TPS_A, kotabaru_manifest

CLOSE = NOW + 5 * 3600  # 2024-11-27 13:00 WITA
HOSTILE = '<img src=x onerror="alert(1)">'


def test_times_are_wita_and_iso() -> None:
    assert wita(CLOSE) == "13:00 WITA" and wita(CLOSE, True) == "27-11-2024 13:00 WITA"
    assert iso(CLOSE) == "2024-11-27T13:00:00+08:00" and wita(None) == "-"


def test_timeline_counts_per_quarter_hour_since_polls_closed() -> None:
    tl = timeline([CLOSE + 60, CLOSE + 16 * 60, CLOSE + 17 * 60, CLOSE + 3600])
    assert tl["start"] == CLOSE and tl["step"] == STEP
    assert tl["counts"] == [0, 1, 3, 3, 4]
    early = timeline([CLOSE - 7 * 60, CLOSE + 60])  # a count before 13:00 starts the axis there
    assert early["start"] == CLOSE - 15 * 60 and early["counts"] == [0, 1, 2]
    assert timeline([]) == {"start": None, "step": STEP, "counts": []}
    week = timeline([CLOSE, CLOSE + 14 * 86400])  # long spans widen the step, bounded points
    assert len(week["counts"]) <= 400 and week["counts"][-1] == 2


def _view(last_heard: dict[str, int]) -> dict[str, Any]:
    base = kotabaru_manifest()
    pairs = {"gubernur": ("A & B", HOSTILE), "bupati": ("C", "D", "E")}
    m = dataclasses.replace(
        base, elections=tuple(dataclasses.replace(e, pairs=pairs[e.kind]) for e in base.elections)
    )
    view = progress(m, [], lambda _h: False)
    view.update(name=HOSTILE, revoked_results=[], log={"length": 0, "head": "00"})
    return enrich(view, m, {}, last_heard)


def test_chase_puts_the_never_heard_first_then_the_longest_silent() -> None:
    m = kotabaru_manifest()
    view = _view({})
    rows = chase_list(view, m, {TPS_A: CLOSE + 100, "6302142001002": CLOSE + 50})
    assert len(rows) == 551 and view["chase_total"] == 551 and len(view["chase"]) == MAX_CHASE
    assert all(r["last_heard"] is None for r in rows[:-2])
    assert [r["tps"] for r in rows[-2:]] == ["6302142001002", TPS_A]  # silent longest first
    assert rows[-1]["missing"] == ["bupati", "gubernur"] and rows[-1]["kecamatan"] == "Hampang"
    assert view["elections"][1]["pairs"] == {"1": "C", "2": "D", "3": "E"}
    heard = chase_list(view, m, dict.fromkeys(m.tps, CLOSE))
    assert [r["tps"] for r in heard] == sorted(m.tps)  # ties broken by code


def test_overview_escapes_links_and_objection_column() -> None:
    view = _view({})
    html = render_dashboard(view, "N0NCE")
    assert HOSTILE not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert 'href="/tps/' in html and "Keberatan" not in html and "style=" not in html
    view["elections"][1]["kecamatan"][0]["tps_objections"] = 2
    view["tps_pages"] = False  # a gateway: no TPS pages to link to
    html = render_dashboard(view, "N0NCE")
    assert "Keberatan" in html and 'href="/tps/' not in html
    assert re.findall(r'nonce="([^"]+)"', html) == ["N0NCE", "N0NCE"]


def test_snapshot_swaps_the_nonce_into_a_cached_page() -> None:
    snap = snapshot(7, _view({}), render_dashboard)
    a, b = snap.page("first").decode(), snap.page("second").decode()
    assert a.count('nonce="first"') == 2 and "second" not in a and 'nonce="second"' in b
    assert snap.etag == 'W/"v7"' and b'"chase_total":551' in snap.json
    assert snap.matches('W/"x", W/"v7"') and not snap.matches('W/"v6"') and not snap.matches(None)


def test_progress_chart_says_in_words_what_it_shows() -> None:
    svg = progress_chart(CLOSE, STEP, [0, 3, 10], 20)
    assert 'aria-label="TPS dihitung dari 13:00 WITA sampai 13:30 WITA: 10 dari 20"' in svg
    assert ">13:00<" in svg and "belum ada data" in progress_chart(None, STEP, [], 20)


def test_tps_page_shows_objections_receipt_and_command() -> None:
    result = {
        "id": "ab" * 32, "revision": 1, "supersedes": "cd" * 32, "status": "accepted",
        "reason": "", "signer": "ef" * 16, "signer_serial": 4, "signer_label": HOSTILE,
        "received": CLOSE, "votes": {"1": 101, "2": 80}, "valid": 181, "invalid": 3,
        "warnings": [], "photos": [{"sheet": 1, "sha256": "12" * 32, "present": True},
                                   {"sheet": 2, "sha256": "../../x", "present": True}],
        "endorsements": [{"signer": "99" * 16, "role": "witness", "statement": "object",
                          "status": "accepted", "reason": ""}],
        "receipt": {"id": "77" * 32, "status": "accepted", "reason": "", "log_index": 41,
                    "log_hash": "55" * 32, "server_time": CLOSE + 5},
    }  # fmt: skip
    detail = {
        "tps": TPS_A, "dpt": 251, "desa": {"name": "Desa"}, "kecamatan": {"name": "Hampang"},
        "elections": [{"kind": "gubernur", "state": "accepted", "pairs": {"1": "A & B"},
                       "results": [result]}],
        "rejected": [],
    }  # fmt: skip
    html = render_tps(detail, "N")
    assert "KEBERATAN" in html and "posisi log <strong>#41</strong>" in html
    assert "menggantikan" in html and "2024-11-27T13:00:05+08:00" in html
    assert f'<img src="/v1/blobs/{"12" * 32}"' in html and "../../x" not in html
    assert "1. A &amp; B" in html and HOSTILE not in html
    assert f"estafet verify --trust tps-{TPS_A}/trust.json tps-{TPS_A}/" in html
