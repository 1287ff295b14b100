"""The central server's side of the paper trail (issue 13): admissions, objections, PPK
corrections and the D.Hasil are kept, receipted and shown; only corrections touch the count.

Ingest (:func:`handle`, called by :class:`~.ingest.Central` for a verified object of a trail
kind): a revoked signer's object is ``rejected`` (``revoked-signer``); an admission for a seat
already held by another admission is ``rejected`` (``seat-taken``: the same rule every hop's
TrustStore applies, kept here across restarts by a unique index); an objection or correction
naming a result held for another TPS or election is ``rejected``; everything else is
``accepted``. A D.Hasil is accepted and its check (:func:`estafet.protocol.plenary.check_dhasil`)
is redone in every status view, since the objects it names may arrive after it.

Views (:func:`tps_trail`, :func:`corrected_rows`, :func:`dhasil_status`): per TPS, the
admissions, objections and corrections; the count with the standing correction applied; per
kecamatan and election, the standing D.Hasil beside the centre's own sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from estafet.crypto.trust import Verified
from estafet.protocol.manifest import Manifest, kecamatan_of
from estafet.protocol.plenary import Numbers, add_up, check_dhasil
from estafet.protocol.tally import ResultRow
from estafet.protocol.trail import (
    AdmissionBody,
    CorrectionBody,
    DHasilBody,
    ObjectionBody,
    object_photos,
)

from .db import CentralDB, Row

TRAIL_KINDS = ("admission", "objection", "correction", "dhasil")
Record = Callable[[bytes, str, str, str, str, str, int], None]
"""``Central._record(oid, kind, tps, election, status, reason, now)``."""


def _photos(photos: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"sheet": p.sheet, "sha256": p.sha256.hex(), "size": p.size, "type": p.type}
            for p in photos]  # fmt: skip


def _row(v: Verified, now: int) -> Row:
    """The trail row of ``v`` (its display data as JSON)."""
    body = v.envelope.body
    row: Row = {"id": v.id, "kind": v.kind, "result": None, "seat": None, "signer": v.signer.key_id,
                "role": v.signer.role, "created": v.envelope.created, "received": now}  # fmt: skip
    if isinstance(body, AdmissionBody):
        row.update(tps=body.tps, election=",".join(body.elections),
                   seat="/".join(str(x) for x in body.seat_key))  # fmt: skip
        data = {"subject": body.subject.hex(), "role": body.role, "pair": body.pair,
                "seat": body.seat, "label": body.label, "not_before": body.not_before,
                "not_after": body.not_after, "mandate": _photos(body.mandate)}  # fmt: skip
    elif isinstance(body, ObjectionBody):
        row.update(tps=body.tps, election=body.election, result=body.result)
        data = {"reason": body.reason, "photos": _photos(body.photos)}
    elif isinstance(body, CorrectionBody):
        row.update(tps=body.tps, election=body.election, result=body.result)
        f = body.form
        data = {"reason": body.reason, "photos": _photos(body.photos), "votes": dict(f.votes),
                "valid": f.valid, "invalid": f.invalid, "form": f.to_json()}  # fmt: skip
    else:
        assert isinstance(body, DHasilBody)
        row.update(tps="", election=body.election)
        data = {"votes": dict(body.votes), "valid": body.valid, "invalid": body.invalid,
                "results": [r.hex() for r in body.results],
                "corrections": [c.hex() for c in body.corrections]}  # fmt: skip
    row["kecamatan"] = body.kecamatan if isinstance(body, DHasilBody) else kecamatan_of(row["tps"])
    row["data"] = data
    return row


def handle(db: CentralDB, record: Record, v: Verified, now: int) -> bool:
    """Keep and receipt one verified trail object (see the module docstring); True when
    accepted."""
    row = _row(v, now)
    reason = "revoked-signer" if v.revoked is not None else ""
    if not reason and row["seat"] is not None:
        holder = db.seat_holder(row["seat"])
        if holder is not None and holder != v.id:
            reason = f"seat-taken: seat {row['seat']} is held by {holder.hex()[:16]}"
            row["seat"] = None  # the refused admission is kept as evidence, seatless
    if not reason and row["result"] is not None:
        target = db.result_key(row["result"])
        if target is not None and (target["tps"], target["election"]) != (
            row["tps"],
            row["election"],
        ):
            reason = "invalid-content: the named result is for another TPS or election"
    db.put_trail(row)
    db.put_photos(
        [{"result": v.id, "sheet": p.sheet, "sha256": p.sha256, "size": p.size, "type": p.type}
         for p in object_photos(v.envelope.body)]
    )  # fmt: skip
    status = "rejected" if reason else "accepted"
    record(v.id, v.kind, row["tps"], row["election"] if v.kind != "admission" else "", status,
           reason, now)  # fmt: skip
    return not reason


# --- views -------------------------------------------------------------------------------------


def standing_corrections(db: CentralDB) -> dict[bytes, Row]:
    """Per corrected result id, the standing correction row: the latest signed, then the highest
    id (the rule of :func:`estafet.protocol.plenary.latest_corrections`)."""
    best: dict[bytes, Row] = {}
    for c in db.trail_of_kind("correction"):
        rid = bytes(c["result"])
        cur = best.get(rid)
        if cur is None or (c["created"], c["id"]) > (cur["created"], cur["id"]):
            best[rid] = c
    return best


def corrected_rows(rows: list[ResultRow], corrections: dict[bytes, Row]) -> list[ResultRow]:
    """The count's rows with each standing correction's numbers in place of its result's."""
    out = []
    for r in rows:
        c = corrections.get(r.id)
        d = c["data"] if c is not None else None
        out.append(r if d is None else replace(r, votes=d["votes"], valid=d["valid"],
                                               invalid=d["invalid"]))  # fmt: skip
    return out


def tps_trail(db: CentralDB, tps: str) -> dict[str, list[dict[str, Any]]]:
    """Admissions, objections and corrections of one TPS, for the TPS view and the status."""
    standing = {bytes(c["id"]) for c in standing_corrections(db).values()}
    out: dict[str, list[dict[str, Any]]] = {"admissions": [], "objections": [], "corrections": []}
    for t in db.trail_for_tps(tps):
        item = {"id": t["id"].hex(), "signer": t["signer"].hex(), "role": t["role"],
                "election": t["election"], "created": t["created"], "status": t["status"],
                "reason": t["reason"], **t["data"]}  # fmt: skip
        if t["result"] is not None:
            item["result"] = bytes(t["result"]).hex()
        if t["kind"] == "correction":
            item["standing"] = bytes(t["id"]) in standing
        out[t["kind"] + "s"].append(item)
    return out


def per_tps(db: CentralDB) -> dict[str, dict[str, int]]:
    """Per TPS with any objection or correction: how many of each are accepted."""
    out: dict[str, dict[str, int]] = {}
    for kind in ("objection", "correction"):
        for t in db.trail_of_kind(kind):
            slot = out.setdefault(t["tps"], {"objections": 0, "corrections": 0})
            slot[kind + "s"] += 1
    return out


def dhasil_status(
    db: CentralDB, manifest: Manifest, counted: list[ResultRow]
) -> list[dict[str, Any]]:
    """Per kecamatan and election: the standing D.Hasil, its check, and the centre's own sum of
    the counted results (corrections applied) beside it."""
    standing: dict[tuple[str, str], Row] = {}
    for d in db.trail_of_kind("dhasil"):
        key = (d["kecamatan"], d["election"])
        if key not in standing or (d["created"], d["id"]) > (
            standing[key]["created"],
            standing[key]["id"],
        ):
            standing[key] = d  # fmt: skip
    out = []
    for e in manifest.elections:
        ballots = [str(n) for n in e.ballot_numbers]
        kecs = sorted({kecamatan_of(t) for t in manifest.tps_for(e.kind)})
        for kec in kecs:
            mine = [r for r in counted if r.election == e.kind and r.tps.startswith(kec)]
            votes, valid, invalid = add_up(ballots, (_numbers(r) for r in mine))
            view: dict[str, Any] = {
                "kecamatan": kec, "name": manifest.region_name(kec), "election": e.kind,
                "centre": {"votes": votes, "valid": valid, "invalid": invalid,
                           "tps_counted": len(mine)},
                "dhasil": None, "state": "none",
            }  # fmt: skip
            held = standing.get((kec, e.kind))
            if held is not None:
                view["dhasil"], view["state"], view["problems"] = _check(db, held, mine)
            out.append(view)
    return out


def _numbers(r: ResultRow) -> Numbers:
    return Numbers(r.tps, r.election, r.votes, r.valid, r.invalid)


def _check(
    db: CentralDB, d: Row, counted: list[ResultRow]
) -> tuple[dict[str, Any], str, list[str]]:
    data = d["data"]
    body = DHasilBody(d["kecamatan"], d["election"], data["votes"], data["valid"],
                      data["invalid"], tuple(bytes.fromhex(x) for x in data["results"]),
                      tuple(bytes.fromhex(x) for x in data["corrections"]))  # fmt: skip
    results: dict[bytes, Numbers] = {}
    for rid in body.results:
        r = db.result_numbers(rid)
        if r is not None:
            results[rid] = Numbers(r["tps"], r["election"], r["votes"], r["valid"], r["invalid"])
    corrections: dict[bytes, CorrectionBody] = {}
    for cid in body.corrections:
        c = db.trail("t.id = ?", (cid,))
        if c:
            corrections[cid] = _correction_body(c[0])
    problems = [str(p) for p in check_dhasil(body, results, corrections)]
    counted_ids = {r.id for r in counted}
    not_counted = [r.hex() for r in body.results if r not in counted_ids]
    state = ("incomplete" if any(p.startswith("dhasil-missing") for p in problems)
             else "mismatch" if problems else "matches")  # fmt: skip
    view = {"id": d["id"].hex(), "signer": d["signer"].hex(), "created": d["created"],
            **data, "not_counted_results": not_counted}  # fmt: skip
    return view, state, problems


def _correction_body(row: Row) -> CorrectionBody:
    from estafet.protocol.form import parse_form

    d = row["data"]
    return CorrectionBody(bytes(row["result"]), parse_form(d["form"]), d["reason"], ())
