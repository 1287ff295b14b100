"""Manifest files: the Kotabaru fixture loads as it is; broken files name file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from estafet.central.errors import ManifestFileError
from estafet.central.manifest_file import load_manifest_file
from estafet.protocol import codec
from estafet.protocol.manifest import Manifest
from tests.kit import FIXTURES, kotabaru_manifest


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the Kotabaru fixture; returns the TOML path."""
    for name in ("elections.toml", "tps.csv", "kecamatan.csv", "desa.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    return tmp_path / "elections.toml"


def edit_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_kotabaru_fixture_loads_as_it_is() -> None:
    m = load_manifest_file(FIXTURES / "elections.toml")
    assert m.name == "Pilkada 2024 - Kabupaten Kotabaru"
    assert [(e.kind, e.region, e.ballot_numbers) for e in m.elections] == [
        ("gubernur", "63", (1, 2)),
        ("bupati", "6302", (1, 2, 3)),
    ]
    assert len(m.tps) == 551
    assert m.region_name("630214") == "Hampang"
    assert m.region_name("6302012001") == "Labuan Barat"
    assert m.to_map() == kotabaru_manifest().to_map()
    assert load_manifest_file(FIXTURES / "elections.toml", version=3).version == 3


def test_region_files_are_optional(copy: Path) -> None:
    (copy.parent / "kecamatan.csv").unlink()
    (copy.parent / "desa.csv").unlink()
    m = load_manifest_file(copy)
    assert len(m.tps) == 551 and m.regions == {}


def test_named_region_files_and_regions_table(copy: Path) -> None:
    (copy.parent / "kecamatan.csv").rename(copy.parent / "kec.csv")
    text = copy.read_text(encoding="utf-8")
    text = text.replace(
        'tps_csv = "tps.csv"',
        'tps_csv = "tps.csv"\nkecamatan_csv = "kec.csv"\n\n[regions]\n"6302" = "Kotabaru"',
    )
    copy.write_text(text, encoding="utf-8")
    m = load_manifest_file(copy)
    assert m.region_name("630214") == "Hampang"
    assert m.region_name("6302") == "Kotabaru"


def test_bad_tps_code_names_file_and_line(copy: Path) -> None:
    tps = copy.parent / "tps.csv"
    edit_line(tps, 10, "63020120010,6302012001,9,")
    with pytest.raises(ManifestFileError, match=r"tps\.csv:10: bad TPS code"):
        load_manifest_file(copy)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("6302012001001,6302012002,1,", "desa_code 6302012002 does not match"),
        ("6302012001001,6302012001,7,", "number '7' does not match"),
        ("6302012001001,6302012001,1,many", "dpt 'many'"),
        ("6302012001001,6302012001,1", "3 fields, the header has 4"),
        ("6402012001001,6402012001,1,", "outside every election's region"),
    ],
)
def test_bad_rows(copy: Path, row: str, message: str) -> None:
    edit_line(copy.parent / "tps.csv", 3, row)
    with pytest.raises(ManifestFileError, match=r"tps\.csv:3: ") as info:
        load_manifest_file(copy)
    assert message in str(info.value)


def test_duplicate_tps_names_both_lines(copy: Path) -> None:
    tps = copy.parent / "tps.csv"
    edit_line(tps, 20, tps.read_text(encoding="utf-8").splitlines()[2])
    with pytest.raises(
        ManifestFileError, match=r"tps\.csv:20: TPS 6302012001001 already listed on line 3"
    ):
        load_manifest_file(copy)


def test_bad_toml_names_the_line(copy: Path) -> None:
    edit_line(copy, 9, "kind = gubernur")
    with pytest.raises(ManifestFileError, match=r"elections\.toml: bad TOML: .*line 9"):
        load_manifest_file(copy)


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ('tps_csv = "tps.csv"', 'tps_csv = "nope.csv"', "tps_csv file .*nope.csv not found"),
        ('tps_csv = "tps.csv"', "", "'tps_csv' .* is required"),
        ('name = "Pilkada', 'nama = "Pilkada', "unknown key\\(s\\) nama"),
        (
            "ballot_numbers = [1, 2, 3]",
            "ballot_numbers = [1, 1]",
            "ballot numbers must be distinct",
        ),
        ('region = "6302"', "region = 6302", "must be quoted strings"),
        ('kind = "bupati"', 'kind = "presiden"', "unknown election kind"),
    ],
)
def test_bad_toml_content(copy: Path, before: str, after: str, message: str) -> None:
    copy.write_text(copy.read_text(encoding="utf-8").replace(before, after), encoding="utf-8")
    with pytest.raises(ManifestFileError, match=message):
        load_manifest_file(copy)


def test_missing_files(tmp_path: Path, copy: Path) -> None:
    with pytest.raises(ManifestFileError, match="file not found"):
        load_manifest_file(tmp_path / "absent.toml")
    edit_line(copy.parent / "desa.csv", 4, "63020120,Teluk Sungai,630201,2")
    with pytest.raises(ManifestFileError, match=r"desa\.csv:4: bad code '63020120'"):
        load_manifest_file(copy)


def test_header_without_code_column(copy: Path) -> None:
    edit_line(copy.parent / "tps.csv", 2, "kode,desa_code,number,dpt")
    with pytest.raises(ManifestFileError, match=r"tps\.csv:2: header lacks column\(s\) code"):
        load_manifest_file(copy)


PAIRS = 'pairs = ["Satu & Dua", "Tiga <b>&</b> Empat", "Lima & Enam"]'


def test_pair_names_travel_in_the_signed_manifest(copy: Path) -> None:
    text = copy.read_text(encoding="utf-8")
    copy.write_text(
        text.replace("ballot_numbers = [1, 2, 3]", f"ballot_numbers = [1, 2, 3]\n{PAIRS}")
    )
    m = load_manifest_file(copy)
    bupati = m.election("bupati")
    assert bupati is not None and bupati.pair_names()["2"] == "Tiga <b>&</b> Empat"
    again = Manifest.from_map(codec.decode(codec.encode(m.to_map())))
    assert again.election("bupati") == bupati
    gubernur = m.election("gubernur")
    assert gubernur is not None and gubernur.pairs == () and "pairs" not in gubernur.to_map()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ('pairs = ["A", "B"]', "pairs must name every ballot number"),
        ('pairs = ["A", "", "C"]', "pair name must be 1..120"),
        ('pairs = "A, B, C"', "pairs must be a list"),
        ('pairs = ["A", 2, "C"]', "pairs must be a list"),
        ('pars = ["A", "B", "C"]', "optionally pairs"),
    ],
)
def test_bad_pair_names(copy: Path, pairs: str, message: str) -> None:
    text = copy.read_text(encoding="utf-8")
    copy.write_text(
        text.replace("ballot_numbers = [1, 2, 3]", f"ballot_numbers = [1, 2, 3]\n{pairs}")
    )
    with pytest.raises(ManifestFileError, match=message):
        load_manifest_file(copy)
