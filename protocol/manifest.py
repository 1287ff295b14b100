"""The election manifest: which elections are held where, their ballot numbers, and the TPS list.

A manifest is signed by the KPU root key and travels as an object of kind ``manifest``. It is
built from a TOML file plus a TPS CSV by ``relay/`` (which does the file reading); this module
only validates and answers questions about the data: is this TPS known, in which kecamatan is it,
which ballot numbers does an election have.

Region codes follow Kemendagri: 2 digits province, 4 kabupaten/kota, 6 kecamatan, 10 desa,
and a TPS code is the 10-digit desa code plus a 3-digit TPS number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError

ELECTION_KINDS = ("gubernur", "bupati", "walikota")
TPS_RE = re.compile(r"^[0-9]{13}$")
REGION_RE = re.compile(r"^(?:[0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{10}|[0-9]{13})$")


def is_tps_code(code: object) -> bool:
    return isinstance(code, str) and TPS_RE.fullmatch(code) is not None


def is_region_code(code: object) -> bool:
    return isinstance(code, str) and REGION_RE.fullmatch(code) is not None


def kecamatan_of(tps: str) -> str:
    return tps[:6]


def desa_of(tps: str) -> str:
    return tps[:10]


MAX_PAIR_NAME = 120


@dataclass(frozen=True, slots=True)
class Election:
    """One election. ``pairs`` optionally names the candidate pair of each ballot number, in the
    order of ``ballot_numbers`` (empty: the dashboard shows numbers only)."""

    kind: str
    region: str
    ballot_numbers: tuple[int, ...]
    pairs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ELECTION_KINDS:
            raise ManifestError(f"unknown election kind {self.kind!r}; use {ELECTION_KINDS}")
        if not is_region_code(self.region) or len(self.region) > 4:
            raise ManifestError(f"election region must be a 2- or 4-digit code: {self.region!r}")
        nums = self.ballot_numbers
        if not nums or any(not isinstance(n, int) or isinstance(n, bool) for n in nums):
            raise ManifestError(f"{self.kind}: ballot_numbers must be a non-empty integer list")
        if len(set(nums)) != len(nums) or any(n < 1 or n > 99 for n in nums):
            raise ManifestError(f"{self.kind}: ballot numbers must be distinct, 1..99")
        if self.pairs and len(self.pairs) != len(nums):
            raise ManifestError(f"{self.kind}: pairs must name every ballot number, in order")
        if any(
            not isinstance(p, str) or not p.strip() or len(p) > MAX_PAIR_NAME for p in self.pairs
        ):
            raise ManifestError(f"{self.kind}: a pair name must be 1..{MAX_PAIR_NAME} characters")

    def pair_names(self) -> dict[str, str]:
        """Ballot number (as a string, like the tally's keys) -> pair name; empty if unnamed."""
        return {str(n): p for n, p in zip(self.ballot_numbers, self.pairs, strict=False)}

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "kind": self.kind,
            "region": self.region,
            "ballot_numbers": list(self.ballot_numbers),
        }
        if self.pairs:  # absent when unnamed: manifests without names encode as before
            m["pairs"] = list(self.pairs)
        return m

    @classmethod
    def from_map(cls, e: Mapping[str, Any]) -> Election:
        pairs = e.get("pairs") or ()
        if not isinstance(pairs, list | tuple):
            raise ManifestError("election pairs must be a list of names")
        return cls(
            kind=str(e["kind"]),
            region=str(e["region"]),
            ballot_numbers=tuple(e["ballot_numbers"]),
            pairs=tuple(pairs),
        )

    def covers(self, tps: str) -> bool:
        return tps.startswith(self.region)


@dataclass(frozen=True, slots=True)
class Tps:
    code: str
    dpt: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Validated manifest content. ``regions`` maps kecamatan/desa codes to names (optional)."""

    name: str
    version: int
    elections: tuple[Election, ...]
    tps: Mapping[str, Tps]
    regions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 200:
            raise ManifestError("manifest name must be 1..200 characters")
        if self.version < 1:
            raise ManifestError("manifest version must be >= 1")
        kinds = [e.kind for e in self.elections]
        if not kinds:
            raise ManifestError("manifest names no election")
        if len(set(kinds)) != len(kinds):
            raise ManifestError("an election kind appears twice")
        if not self.tps:
            raise ManifestError("manifest lists no TPS")
        for code in self.tps:
            if not is_tps_code(code):
                raise ManifestError(f"bad TPS code {code!r}: expected 13 digits")
            if not any(e.covers(code) for e in self.elections):
                raise ManifestError(f"TPS {code} lies outside every election's region")

    def election(self, kind: str) -> Election | None:
        for e in self.elections:
            if e.kind == kind:
                return e
        return None

    def tps_for(self, kind: str) -> list[str]:
        e = self.election(kind)
        return sorted(c for c in self.tps if e is not None and e.covers(c))

    def region_name(self, code: str) -> str:
        return self.regions.get(code, code)

    # --- wire form ----------------------------------------------------------------------
    def to_map(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "elections": [e.to_map() for e in self.elections],
            "tps": [[t.code, t.dpt] for t in sorted(self.tps.values(), key=lambda t: t.code)],
            "regions": [[code, name] for code, name in sorted(self.regions.items())],
        }

    @classmethod
    def from_map(cls, m: Mapping[str, Any]) -> Manifest:
        try:
            elections = tuple(Election.from_map(e) for e in m["elections"])
            tps = {}
            for row in m["tps"]:
                code, dpt = row
                if dpt is not None and (not isinstance(dpt, int) or isinstance(dpt, bool)):
                    raise ManifestError(f"TPS {code}: dpt must be an integer")
                tps[code] = Tps(code, dpt)
            regions = dict(m.get("regions") or [])
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in regions.items()):
                raise ManifestError("regions must be a list of [code, name] pairs")
            return cls(
                name=str(m["name"]),
                version=int(m["version"]),
                elections=elections,
                tps=tps,
                regions=dict(regions),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"malformed manifest: {type(exc).__name__}: {exc}") from exc


def build_manifest(
    *,
    name: str,
    version: int,
    elections: Iterable[Mapping[str, Any]],
    tps_rows: Iterable[Mapping[str, str]],
    regions: Mapping[str, str] | None = None,
) -> Manifest:
    """Build a manifest from parsed TOML election tables and CSV rows (code, desa_code, number,
    dpt). Row problems are reported with the row's position so a KPU officer can fix the file."""
    els = []
    for i, e in enumerate(elections, 1):
        try:
            els.append(Election.from_map(e))
        except KeyError as exc:
            raise ManifestError(f"election #{i}: missing key {exc}") from exc
    tps: dict[str, Tps] = {}
    for i, row in enumerate(tps_rows, 1):
        code = (row.get("code") or "").strip()
        if not is_tps_code(code):
            raise ManifestError(f"TPS row {i}: bad code {code!r} (expected 13 digits)")
        desa = (row.get("desa_code") or "").strip()
        if desa and desa != code[:10]:
            raise ManifestError(f"TPS row {i}: desa_code {desa} does not match code {code}")
        number = (row.get("number") or "").strip()
        if number and (not number.isdigit() or int(number) != int(code[10:])):
            raise ManifestError(f"TPS row {i}: number {number} does not match code {code}")
        dpt_s = (row.get("dpt") or "").strip()
        if dpt_s and not dpt_s.isdigit():
            raise ManifestError(f"TPS row {i}: dpt {dpt_s!r} is not a whole number")
        if code in tps:
            raise ManifestError(f"TPS row {i}: {code} listed twice")
        tps[code] = Tps(code, int(dpt_s) if dpt_s else None)
    return Manifest(
        name=name, version=version, elections=tuple(els), tps=tps, regions=dict(regions or {})
    )
