"""Tally and progress: pure functions from result rows (or verified results) to the status view.

Shared by the central server (rows from central.db) and a PPK gateway without internet (the
signed results it holds, via :func:`tally_from_results`), so both show the same numbers.

Counting rule (:func:`resolve_slot`), applied per TPS and election to the results that are not
rejected: the highest revision wins; if exactly one result has it, that one is ``accepted`` and
counted, and every lower revision is ``superseded``; if two or more share it (equivocation), all
of them are ``conflict`` and none is counted until a higher revision arrives. The rule depends
only on the set of results, never on arrival order. Before the rule, two recovery rules take
results out (issue 11, item 8): a result the KPU *voided* (a root- or issuer-signed ``void``)
never counts, and a revision whose ``supersedes`` names a result not held is *held*: not counted
until that result is there, so a revision naming a phantom id cannot beat the genuine one.

Votes are aggregated TPS -> desa (10 digits) -> kecamatan (6) -> kabupaten (4) -> the election's
region; progress counts TPS expected / received / accepted / conflict / missing / photos complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from estafet.protocol.manifest import Election, Manifest
from estafet.protocol.objects import ResultBody
from estafet.protocol.photos import SHEETS
from estafet.protocol.trail import CorrectionBody

PhotosPresent = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class ResultRow:
    """What the tally needs from one result."""

    id: bytes
    tps: str
    election: str
    revision: int
    votes: Mapping[str, int]
    valid: int
    invalid: int
    photos: tuple[bytes, ...]
    signer: bytes
    status: str = "accepted"  # accepted | conflict | superseded


def resolve_slot(entries: Iterable[tuple[bytes, int]]) -> dict[bytes, str]:
    """Statuses for the (id, revision) pairs of one TPS and election (none rejected)."""
    pairs = list(entries)
    if not pairs:
        return {}
    top = max(rev for _, rev in pairs)
    n_top = sum(1 for _, rev in pairs if rev == top)
    head = "accepted" if n_top == 1 else "conflict"
    return {rid: head if rev == top else "superseded" for rid, rev in pairs}


def supersede_problem(
    tps: str, election: str, revision: int, previous: tuple[str, str, int] | None
) -> str | None:
    """Why a revision may not supersede the result it names (None when fine or unknown)."""
    if previous is None:
        return None
    p_tps, p_election, p_revision = previous
    if (p_tps, p_election) != (tps, election):
        return "the superseded result is for another TPS or election"
    if p_revision >= revision:
        return f"revision {revision} must be above the superseded revision {p_revision}"
    return None


@dataclass
class _Node:
    code: str
    ballots: tuple[str, ...]
    expected: int = 0
    accepted: int = 0
    conflict: int = 0
    photos: int = 0
    valid: int = 0
    invalid: int = 0
    missing: list[str] = field(default_factory=list)
    tally: dict[str, int] = field(default_factory=dict)

    def add(self, tps: str, row: ResultRow | None, state: str, photos_ok: bool) -> None:
        self.expected += 1
        if state == "accepted" and row is not None:
            self.accepted += 1
            self.photos += photos_ok
            self.valid += row.valid
            self.invalid += row.invalid
            for b in self.ballots:
                self.tally[b] = self.tally.get(b, 0) + int(row.votes.get(b, 0))
        elif state == "conflict":
            self.conflict += 1
        else:
            self.missing.append(tps)

    def view(self, manifest: Manifest) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": manifest.region_name(self.code),
            "tps_expected": self.expected,
            "tps_received": self.accepted + self.conflict,
            "tps_accepted": self.accepted,
            "tps_conflict": self.conflict,
            "tps_missing": len(self.missing),
            "tps_photos_complete": self.photos,
            "tally": {b: self.tally.get(b, 0) for b in self.ballots},
            "valid": self.valid,
            "invalid": self.invalid,
        }


def _photos_ok(row: ResultRow, present: PhotosPresent) -> bool:
    return len(row.photos) == len(SHEETS) and all(present(h) for h in row.photos)


def _election_view(
    manifest: Manifest,
    election: Election,
    by_slot: Mapping[tuple[str, str], list[ResultRow]],
    present: PhotosPresent,
    prefix: str | None,
) -> dict[str, Any]:
    ballots = tuple(str(n) for n in election.ballot_numbers)
    top = _Node(election.region, ballots)
    levels: dict[int, dict[str, _Node]] = {4: {}, 6: {}, 10: {}}
    for tps in manifest.tps_for(election.kind):
        if prefix is not None and not tps.startswith(prefix):
            continue
        rows = by_slot.get((tps, election.kind), [])
        counted = [r for r in rows if r.status == "accepted"]
        row = counted[0] if len(counted) == 1 else None
        state = (
            "accepted" if row else "conflict" if any(r.status == "conflict" for r in rows) else ""
        )
        ok = row is not None and _photos_ok(row, present)
        top.add(tps, row, state, ok)
        for n, nodes in levels.items():
            node = nodes.setdefault(tps[:n], _Node(tps[:n], ballots))
            node.add(tps, row, state, ok)
    kecamatan = []
    for code, node in sorted(levels[6].items()):
        view = node.view(manifest)
        view["missing"] = sorted(node.missing)
        view["desa"] = [
            d.view(manifest) for c, d in sorted(levels[10].items()) if c.startswith(code)
        ]
        kecamatan.append(view)
    out = top.view(manifest)
    del out["code"]
    return {
        "kind": election.kind,
        "region": election.region,
        **out,
        "kabupaten": [n.view(manifest) for _, n in sorted(levels[4].items())],
        "kecamatan": kecamatan,
    }


def progress(
    manifest: Manifest,
    rows: Iterable[ResultRow],
    photos_present: PhotosPresent,
    region_prefix: str | None = None,
) -> dict[str, Any]:
    """The ``elections`` and ``conflicts`` parts of the status view, from resolved rows."""
    by_slot: dict[tuple[str, str], list[ResultRow]] = {}
    for r in rows:
        if region_prefix is None or r.tps.startswith(region_prefix):
            by_slot.setdefault((r.tps, r.election), []).append(r)
    conflicts = []
    for (tps, election), slot_rows in sorted(by_slot.items()):
        bad = [r for r in slot_rows if r.status == "conflict"]
        if bad:
            conflicts.append(
                {
                    "tps": tps,
                    "election": election,
                    "objects": [r.id.hex() for r in bad],
                    "signers": [r.signer.hex() for r in bad],
                }
            )
    elections = [
        _election_view(manifest, e, by_slot, photos_present, region_prefix)
        for e in manifest.elections
    ]
    return {"elections": elections, "conflicts": conflicts}


def row_of(rid: bytes, body: ResultBody, signer: bytes, status: str = "accepted") -> ResultRow:
    """The tally row of a (verified) result with id ``rid`` signed by key id ``signer``."""
    form = body.form
    return ResultRow(
        id=rid,
        tps=form.tps,
        election=form.election,
        revision=form.revision,
        votes=dict(form.votes),
        valid=form.valid,
        invalid=form.invalid,
        photos=tuple(p.sha256 for p in sorted(body.photos, key=lambda p: p.sheet)),
        signer=signer,
        status=status,
    )


def tally_from_results(
    manifest: Manifest,
    results: Iterable[tuple[bytes, ResultBody, bytes]],
    region_prefix: str | None = None,
    photos_present: PhotosPresent | None = None,
    voided: Iterable[bytes] = (),
    corrections: Mapping[bytes, CorrectionBody] | None = None,
) -> dict[str, Any]:
    """The status view from verified results alone (a gateway's own holdings), given as
    ``(id, body, signer key id)``; the caller leaves out results of revoked signers (revoked
    for their signing time) and passes the ids named by verified voids in ``voided``.

    Revisions that name a result of another TPS, or a revision not below their own, are left out
    as the central server refuses them; revisions whose superseded result is not held are held
    (left out), and voided results are left out. Without ``photos_present`` no TPS counts as
    photos complete. ``corrections`` (standing PPK corrections by corrected result id) replace
    their result's numbers in the count (docs/rules.md, "The PPK's recap").
    """
    rows: dict[bytes, ResultRow] = {}
    supersedes: dict[bytes, bytes] = {}
    for rid, body, signer in results:
        rows[rid] = row_of(rid, body, signer)
        if body.form.supersedes is not None:
            supersedes[rid] = body.form.supersedes
    known = set(rows)
    for rid, prev_id in supersedes.items():
        r, prev = rows[rid], rows.get(prev_id)
        key = (prev.tps, prev.election, prev.revision) if prev else None
        if prev_id not in known or supersede_problem(r.tps, r.election, r.revision, key):
            del rows[rid]  # held (superseded result not here) or refused
    for rid in voided:
        rows.pop(rid, None)
    for rid, c in (corrections or {}).items():
        if rid in rows:
            f = c.form
            rows[rid] = replace(rows[rid], votes=dict(f.votes), valid=f.valid, invalid=f.invalid)
    slots: dict[tuple[str, str], list[ResultRow]] = {}
    for r in rows.values():
        slots.setdefault((r.tps, r.election), []).append(r)
    resolved: list[ResultRow] = []
    for slot_rows in slots.values():
        statuses = resolve_slot((r.id, r.revision) for r in slot_rows)
        resolved.extend(replace(r, status=statuses[r.id]) for r in slot_rows)
    return progress(manifest, resolved, photos_present or (lambda _h: False), region_prefix)
