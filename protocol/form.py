"""The C.Hasil result form: its exact keys, and the arithmetic rules an officer must satisfy.

Theory of operation: :func:`parse_form` turns the officer's JSON (a dict) into a
:class:`ResultForm`, refusing unknown or missing keys and non-integer counts. :func:`check_form`
then applies the election rules against the manifest and returns ``(violations, warnings)``.
Hard violations mean "refuse to sign"; warnings are signed into the result and shown wherever it
is shown. Every rule has a stable name (``RULES``) that errors and receipts carry; renaming one is
a compatibility break. The same checks run when the officer signs, at every relay, and at the
central server, so a forged-but-signed result that breaks arithmetic is refused everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FormError, Violation
from .manifest import ELECTION_KINDS, Manifest, is_tps_code

MAX_COUNT = 999
DPT_WARN = 600

RULES: dict[str, str] = {
    # hard rules: a form that breaks one is never signed and never accepted
    "form-keys": "the form has exactly the documented keys, with the right shapes",
    "count-range": "every count is a whole number from 0 to 999",
    "election-unknown": "the election is one the manifest holds",
    "tps-format": "the TPS code is 13 digits",
    "tps-unknown": "the TPS is listed in the election manifest",
    "tps-region": "the TPS lies in the region of the election",
    "vote-keys": "the vote keys are exactly the election's ballot numbers",
    "valid-sum": "valid equals the sum of the votes",
    "votes-exceed-turnout": "valid + invalid is at most the turnout (DPT+DPTb+DPK, m+f)",
    "turnout-exceeds-dpt": "turnout.dpt.m <= voters.dpt.m and turnout.dpt.f <= voters.dpt.f",
    "ballots-balance": "ballots.received = used + damaged + unused",
    "disabled-exceeds-turnout": "disabled voters who voted are at most the turnout",
    "revision-supersedes": "revision > 0 exactly when supersedes names an earlier result of the "
    "same TPS and election",
    "photo-count": "exactly 3 photos (sheets 1, 2, 3)",
    "photo-sheets": "the photos are sheets 1, 2 and 3",
    "photo-type": "each photo is a JPEG or PNG by its magic bytes",
    "photo-size": "each photo is 1 byte to 15 MB",
    # warnings: signed into the result and shown, never blocking
    "warn-turnout-unaccounted": "valid + invalid is below the turnout",
    "warn-ballots-used": "ballots.used differs from valid + invalid",
    "warn-dpt-large": "DPT above 600 voters",
    "warn-ballots-short": "fewer ballots received than DPT",
    "warn-dpt-manifest": "DPT differs from the DPT in the manifest",
}
WARNING_RULES = frozenset(r for r in RULES if r.startswith("warn-"))

FORM_FIELDS = (
    "election",
    "tps",
    "voters",
    "turnout",
    "ballots",
    "disabled",
    "votes",
    "valid",
    "invalid",
    "revision",
    "supersedes",
)
FORM_KEYS = frozenset(FORM_FIELDS)
_FORM_KEYS_SORTED = tuple(sorted(FORM_KEYS))
_MF = ("m", "f")
_TURNOUT = ("dpt", "dptb", "dpk")
_BALLOTS = ("received", "used", "damaged", "unused")
_BALLOT_KEY = re.compile(r"[1-9][0-9]?")  # ASCII only (isdigit() takes "²")


@dataclass(frozen=True, slots=True)
class MF:
    m: int
    f: int

    @property
    def total(self) -> int:
        return self.m + self.f

    def to_map(self) -> dict[str, int]:
        return {"m": self.m, "f": self.f}


@dataclass(frozen=True, slots=True)
class ResultForm:
    """A parsed form. ``supersedes`` is the 32-byte id of the revised result, or None."""

    election: str
    tps: str
    dpt: MF
    turnout_dpt: MF
    turnout_dptb: MF
    turnout_dpk: MF
    received: int
    used: int
    damaged: int
    unused: int
    disabled: MF
    votes: Mapping[str, int]
    valid: int
    invalid: int
    revision: int
    supersedes: bytes | None

    @property
    def turnout_total(self) -> int:
        return self.turnout_dpt.total + self.turnout_dptb.total + self.turnout_dpk.total

    def to_map(self) -> dict[str, Any]:
        """The form's fields as they appear inside a signed result (supersedes as bytes)."""
        return {
            "election": self.election,
            "tps": self.tps,
            "voters": {"dpt": self.dpt.to_map()},
            "turnout": {
                "dpt": self.turnout_dpt.to_map(),
                "dptb": self.turnout_dptb.to_map(),
                "dpk": self.turnout_dpk.to_map(),
            },
            "ballots": {
                "received": self.received,
                "used": self.used,
                "damaged": self.damaged,
                "unused": self.unused,
            },
            "disabled": self.disabled.to_map(),
            "votes": dict(sorted(self.votes.items(), key=lambda kv: int(kv[0]))),
            "valid": self.valid,
            "invalid": self.invalid,
            "revision": self.revision,
            "supersedes": self.supersedes,
        }

    def to_json(self) -> dict[str, Any]:
        """The officer-facing JSON form (supersedes as hex)."""
        m = self.to_map()
        m["supersedes"] = self.supersedes.hex() if self.supersedes else None
        return m


class _Parser:
    """Collects every problem instead of stopping at the first, so an officer fixes all at once."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def bad(self, rule: str, message: str) -> None:
        self.violations.append(Violation(rule, message))

    def obj(self, value: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.bad("form-keys", f"{path} must be an object with keys {', '.join(keys)}")
            return {}
        if len(value) == len(keys) and all(k in value for k in keys):
            return value  # the common case: exactly the keys (no lists built)
        extra = sorted(set(value) - set(keys))
        missing = [k for k in keys if k not in value]
        if extra:
            self.bad("form-keys", f"{path}: unknown key(s) {', '.join(map(str, extra))}")
        if missing:
            self.bad("form-keys", f"{path}: missing key(s) {', '.join(missing)}")
        return value

    def count(self, value: Any, path: str, leaf: str = "") -> int:
        """``value`` as a count; ``path`` + "." + ``leaf`` names it (joined only on error)."""
        if type(value) is int and 0 <= value <= MAX_COUNT:
            return value
        where = f"{path}.{leaf}" if leaf else path
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad("count-range", f"{where} must be a whole number, got {value!r}")
            return 0
        if not 0 <= value <= MAX_COUNT:
            self.bad("count-range", f"{where} = {value} is outside 0..{MAX_COUNT}")
        return value

    def mf(self, value: Any, path: str) -> MF:
        d = self.obj(value, path, _MF)
        return MF(self.count(d.get("m", 0), path, "m"), self.count(d.get("f", 0), path, "f"))


def parse_form(data: Any) -> ResultForm:
    """Parse an officer's JSON form. Raises :class:`FormError` listing every shape problem."""
    p = _Parser()
    top = p.obj(data, "form", _FORM_KEYS_SORTED)
    election = top.get("election")
    if not isinstance(election, str) or election not in ELECTION_KINDS:
        p.bad("election-unknown", f"election must be one of {', '.join(ELECTION_KINDS)}")
        election = str(election)
    tps_in = top.get("tps")
    tps = str(tps_in)
    if not is_tps_code(tps_in):
        p.bad("tps-format", f"tps must be a 13-digit code as a string, got {tps_in!r}")
    voters = p.obj(top.get("voters", {}), "voters", ("dpt",))
    turnout = p.obj(top.get("turnout", {}), "turnout", _TURNOUT)
    ballots = p.obj(top.get("ballots", {}), "ballots", _BALLOTS)
    votes_in = top.get("votes", {})
    votes: dict[str, int] = {}
    if not isinstance(votes_in, dict) or not votes_in:
        p.bad("form-keys", "votes must be an object of ballot number -> votes")
    else:
        for k, v in votes_in.items():
            if not isinstance(k, str) or _BALLOT_KEY.fullmatch(k) is None:
                p.bad("vote-keys", f'vote key {k!r} is not a ballot number like "1"')
                continue
            votes[k] = p.count(v, "votes", k)
    revision = top.get("revision", 0)
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision <= 99:
        p.bad("revision-supersedes", f"revision must be a whole number 0..99, got {revision!r}")
        revision = 0
    sup_in = top.get("supersedes")
    supersedes: bytes | None = None
    if sup_in is not None:
        if isinstance(sup_in, str) and len(sup_in) == 64:
            try:
                supersedes = bytes.fromhex(sup_in)
            except ValueError:
                supersedes = None
            if supersedes is not None and len(supersedes) != 32:  # fromhex skips whitespace
                supersedes = None
        elif isinstance(sup_in, bytes) and len(sup_in) == 32:
            supersedes = sup_in
        if supersedes is None:
            p.bad("revision-supersedes", "supersedes must be a result id (64 hex digits) or null")
    form = ResultForm(
        election=election,
        tps=tps,
        dpt=p.mf(voters.get("dpt"), "voters.dpt"),
        turnout_dpt=p.mf(turnout.get("dpt"), "turnout.dpt"),
        turnout_dptb=p.mf(turnout.get("dptb"), "turnout.dptb"),
        turnout_dpk=p.mf(turnout.get("dpk"), "turnout.dpk"),
        received=p.count(ballots.get("received", 0), "ballots", "received"),
        used=p.count(ballots.get("used", 0), "ballots", "used"),
        damaged=p.count(ballots.get("damaged", 0), "ballots", "damaged"),
        unused=p.count(ballots.get("unused", 0), "ballots", "unused"),
        disabled=p.mf(top.get("disabled"), "disabled"),
        votes=votes,
        valid=p.count(top.get("valid", 0), "valid"),
        invalid=p.count(top.get("invalid", 0), "invalid"),
        revision=revision,
        supersedes=supersedes,
    )
    if p.violations:
        raise FormError(p.violations)
    return form


PreviousLookup = Callable[[bytes], "tuple[str, str, int] | None"]
"""Given a result id, return (tps, election, revision) of that result if known, else None."""


def check_form(
    form: ResultForm,
    manifest: Manifest,
    previous: PreviousLookup | None = None,
    *,
    require_previous: bool = False,
) -> tuple[list[Violation], list[Violation]]:
    """Apply every rule. Returns ``(violations, warnings)``; sign only when violations is empty.

    ``previous`` resolves ``supersedes``; with ``require_previous`` an unknown id is a
    violation (the officer's own phone must know what it revises), else it is left to the
    central server, which may see the two results in either order.
    """
    bad: list[Violation] = []
    warn: list[Violation] = []
    election = manifest.election(form.election)
    if election is None:
        bad.append(Violation("election-unknown", f"no {form.election} election in the manifest"))
    tps = manifest.tps.get(form.tps)
    if tps is None:
        bad.append(Violation("tps-unknown", f"TPS {form.tps} is not in the manifest"))
    elif election is not None and not election.covers(form.tps):
        bad.append(
            Violation(
                "tps-region", f"TPS {form.tps} is outside {election.kind} region {election.region}"
            )
        )
    if election is not None:
        expected = {str(n) for n in election.ballot_numbers}
        if set(form.votes) != expected:
            bad.append(
                Violation(
                    "vote-keys",
                    f"votes must be for ballot numbers {sorted(expected, key=int)}, got "
                    f"{sorted(form.votes, key=int)}",
                )
            )
    total_votes = sum(form.votes.values())
    if form.valid != total_votes:
        bad.append(Violation("valid-sum", f"valid {form.valid} != sum of votes {total_votes}"))
    cast = form.valid + form.invalid
    if cast > form.turnout_total:
        bad.append(
            Violation(
                "votes-exceed-turnout",
                f"valid + invalid = {cast} exceeds turnout {form.turnout_total}",
            )
        )
    for sex, used, reg in (
        ("m", form.turnout_dpt.m, form.dpt.m),
        ("f", form.turnout_dpt.f, form.dpt.f),
    ):
        if used > reg:
            bad.append(
                Violation(
                    "turnout-exceeds-dpt", f"turnout.dpt.{sex} {used} > voters.dpt.{sex} {reg}"
                )
            )
    balance = form.used + form.damaged + form.unused
    if form.received != balance:
        bad.append(
            Violation(
                "ballots-balance",
                f"received {form.received} != used + damaged + unused = {balance}",
            )
        )
    if form.disabled.total > form.turnout_total:
        bad.append(
            Violation(
                "disabled-exceeds-turnout",
                f"disabled {form.disabled.total} > turnout {form.turnout_total}",
            )
        )
    bad.extend(_check_revision(form, previous, require_previous))
    if cast < form.turnout_total:
        warn.append(
            Violation(
                "warn-turnout-unaccounted",
                f"valid + invalid = {cast} is below turnout {form.turnout_total}",
            )
        )
    if form.used != cast:
        warn.append(
            Violation("warn-ballots-used", f"ballots used {form.used} != valid + invalid {cast}")
        )
    if form.dpt.total > DPT_WARN:
        warn.append(Violation("warn-dpt-large", f"DPT {form.dpt.total} is above {DPT_WARN}"))
    if form.received < form.dpt.total:
        warn.append(
            Violation(
                "warn-ballots-short",
                f"ballots received {form.received} < DPT {form.dpt.total}",
            )
        )
    if tps is not None and tps.dpt is not None and tps.dpt != form.dpt.total:
        warn.append(
            Violation("warn-dpt-manifest", f"DPT {form.dpt.total} != {tps.dpt} in the manifest")
        )
    return bad, warn


def _check_revision(
    form: ResultForm, previous: PreviousLookup | None, require_previous: bool
) -> list[Violation]:
    if (form.revision > 0) != (form.supersedes is not None):
        return [
            Violation(
                "revision-supersedes",
                "a revision above 0 must name the result it supersedes, and revision 0 must not",
            )
        ]
    if form.supersedes is None:
        return []
    found = previous(form.supersedes) if previous is not None else None
    if found is None:
        if require_previous:
            return [
                Violation(
                    "revision-supersedes",
                    f"superseded result {form.supersedes.hex()[:16]}… is not known here",
                )
            ]
        return []
    tps, election, revision = found
    if tps != form.tps or election != form.election:
        return [
            Violation("revision-supersedes", "the superseded result is for another TPS or election")
        ]
    if revision >= form.revision:
        return [
            Violation(
                "revision-supersedes",
                f"revision {form.revision} must be above the superseded revision {revision}",
            )
        ]
    return []


def check_or_raise(
    form: ResultForm, manifest: Manifest, previous: PreviousLookup | None = None
) -> list[Violation]:
    """Raise FormError on any hard violation; return the warnings otherwise."""
    bad, warn = check_form(form, manifest, previous, require_previous=previous is not None)
    if bad:
        raise FormError(bad)
    return warn
