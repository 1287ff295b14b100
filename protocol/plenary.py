"""The PPK plenary's arithmetic: corrections over TPS results, and the D.Hasil that adds them up.

Pure functions shared by the gateway that runs the plenary (``estafet ppk dhasil`` builds the
D.Hasil from its own store) and by the central server (which checks a D.Hasil it receives), so
both add up the same way.

The rules (docs/rules.md, "The PPK's recap"):

* a PPK correction of a TPS result supersedes that result's numbers in the count; of several
  corrections of one result, the latest signed (then the highest id) stands
  (:func:`latest_corrections`); the KPPS result and its photos are kept and shown beside it;
* a D.Hasil names the TPS results (and corrections) it adds up: at most one result per TPS, all
  of its kecamatan and election, every correction naming one of those results (at most one per
  result); its totals must equal the sum of the named results with the named corrections
  applied (:func:`check_dhasil`);
* of several D.Hasil of one kecamatan and election, the latest signed (then the highest id)
  stands (:func:`latest_dhasil`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .trail import CorrectionBody, DHasilBody


@dataclass(frozen=True, slots=True)
class Numbers:
    """What adds up: the votes per ballot number, valid and invalid, of one TPS."""

    tps: str
    election: str
    votes: Mapping[str, int]
    valid: int
    invalid: int


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a D.Hasil does not check out; ``rule`` is stable, ``detail`` for people."""

    rule: str  # dhasil-missing | dhasil-scope | dhasil-duplicate | dhasil-orphan | dhasil-sum
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def latest_corrections(
    corrections: Iterable[tuple[bytes, int, CorrectionBody]],
) -> dict[bytes, tuple[bytes, CorrectionBody]]:
    """Per corrected result id: the standing correction ``(id, body)``, given ``(id, created,
    body)``: the latest signed, ties broken by the higher id."""
    best: dict[bytes, tuple[int, bytes, CorrectionBody]] = {}
    for cid, created, body in corrections:
        cur = best.get(body.result)
        if cur is None or (created, cid) > (cur[0], cur[1]):
            best[body.result] = (created, cid, body)
    return {rid: (cid, body) for rid, (_c, cid, body) in best.items()}


def latest_dhasil(items: Iterable[tuple[bytes, int, DHasilBody]]) -> dict[tuple[str, str], bytes]:
    """Per (kecamatan, election): the id of the standing D.Hasil (latest signed, then id)."""
    best: dict[tuple[str, str], tuple[int, bytes]] = {}
    for did, created, body in items:
        key = (body.kecamatan, body.election)
        if key not in best or (created, did) > best[key]:
            best[key] = (created, did)
    return {k: did for k, (_c, did) in best.items()}


def corrected(numbers: Numbers, correction: CorrectionBody | None) -> Numbers:
    if correction is None:
        return numbers
    f = correction.form
    return Numbers(numbers.tps, numbers.election, dict(f.votes), f.valid, f.invalid)


def add_up(ballots: Iterable[str], parts: Iterable[Numbers]) -> tuple[dict[str, int], int, int]:
    """Votes per ballot number, valid, invalid over ``parts``."""
    votes = dict.fromkeys(ballots, 0)
    valid = invalid = 0
    for p in parts:
        for b in votes:
            votes[b] += int(p.votes.get(b, 0))
        valid += p.valid
        invalid += p.invalid
    return votes, valid, invalid


def check_dhasil(
    body: DHasilBody,
    results: Mapping[bytes, Numbers],
    corrections: Mapping[bytes, CorrectionBody],
) -> list[Problem]:
    """Problems with ``body`` given the named objects held (results by id, corrections by id).
    Objects not held are ``dhasil-missing``: the check is repeated when they arrive."""
    out: list[Problem] = []
    missing = [r for r in (*body.results, *body.corrections) if r not in results
               and r not in corrections]  # fmt: skip
    if missing:
        out.append(Problem("dhasil-missing", f"{len(missing)} named objects not received"))
        return out
    seen: set[str] = set()
    for rid in body.results:
        n = results[rid]
        if not n.tps.startswith(body.kecamatan) or n.election != body.election:
            out.append(
                Problem("dhasil-scope", f"result {rid.hex()[:16]} is of {n.tps} {n.election}")
            )
        if n.tps in seen:
            out.append(Problem("dhasil-duplicate", f"two results for TPS {n.tps}"))
        seen.add(n.tps)
    applied: dict[bytes, CorrectionBody] = {}
    for cid in body.corrections:
        c = corrections[cid]
        if c.result not in body.results:
            out.append(
                Problem("dhasil-orphan", f"correction {cid.hex()[:16]} names no listed result")
            )
        elif c.result in applied:
            out.append(Problem("dhasil-duplicate", f"two corrections of {c.result.hex()[:16]}"))
        applied[c.result] = c
    votes, valid, invalid = add_up(
        body.votes, (corrected(results[r], applied.get(r)) for r in body.results)
    )
    if (votes, valid, invalid) != (dict(body.votes), body.valid, body.invalid):
        out.append(
            Problem(
                "dhasil-sum",
                f"signed {dict(body.votes)} valid {body.valid} invalid {body.invalid}; the named "
                f"objects add up to {votes} valid {valid} invalid {invalid}",
            )
        )
    return out


def make_dhasil(
    kecamatan: str,
    election: str,
    ballots: Iterable[str],
    results: Mapping[bytes, Numbers],
    corrections: Mapping[bytes, tuple[bytes, CorrectionBody]],
) -> DHasilBody:
    """The D.Hasil of the given counted results (one per TPS) and their standing corrections
    (by corrected result id, as :func:`latest_corrections` returns)."""
    rids = sorted(r for r, n in results.items() if n.tps.startswith(kecamatan))
    applied = {r: corrections[r] for r in rids if r in corrections}
    votes, valid, invalid = add_up(
        ballots, (corrected(results[r], applied[r][1] if r in applied else None) for r in rids)
    )
    return DHasilBody(
        kecamatan, election, votes, valid, invalid, tuple(rids),
        tuple(sorted(cid for cid, _b in applied.values())),
    )  # fmt: skip
