"""The PPK recap on a node: the same overview as the central server's, computed from the
verified results this node holds, for its own region, with no internet.

In Kotabaru the kecamatan recap in Hampang and Pulau Sembilan ran offline; a gateway (or any
node) serves ``GET /`` (the overview page) and ``GET /api/status`` (its JSON) from what it
holds, using the central server's counting rule (:mod:`estafet.protocol.tally`).

The view is computed once per change of the store (``StoreDB.version``, bumped on every object
and photo stored) and cached with its rendered page (:mod:`estafet.pages.cache`): requests never
re-verify held results, and a page that polls with its ETag gets ``304`` until something changes.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import Verified
from estafet.pages.cache import Snapshot, StatusCache, snapshot
from estafet.protocol.objects import ResultBody, VoidBody

from .api import NODE, Served
from .plenary import standing_corrections, trail_view
from .store import StoreDB

RECAP_CACHE = web.AppKey("estafet.relay.recap_cache", StatusCache)


def recap(node: Served, sdb: StoreDB) -> dict[str, Any]:
    """Runs on the writer thread (the trust store is single-threaded)."""
    from estafet.pages.model import enrich
    from estafet.protocol.tally import tally_from_results  # on first use: quick start-up

    manifest = node.trust.manifest
    if manifest is None:
        return {"name": "not enrolled", "elections": [], "conflicts": [], "revoked_results": [],
                "log": {"length": 0, "head": ""}}  # fmt: skip
    verified: list[Verified] = []
    for raw in sdb.raw_by_kind(["result"]):
        try:
            verified.append(node.trust.verify(raw, node.now(), allow_revoked=True))
        except VerifyError:
            continue
    have = {bytes(r[0]) for r in sdb.db.execute("SELECT sha256 FROM blobs")}
    held = [
        (v.id, v.envelope.body, v.signer.key_id)
        for v in verified
        if v.revoked is None and isinstance(v.envelope.body, ResultBody)
    ]
    voided = set()
    for raw in sdb.raw_by_kind(["void"]):
        try:
            body = node.trust.verify(raw, node.now()).envelope.body
        except VerifyError:
            continue
        if isinstance(body, VoidBody):
            voided.add(body.result)
    standing = standing_corrections(sdb, node.trust, node.now())  # issue 13: PPK corrections
    corrections = {rid: body for rid, (_cid, body) in standing.items()}
    view = tally_from_results(
        manifest, held, node.scope or None, have.__contains__, voided, corrections
    )
    view["tps_trail"] = trail_view(sdb, node.trust, node.scope or "", node.now())
    where = manifest.region_name(node.scope) if node.scope else "semua wilayah"
    view["name"] = f"{manifest.name} — rekap {where} di simpul ini"
    view["revoked_results"] = [
        {"tps": v.envelope.tps, "election": v.envelope.election, "id": v.id.hex(),
         "signer": v.signer.key_id.hex()}
        for v in verified if v.revoked is not None
    ]  # fmt: skip
    view["log"] = {"length": len(verified), "head": "(hasil yang dipegang di sini, bukan log KPU)"}
    view["tps_pages"] = False  # a gateway serves no /tps/<code> pages
    received = _received(sdb)
    enrich(view, manifest, _counted_at(view, held, received), _last_heard(sdb))
    return view


def _received(sdb: StoreDB) -> dict[bytes, int]:
    rows = sdb.db.execute("SELECT id, received FROM objects WHERE kind = 'result'")
    return {bytes(i): int(t) for i, t in rows}


def _last_heard(sdb: StoreDB) -> dict[str, int]:
    rows = sdb.db.execute(
        "SELECT tps, max(received) FROM objects WHERE tps IS NOT NULL AND tps != '' GROUP BY tps"
    )
    return {str(t): int(n) for t, n in rows}


def _counted_at(
    view: dict[str, Any], held: list[tuple[bytes, Any, bytes]], received: dict[bytes, int]
) -> dict[str, list[int]]:
    """When this node first held a result of each counted TPS, per election."""
    not_counted = {(c["tps"], c["election"]) for c in view["conflicts"]}
    for el in view["elections"]:
        not_counted.update((t, el["kind"]) for k in el["kecamatan"] for t in k["missing"])
    first: dict[tuple[str, str], int] = {}
    for rid, body, _ in held:
        slot = (body.form.tps, body.form.election)
        if slot not in not_counted and rid in received:
            first[slot] = min(first.get(slot, received[rid]), received[rid])
    out: dict[str, list[int]] = {}
    for (_, election), t in first.items():
        out.setdefault(election, []).append(t)
    return out


async def _make_cache(app: web.Application) -> None:
    from estafet.pages.dashboard import render_dashboard

    node = app[NODE]
    sdb = node.store.sync_db()

    def compute(sdb: StoreDB) -> Snapshot:
        version = sdb.version  # read first: a change while computing stays visible
        return snapshot(version, recap(node, sdb), render_dashboard)

    async def run() -> Snapshot:
        return await node.store.write(compute)

    app[RECAP_CACHE] = StatusCache(lambda: sdb.version, run)


def _cache(request: web.Request) -> StatusCache:
    return request.app[RECAP_CACHE]


def _not_modified(request: web.Request, snap: Snapshot) -> web.Response | None:
    if snap.matches(request.headers.get("If-None-Match")):
        return web.Response(status=304, headers={"ETag": snap.etag, "Cache-Control": "no-cache"})
    return None


async def api_status(request: web.Request) -> web.Response:
    snap = await _cache(request).get()
    if (same := _not_modified(request, snap)) is not None:
        return same
    return web.Response(
        body=snap.json,
        content_type="application/json",
        headers={"Cache-Control": "no-cache", "ETag": snap.etag},
    )


async def page(request: web.Request) -> web.Response:
    from estafet.pages.dashboard import csp

    snap = await _cache(request).get()
    if (same := _not_modified(request, snap)) is not None:
        return same
    nonce = secrets.token_urlsafe(16)
    return web.Response(
        body=snap.page(nonce),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp(nonce),
            "Cache-Control": "no-cache",
            "ETag": snap.etag,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def add_recap_routes(app: web.Application) -> None:
    app.on_startup.append(_make_cache)
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api_status)
