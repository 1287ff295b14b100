"""The live check behind the number screen: the officer's typed fields, in C.Hasil order, run
through the very rules ``result submit`` applies (:func:`estafet.protocol.form.check_form`).

The page sends what is typed so far, blanks included. A blank counts as 0 for the arithmetic,
but a rule is only shown once every field it reads is filled, so the officer is not shouted at
while still typing; signing needs every field filled and no hard rule broken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from estafet.protocol.errors import FormError, Violation
from estafet.protocol.form import MAX_COUNT, check_form, parse_form
from estafet.protocol.manifest import Manifest

MF_FIELDS = (
    "voters.dpt.m", "voters.dpt.f",
    "turnout.dpt.m", "turnout.dpt.f", "turnout.dptb.m", "turnout.dptb.f",
    "turnout.dpk.m", "turnout.dpk.f",
    "ballots.received", "ballots.used", "ballots.damaged", "ballots.unused",
    "disabled.m", "disabled.f",
)  # fmt: skip
"""The fields before the votes, in the order of the paper form."""

RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "valid-sum": ("votes.", "valid"),
    "votes-exceed-turnout": ("valid", "invalid", "turnout."),
    "turnout-exceeds-dpt": ("voters.dpt.", "turnout.dpt."),
    "ballots-balance": ("ballots.",),
    "disabled-exceeds-turnout": ("disabled.", "turnout."),
    "warn-turnout-unaccounted": ("valid", "invalid", "turnout."),
    "warn-ballots-used": ("ballots.used", "valid", "invalid"),
    "warn-dpt-large": ("voters.dpt.",),
    "warn-ballots-short": ("ballots.received", "voters.dpt."),
    "warn-dpt-manifest": ("voters.dpt.",),
}
"""Which fields each arithmetic rule reads (prefixes), to hold it back while any is blank and
to mark the fields it names. Rules not listed here are always shown."""


def field_names(ballot_numbers: tuple[int, ...]) -> list[str]:
    """Every field of one election's form, in the order of the C.Hasil."""
    return [*MF_FIELDS, *(f"votes.{n}" for n in ballot_numbers), "valid", "invalid"]


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in prefixes)


@dataclass
class Check:
    blank: list[str] = field(default_factory=list)
    hard: list[dict[str, Any]] = field(default_factory=list)
    warn: list[dict[str, Any]] = field(default_factory=list)
    form: dict[str, Any] | None = None

    @property
    def signable(self) -> bool:
        return not self.blank and not self.hard and self.form is not None

    def to_json(self) -> dict[str, Any]:
        return {"blank": self.blank, "hard": self.hard, "warn": self.warn, "ok": self.signable}


def _item(v: Violation, names: list[str]) -> dict[str, Any]:
    prefixes = RULE_FIELDS.get(v.rule, ())
    return {
        "rule": v.rule,
        "detail": v.message,
        "fields": [n for n in names if _matches(n, prefixes)],
    }


def build_form(
    election: str, tps: str, names: list[str], fields: dict[str, Any], draft: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[Violation]]:
    """The form JSON from typed fields: ``(form, blank field names, count-range problems)``."""
    form: dict[str, Any] = {
        "election": election,
        "tps": tps,
        "revision": int(draft.get("revision") or 0),
        "supersedes": draft.get("supersedes") or None,
    }
    blank: list[str] = []
    bad: list[Violation] = []
    for name in names:
        raw = fields.get(name, "")
        text = str(raw).strip() if raw is not None else ""
        value = 0
        if text == "":
            blank.append(name)
        elif text.isascii() and text.isdigit() and int(text) <= MAX_COUNT:
            value = int(text)
        else:
            bad.append(Violation("count-range", f"{name} = {text[:12]!r}"))
        node = form
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return form, blank, bad


async def run_check(
    manifest: Manifest,
    election: str,
    tps: str,
    fields: dict[str, Any],
    draft: dict[str, Any],
    previous: Callable[[bytes], Awaitable[tuple[str, str, int] | None]],
) -> Check:
    """Check typed fields against the manifest with ``protocol.form``'s named rules."""
    el = manifest.election(election)
    if el is None:
        return Check(hard=[{"rule": "election-unknown", "detail": election, "fields": []}])
    names = field_names(el.ballot_numbers)
    data, blank, bad = build_form(election, tps, names, fields, draft)
    out = Check(blank=blank)
    try:
        form = parse_form(data)
    except FormError as exc:
        out.hard = [_item(v, names) for v in [*bad, *exc.violations]]
        return out
    prev = await previous(form.supersedes) if form.supersedes else None
    hard, warn = check_form(form, manifest, lambda _oid: prev, require_previous=True)
    filled = set(names) - set(blank)

    def shown(v: Violation) -> bool:
        needs = [n for n in names if _matches(n, RULE_FIELDS.get(v.rule, ()))]
        return all(n in filled for n in needs)

    out.hard = [_item(v, names) for v in [*bad, *hard] if shown(v)]
    out.warn = [_item(v, names) for v in warn if shown(v)]
    if not bad:
        out.form = data
    return out
