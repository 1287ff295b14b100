"""The PPK recap on a node: the same progress view and tally as the central server's, computed
from the verified results this node holds, for its own region, with no internet.

In Kotabaru the kecamatan recap in Hampang and Pulau Sembilan ran offline; a gateway (or any
node) serves ``GET /`` (the dashboard page) and ``GET /api/status`` (its JSON) from what it
holds, using the central server's counting rule (:mod:`estafet.protocol.tally`).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import Verified
from estafet.protocol.objects import ResultBody, VoidBody

from .api import NODE, Served
from .plenary import standing_corrections, trail_view
from .store import StoreDB


def recap(node: Served, sdb: StoreDB) -> dict[str, Any]:
    """Runs on the writer thread (the trust store is single-threaded)."""
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
    voided = set()
    for raw in sdb.raw_by_kind(["void"]):
        try:
            body = node.trust.verify(raw, node.now()).envelope.body
        except VerifyError:
            continue
        if isinstance(body, VoidBody):
            voided.add(body.result)
    held = [
        (v.id, v.envelope.body, v.signer.key_id)
        for v in verified
        if v.revoked is None and isinstance(v.envelope.body, ResultBody)
    ]
    standing = standing_corrections(sdb, node.trust, node.now())  # issue 13: PPK corrections
    corrections = {rid: body for rid, (_cid, body) in standing.items()}
    view = tally_from_results(
        manifest, held, node.scope or None, have.__contains__, voided, corrections
    )
    view["tps_trail"] = trail_view(sdb, node.trust, node.scope or "", node.now())
    view["name"] = f"{manifest.name} — recap at this node ({node.scope or 'all'})"
    view["revoked_results"] = [
        {"tps": v.envelope.tps, "election": v.envelope.election, "id": v.id.hex(),
         "signer": v.signer.key_id.hex()}
        for v in verified if v.revoked is not None
    ]  # fmt: skip
    view["log"] = {"length": len(verified), "head": "(results held here, not the KPU log)"}
    return view


async def api_status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    view = await node.store.write(lambda sdb: recap(node, sdb))
    return web.json_response(view, headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.Response:
    from estafet.pages.dashboard import csp, render_dashboard

    node = request.app[NODE]
    view = await node.store.write(lambda sdb: recap(node, sdb))
    nonce = secrets.token_urlsafe(16)
    return web.Response(
        text=render_dashboard(view, nonce),
        content_type="text/html",
        headers={
            "Content-Security-Policy": csp(nonce),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_recap_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api_status)
