"""Read-only views of central.db as plain JSON-able dicts: the status page and the TPS page.

Everything here is data for display; it never writes. Bytes become lowercase hex strings.
"""

from __future__ import annotations

from typing import Any

from estafet.crypto.trust import TrustStore
from estafet.protocol.manifest import desa_of, kecamatan_of
from estafet.protocol.objects import LOG_GENESIS
from estafet.protocol.tally import ResultRow, progress
from estafet.relay.store import receipt_summary

from . import trail
from .db import CentralDB, Row
from .errors import UnknownTpsError


def _row(r: Row) -> ResultRow:
    return ResultRow(
        id=r["id"],
        tps=r["tps"],
        election=r["election"],
        revision=r["revision"],
        votes=r["votes"],
        valid=r["valid"],
        invalid=r["invalid"],
        photos=tuple(r["photos"]),
        signer=r["signer"],
        status=r["status"],
    )


def status(db: CentralDB, trust: TrustStore) -> dict[str, Any]:
    manifest = trust.manifest
    assert manifest is not None
    rows = [_row(r) for r in db.live_results() if r["status"] in ("accepted", "conflict")]
    rows = trail.corrected_rows(rows, trail.standing_corrections(db))  # issue 13: PPK numbers
    present = db.present_photo_blobs()
    view = progress(manifest, rows, present.__contains__)
    counted = [r for r in rows if r.status == "accepted"]
    revoked = [
        {
            "id": r["id"].hex(),
            "tps": r["tps"],
            "election": r["election"],
            "signer": r["signer"].hex(),
            "signer_serial": r["signer_serial"],
        }
        for r in db.results_with("rejected", "revoked-signer")
    ]
    length, head = db.log_head()
    objects: dict[str, dict[str, int]] = {}
    for c in db.object_counts():
        objects.setdefault(c["kind"] or "unknown", {})[c["status"]] = int(c["n"])
    return {
        "name": manifest.name,
        "manifest_version": manifest.version,
        **view,
        "revoked_results": revoked,
        "log": {"length": length, "head": (head or LOG_GENESIS).hex()},
        "objects": objects,
        "endorsements": {k.hex(): n for k, n in db.endorsement_counts().items()},
        "tps_trail": trail.per_tps(db),
        "dhasil": trail.dhasil_status(db, manifest, counted),
    }


_receipt = receipt_summary


def _result_view(db: CentralDB, r: Row, endorsements: list[Row]) -> dict[str, Any]:
    return {
        "id": r["id"].hex(),
        "revision": r["revision"],
        "supersedes": r["supersedes"].hex() if r["supersedes"] else None,
        "status": r["status"],
        "reason": r["reason"],
        "signer": r["signer"].hex(),
        "signer_serial": r["signer_serial"],
        "signer_label": r["signer_label"],
        "received": r["received"],
        "votes": r["votes"],
        "valid": r["valid"],
        "invalid": r["invalid"],
        "warnings": r["warnings"],
        "photos": [
            {
                "sheet": p["sheet"],
                "sha256": p["sha256"].hex(),
                "size": p["size"],
                "type": p["type"],
                "present": bool(p["present"]),
            }
            for p in db.photos_of(r["id"])
        ],
        "endorsements": [
            {
                "id": e["id"].hex(),
                "signer": e["signer"].hex(),
                "signer_serial": e["signer_serial"],
                "role": e["role"],
                "statement": e["statement"],
                "status": e["status"],
                "reason": e["reason"],
            }
            for e in endorsements
            if e["result"] == r["id"]
        ],
        "receipt": _receipt(db.latest_receipt(r["id"])),
    }


def tps_detail(db: CentralDB, trust: TrustStore, tps: str) -> dict[str, Any]:
    manifest = trust.manifest
    assert manifest is not None
    if tps not in manifest.tps:
        raise UnknownTpsError(f"TPS {tps!r} is not in the manifest")
    results = db.results_for_tps(tps)
    endorsements = db.endorsements_for_tps(tps)
    elections = []
    for e in manifest.elections:
        if not e.covers(tps):
            continue
        mine = [r for r in results if r["election"] == e.kind]
        counted = [r for r in mine if r["status"] == "accepted"]
        conflict = any(r["status"] == "conflict" for r in mine)
        elections.append(
            {
                "kind": e.kind,
                "ballot_numbers": list(e.ballot_numbers),
                "state": "accepted" if counted else "conflict" if conflict else "missing",
                "counted": counted[0]["id"].hex() if counted else None,
                "results": [_result_view(db, r, endorsements) for r in mine],
            }
        )
    return {
        "tps": tps,
        "dpt": manifest.tps[tps].dpt,
        "desa": {"code": desa_of(tps), "name": manifest.region_name(desa_of(tps))},
        "kecamatan": {"code": kecamatan_of(tps), "name": manifest.region_name(kecamatan_of(tps))},
        "elections": elections,
        **trail.tps_trail(db, tps),
        "rejected": [
            {
                "id": o["id"].hex(),
                "kind": o["kind"],
                "election": o["election"],
                "received": o["received"],
                "reason": o["reason"],
            }
            for o in db.rejected_for_tps(tps)
        ],
    }
