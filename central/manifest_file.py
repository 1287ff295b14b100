"""Reading the KPU's election manifest files: one TOML file plus CSV files beside it.

This module owns the file format (documented in ``docs/manifest.md``): it reads the TOML, the TPS
CSV and the optional kecamatan/desa name CSVs, checks every row with its file and line number so
a KPU officer can fix the file, and hands the parsed data to
:func:`estafet.protocol.manifest.build_manifest`, which owns the validation of the data itself.
CSV files may begin with comment lines starting with ``#``; blank lines are skipped.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from estafet.protocol.errors import ManifestError
from estafet.protocol.manifest import Election, Manifest, build_manifest, is_tps_code

from .errors import ManifestFileError

TOP_KEYS = frozenset({"name", "tps_csv", "kecamatan_csv", "desa_csv", "regions", "election"})
ELECTION_KEYS = frozenset({"kind", "region", "ballot_numbers"})
ELECTION_OPTIONAL = frozenset({"pairs"})
MAX_DPT = 99_999

Row = tuple[int, dict[str, str]]
"""A CSV row with the line number (1-based, in the file) it ended on."""


def load_manifest_file(path: Path, version: int = 1) -> Manifest:
    """Read a manifest TOML file and the CSV files it names. Raises :class:`ManifestFileError`."""
    path = Path(path)
    doc = _read_toml(path)
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ManifestFileError(f"{path}: 'name' must be a non-empty string")
    elections = _elections(path, doc.get("election"))
    tps_path = _named_file(path, doc, "tps_csv", required=True)
    assert tps_path is not None
    tps_rows = _tps_rows(tps_path, elections)
    regions = _regions(path, doc, tps_path)
    try:
        return build_manifest(
            name=name.strip(),
            version=version,
            elections=[e.to_map() for e in elections],
            tps_rows=[row for _, row in tps_rows],
            regions=regions,
        )
    except ManifestError as exc:
        raise ManifestFileError(f"{path}: {exc}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestFileError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestFileError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestFileError(f"{path}: bad TOML: {exc}") from exc
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ManifestFileError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}"
        )
    return doc


def _elections(path: Path, raw: Any) -> list[Election]:
    if not isinstance(raw, list) or not raw:
        raise ManifestFileError(f"{path}: at least one [[election]] table is required")
    out = []
    for i, e in enumerate(raw, 1):
        where = f"{path}: [[election]] #{i}"
        if not isinstance(e, dict):
            raise ManifestFileError(f"{where}: must be a table")
        if not ELECTION_KEYS <= set(e) <= ELECTION_KEYS | ELECTION_OPTIONAL:
            raise ManifestFileError(
                f"{where}: needs the keys kind, region, ballot_numbers (and optionally pairs); "
                f"got {', '.join(sorted(e))}"
            )
        if not isinstance(e["kind"], str) or not isinstance(e["region"], str):
            raise ManifestFileError(f"{where}: kind and region must be quoted strings")
        nums = e["ballot_numbers"]
        if not isinstance(nums, list):
            raise ManifestFileError(f"{where}: ballot_numbers must be a list of integers")
        pairs = e.get("pairs", [])
        if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
            raise ManifestFileError(f"{where}: pairs must be a list of quoted names")
        try:
            out.append(
                Election(
                    kind=e["kind"],
                    region=e["region"],
                    ballot_numbers=tuple(nums),
                    pairs=tuple(p.strip() for p in pairs),
                )
            )
        except ManifestError as exc:
            raise ManifestFileError(f"{where}: {exc}") from exc
    return out


def _named_file(path: Path, doc: dict[str, Any], key: str, *, required: bool) -> Path | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise ManifestFileError(f"{path}: '{key}' (a path relative to this file) is required")
        return None
    if not isinstance(value, str) or not value:
        raise ManifestFileError(f"{path}: '{key}' must be a file path string")
    found = path.parent / value
    if not found.is_file():
        raise ManifestFileError(f"{path}: {key} file {found} not found")
    return found


def read_csv(path: Path, required: tuple[str, ...]) -> list[Row]:
    """Rows of a CSV file as dicts, skipping ``#`` comment lines and blank lines."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except FileNotFoundError as exc:
        raise ManifestFileError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestFileError(f"{path}: cannot read as UTF-8: {exc}") from exc
    kept = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip() and not ln.startswith("#")]
    reader = csv.reader(ln for _, ln in kept)
    rows: list[Row] = []
    header: list[str] | None = None
    try:
        for fields in reader:
            line = kept[reader.line_num - 1][0]
            if header is None:
                header = [f.strip() for f in fields]
                missing = [c for c in required if c not in header]
                if missing:
                    raise ManifestFileError(
                        f"{path}:{line}: header lacks column(s) {', '.join(missing)}"
                    )
                continue
            if len(fields) != len(header):
                raise ManifestFileError(
                    f"{path}:{line}: {len(fields)} fields, the header has {len(header)}"
                )
            rows.append((line, {k: v.strip() for k, v in zip(header, fields, strict=True)}))
    except csv.Error as exc:
        line = kept[min(reader.line_num, len(kept)) - 1][0] if kept else 0
        raise ManifestFileError(f"{path}:{line}: bad CSV: {exc}") from exc
    if header is None:
        raise ManifestFileError(f"{path}: empty file (no header line)")
    return rows


def _tps_rows(path: Path, elections: list[Election]) -> list[Row]:
    rows = read_csv(path, ("code",))
    seen: dict[str, int] = {}
    for line, row in rows:
        _check_tps_row(path, line, row, elections)
        code = row["code"]
        if code in seen:
            raise ManifestFileError(
                f"{path}:{line}: TPS {code} already listed on line {seen[code]}"
            )
        seen[code] = line
    if not rows:
        raise ManifestFileError(f"{path}: lists no TPS")
    return rows


def _check_tps_row(path: Path, line: int, row: dict[str, str], elections: list[Election]) -> None:
    where = f"{path}:{line}"
    code = row["code"]
    if not is_tps_code(code):
        raise ManifestFileError(f"{where}: bad TPS code {code!r} (expected 13 digits)")
    desa = row.get("desa_code", "")
    if desa and desa != code[:10]:
        raise ManifestFileError(f"{where}: desa_code {desa} does not match TPS code {code}")
    number = row.get("number", "")
    if number and (not number.isdigit() or int(number) != int(code[10:])):
        raise ManifestFileError(f"{where}: number {number!r} does not match TPS code {code}")
    dpt = row.get("dpt", "")
    if dpt and (not dpt.isdigit() or int(dpt) > MAX_DPT):
        raise ManifestFileError(f"{where}: dpt {dpt!r} is not a whole number up to {MAX_DPT}")
    if not any(e.covers(code) for e in elections):
        raise ManifestFileError(f"{where}: TPS {code} lies outside every election's region")


def _regions(path: Path, doc: dict[str, Any], tps_path: Path) -> dict[str, str]:
    regions: dict[str, str] = {}
    extra = doc.get("regions", {})
    if not isinstance(extra, dict):
        raise ManifestFileError(f"{path}: [regions] must be a table of code = name")
    for code, name in extra.items():
        if not isinstance(name, str) or not code.isdigit() or len(code) not in (2, 4, 6, 10):
            raise ManifestFileError(f"{path}: [regions] {code!r}: a region code = a name string")
        regions[code] = name
    for key, digits in (("kecamatan_csv", 6), ("desa_csv", 10)):
        csv_path = _named_file(path, doc, key, required=False)
        if csv_path is None:
            beside = tps_path.parent / key.replace("_csv", ".csv")
            csv_path = beside if beside.is_file() else None
        if csv_path is not None:
            regions.update(_region_names(csv_path, digits))
    return regions


def _region_names(path: Path, digits: int) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for line, row in read_csv(path, ("code", "name")):
        code, name = row["code"], row["name"]
        if not code.isdigit() or len(code) != digits:
            raise ManifestFileError(f"{path}:{line}: bad code {code!r} (expected {digits} digits)")
        if not name or len(name) > 200:
            raise ManifestFileError(f"{path}:{line}: name must be 1..200 characters")
        if code in seen:
            raise ManifestFileError(f"{path}:{line}: code {code} listed twice")
        seen.add(code)
        yield code, name
