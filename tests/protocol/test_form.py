"""Every rule of the C.Hasil form, on the real Kotabaru manifest, at both sides of its boundary.

The base form (tests/kit.py ``form_json``) is the issue's example: DPT 120 m + 131 f, turnout
100+110 (DPT) + 2+1 (DPTb) + 1+0 (DPK) = 214, votes 101 + 80 + 23 = 204 valid, 10 invalid,
ballots 257 = 214 used + 1 damaged + 42 unused. It breaks no rule and raises no warning, so each
case below changes just what it needs and states the exact rules it expects.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estafet.protocol.errors import FormError, SchemaError
from estafet.protocol.form import (
    MAX_COUNT,
    RULES,
    WARNING_RULES,
    PreviousLookup,
    check_form,
    check_or_raise,
    parse_form,
)
from estafet.protocol.manifest import Manifest, Tps
from estafet.protocol.photos import MAX_PHOTO_BYTES, PhotoRef, check_photos, sniff_type
from tests.kit import TPS_A, TPS_B, form_json, kotabaru_manifest

KOTABARU = kotabaru_manifest()
TANAH_LAUT_TPS = "6301012001001"  # in Kalimantan Selatan (gubernur) but not in Kotabaru (bupati)
WIDER = Manifest(
    name=KOTABARU.name,
    version=KOTABARU.version,
    elections=KOTABARU.elections,
    tps={**KOTABARU.tps, TANAH_LAUT_TPS: Tps(TANAH_LAUT_TPS)},
    regions=KOTABARU.regions,
)


def with_dpt(dpt: int | None) -> Manifest:
    return replace(KOTABARU, tps={**KOTABARU.tps, TPS_A: Tps(TPS_A, dpt)})


OLD_ID = bytes(range(32))
DELETE = object()


def edit(changes: dict[str, Any], election: str = "bupati", tps: str = TPS_A) -> dict[str, Any]:
    """The base form with dotted-path ``changes`` applied (``DELETE`` removes a key)."""
    form = copy.deepcopy(form_json(election, tps))
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = form
        for p in parents:
            node = node[p]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return form


def parse_rules(data: Any) -> set[str]:
    try:
        parse_form(data)
    except FormError as exc:
        assert exc.rules == [v.rule for v in exc.violations]
        return set(exc.rules)
    return set()


def outcome(
    changes: dict[str, Any],
    election: str = "bupati",
    tps: str = TPS_A,
    manifest: Manifest = KOTABARU,
    previous: PreviousLookup | None = None,
    require_previous: bool = False,
) -> tuple[set[str], set[str]]:
    form = parse_form(edit(changes, election, tps))
    bad, warn = check_form(form, manifest, previous, require_previous=require_previous)
    return {v.rule for v in bad}, {w.rule for w in warn}


def test_base_form_is_clean() -> None:
    assert outcome({}) == (set(), set())
    assert outcome({}, election="gubernur") == (set(), set())


@pytest.mark.parametrize("election", ["gubernur", "bupati"])
def test_every_kotabaru_tps_accepts_a_valid_form(election: str) -> None:
    for code in KOTABARU.tps_for(election):
        assert outcome({}, election=election, tps=code) == (set(), set()), code


# --- parse-time rules ----------------------------------------------------------------------

PARSE_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # form-keys
    ("unknown top key", {"extra": 1}, {"form-keys"}),
    ("missing invalid", {"invalid": DELETE}, {"form-keys"}),
    ("missing revision", {"revision": DELETE}, {"form-keys"}),
    ("missing supersedes", {"supersedes": DELETE}, {"form-keys"}),
    ("missing voters", {"voters": DELETE}, {"form-keys"}),
    ("missing turnout.dpk", {"turnout.dpk": DELETE}, {"form-keys"}),
    ("unknown ballots key", {"ballots.spoilt": 0}, {"form-keys"}),
    ("unknown key in m/f", {"disabled.x": 0}, {"form-keys"}),
    ("voters.dpt not an object", {"voters.dpt": [120, 131]}, {"form-keys"}),
    ("votes empty", {"votes": {}}, {"form-keys"}),
    ("votes a list", {"votes": [101, 80, 23]}, {"form-keys"}),
    # count-range: 0 and 999 pass, -1 and 1000 and non-integers fail
    ("count 0", {"ballots.damaged": 0, "ballots.unused": 43}, set()),
    ("count 999", {"ballots.unused": MAX_COUNT}, set()),
    ("count 1000", {"ballots.unused": MAX_COUNT + 1}, {"count-range"}),
    ("count -1", {"ballots.damaged": -1}, {"count-range"}),
    ("vote 1000", {"votes.1": 1000}, {"count-range"}),
    ("vote -1", {"votes.2": -1}, {"count-range"}),
    ("bool count", {"invalid": True}, {"count-range"}),
    ("float count", {"turnout.dptb.f": 1.0}, {"count-range"}),
    ("str count", {"valid": "204"}, {"count-range"}),
    ("null count", {"disabled.m": None}, {"count-range"}),
    # election-unknown (not an election kind at all)
    ("election dprd", {"election": "dprd"}, {"election-unknown"}),
    ("election capitalised", {"election": "Bupati"}, {"election-unknown"}),
    ("election null", {"election": None}, {"election-unknown"}),
    # tps-format
    ("tps 12 digits", {"tps": TPS_A[:-1]}, {"tps-format"}),
    ("tps 14 digits", {"tps": TPS_A + "1"}, {"tps-format"}),
    ("tps as int", {"tps": int(TPS_A)}, {"tps-format"}),
    ("tps with letter", {"tps": TPS_A[:-1] + "a"}, {"tps-format"}),
    ("tps padded", {"tps": " " + TPS_A}, {"tps-format"}),
    ("tps null", {"tps": None}, {"tps-format"}),
    # vote-keys (shape): ballot numbers 1..99 written plainly
    ("vote key 01", {"votes": {"01": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key 0", {"votes": {"0": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key 100", {"votes": {"100": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key letter", {"votes": {"a": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key empty", {"votes": {"": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key 1.0", {"votes": {"1.0": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key -1", {"votes": {"-1": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    ("vote key superscript", {"votes": {"\u00b2": 101, "1": 80, "3": 23}}, {"vote-keys"}),
    ("vote key arabic digit", {"votes": {"\u0661": 101, "2": 80, "3": 23}}, {"vote-keys"}),
    # revision-supersedes (shape)
    ("revision 99", {"revision": 99, "supersedes": OLD_ID.hex()}, set()),
    ("revision 100", {"revision": 100, "supersedes": OLD_ID.hex()}, {"revision-supersedes"}),
    ("revision -1", {"revision": -1}, {"revision-supersedes"}),
    ("revision bool", {"revision": True, "supersedes": OLD_ID.hex()}, {"revision-supersedes"}),
    ("revision str", {"revision": "1", "supersedes": OLD_ID.hex()}, {"revision-supersedes"}),
    ("supersedes upper hex", {"revision": 1, "supersedes": OLD_ID.hex().upper()}, set()),
    ("supersedes bytes", {"revision": 1, "supersedes": OLD_ID}, set()),
    ("supersedes not hex", {"revision": 1, "supersedes": "zz" * 32}, {"revision-supersedes"}),
    ("supersedes 31 bytes", {"revision": 1, "supersedes": "ab" * 31}, {"revision-supersedes"}),
    (
        "supersedes with spaces",
        {"revision": 1, "supersedes": "ab" * 31 + "  "},
        {"revision-supersedes"},
    ),
    ("supersedes short bytes", {"revision": 1, "supersedes": OLD_ID[:31]}, {"revision-supersedes"}),
    ("supersedes int", {"revision": 1, "supersedes": 5}, {"revision-supersedes"}),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_rules(changes: dict[str, Any], expected: set[str]) -> None:
    assert parse_rules(edit(changes)) == expected


@pytest.mark.parametrize("data", [None, [], "form", 5], ids=repr)
def test_a_form_that_is_not_an_object_is_refused(data: Any) -> None:
    assert {"form-keys", "tps-format", "election-unknown"} <= parse_rules(data)


def test_parse_reports_every_problem_at_once() -> None:
    data = edit({"valid": -1, "tps": "x", "extra": 0, "votes.1": True, "revision": 100})
    with pytest.raises(FormError) as exc:
        parse_form(data)
    assert set(exc.value.rules) == {"count-range", "tps-format", "form-keys", "revision-supersedes"}
    assert len([r for r in exc.value.rules if r == "count-range"]) == 2
    assert "valid = -1" in str(exc.value)


@pytest.mark.parametrize("election", ["gubernur", "bupati"])
@pytest.mark.parametrize("supersedes", [None, OLD_ID])
def test_json_and_wire_forms_round_trip(election: str, supersedes: bytes | None) -> None:
    changes = {"revision": 1 if supersedes else 0, "supersedes": supersedes}
    form = parse_form(edit(changes, election))
    assert parse_form(form.to_json()) == form
    assert parse_form(form.to_map()) == form
    assert form.to_json()["supersedes"] == (supersedes.hex() if supersedes else None)
    assert list(form.to_map()["votes"]) == [str(n) for n in range(1, len(form.votes) + 1)]


# --- check-time rules, against the manifest ------------------------------------------------


def prev(found: tuple[str, str, int] | None) -> PreviousLookup:
    def lookup(rid: bytes) -> tuple[str, str, int] | None:
        assert rid == OLD_ID
        return found

    return lookup


REV1 = {"revision": 1, "supersedes": OLD_ID.hex()}
REV2 = {"revision": 2, "supersedes": OLD_ID.hex()}
CHECK_CASES: list[tuple[str, dict[str, Any], dict[str, Any], set[str], set[str]]] = [
    # (id, form changes, outcome() keyword arguments, hard rules, warnings)
    # election-unknown: a real kind the Kotabaru manifest does not hold
    ("walikota", {}, {"election": "walikota"}, {"election-unknown"}, set()),
    # tps-unknown / tps-region
    ("tps not listed", {}, {"tps": "6302142001999"}, {"tps-unknown"}, set()),
    ("tps of another kabupaten", {}, {"tps": TANAH_LAUT_TPS}, {"tps-unknown"}, set()),
    (
        "bupati outside Kotabaru",
        {},
        {"tps": TANAH_LAUT_TPS, "manifest": WIDER},
        {"tps-region"},
        set(),
    ),
    (
        "gubernur there is fine",
        {},
        {"tps": TANAH_LAUT_TPS, "manifest": WIDER, "election": "gubernur"},
        set(),
        set(),
    ),
    # vote-keys: exactly the election's ballot numbers
    ("ballot 3 missing", {"votes": {"1": 101, "2": 103}}, {}, {"vote-keys"}, set()),
    ("ballot 4 extra", {"votes": {"1": 101, "2": 80, "3": 20, "4": 3}}, {}, {"vote-keys"}, set()),
    (
        "bupati votes for gubernur",
        {"votes": {"1": 101, "2": 80, "3": 23}},
        {"election": "gubernur"},
        {"vote-keys"},
        set(),
    ),
    # valid-sum
    ("valid above sum", {"valid": 205, "invalid": 9}, {}, {"valid-sum"}, set()),
    ("valid below sum", {"valid": 203, "invalid": 11}, {}, {"valid-sum"}, set()),
    # votes-exceed-turnout: valid + invalid == turnout passes, +1 fails
    (
        "cast = turnout + 1",
        {"invalid": 11, "ballots.used": 215, "ballots.unused": 41},
        {},
        {"votes-exceed-turnout"},
        set(),
    ),
    (
        "dptb counts in turnout",
        {"invalid": 11, "ballots.used": 215, "ballots.unused": 41, "turnout.dptb.m": 3},
        {},
        set(),
        set(),
    ),
    (
        "dpk counts in turnout",
        {"invalid": 11, "ballots.used": 215, "ballots.unused": 41, "turnout.dpk.f": 1},
        {},
        set(),
        set(),
    ),
    # turnout-exceeds-dpt, per sex
    ("turnout.dpt.m = dpt.m", {"voters.dpt.m": 100}, {}, set(), set()),
    ("turnout.dpt.m = dpt.m + 1", {"voters.dpt.m": 99}, {}, {"turnout-exceeds-dpt"}, set()),
    ("turnout.dpt.f = dpt.f", {"voters.dpt.f": 110}, {}, set(), set()),
    ("turnout.dpt.f = dpt.f + 1", {"voters.dpt.f": 109}, {}, {"turnout-exceeds-dpt"}, set()),
    # ballots-balance
    ("received + 1", {"ballots.received": 258}, {}, {"ballots-balance"}, set()),
    ("received - 1", {"ballots.received": 256}, {}, {"ballots-balance"}, set()),
    ("damaged - 1", {"ballots.damaged": 0}, {}, {"ballots-balance"}, set()),
    ("999 ballots balance", {"ballots.received": 999, "ballots.unused": 784}, {}, set(), set()),
    # disabled-exceeds-turnout
    ("disabled = turnout", {"disabled": {"m": 107, "f": 107}}, {}, set(), set()),
    (
        "disabled = turnout + 1",
        {"disabled": {"m": 108, "f": 107}},
        {},
        {"disabled-exceeds-turnout"},
        set(),
    ),
    # revision-supersedes, with and without a previous-lookup
    ("revision 1 without supersedes", {"revision": 1}, {}, {"revision-supersedes"}, set()),
    ("supersedes at revision 0", {"supersedes": OLD_ID.hex()}, {}, {"revision-supersedes"}, set()),
    ("no lookup", REV1, {}, set(), set()),
    ("unknown, not required", REV1, {"previous": prev(None)}, set(), set()),
    (
        "unknown, required",
        REV1,
        {"previous": prev(None), "require_previous": True},
        {"revision-supersedes"},
        set(),
    ),
    ("revises revision 0", REV1, {"previous": prev((TPS_A, "bupati", 0))}, set(), set()),
    ("revises revision 1", REV2, {"previous": prev((TPS_A, "bupati", 1))}, set(), set()),
    (
        "same revision",
        REV1,
        {"previous": prev((TPS_A, "bupati", 1))},
        {"revision-supersedes"},
        set(),
    ),
    (
        "older revision",
        REV1,
        {"previous": prev((TPS_A, "bupati", 2))},
        {"revision-supersedes"},
        set(),
    ),
    ("other TPS", REV1, {"previous": prev((TPS_B, "bupati", 0))}, {"revision-supersedes"}, set()),
    (
        "other election",
        REV1,
        {"previous": prev((TPS_A, "gubernur", 0))},
        {"revision-supersedes"},
        set(),
    ),
    # warnings: each fires exactly at its boundary
    (
        "cast = turnout - 1",
        {"invalid": 9, "ballots.used": 213, "ballots.unused": 43},
        {},
        set(),
        {"warn-turnout-unaccounted"},
    ),
    (
        "used = cast + 1",
        {"ballots.used": 215, "ballots.unused": 41},
        {},
        set(),
        {"warn-ballots-used"},
    ),
    (
        "used = cast - 1",
        {"ballots.used": 213, "ballots.unused": 43},
        {},
        set(),
        {"warn-ballots-used"},
    ),
    (
        "dpt 600",
        {"voters.dpt": {"m": 300, "f": 300}, "ballots.received": 600, "ballots.unused": 385},
        {},
        set(),
        set(),
    ),
    (
        "dpt 601",
        {"voters.dpt": {"m": 300, "f": 301}, "ballots.received": 601, "ballots.unused": 386},
        {},
        set(),
        {"warn-dpt-large"},
    ),
    ("received = dpt", {"ballots.received": 251, "ballots.unused": 36}, {}, set(), set()),
    (
        "received = dpt - 1",
        {"ballots.received": 250, "ballots.unused": 35},
        {},
        set(),
        {"warn-ballots-short"},
    ),
    ("dpt = manifest", {}, {"manifest": with_dpt(251)}, set(), set()),
    ("dpt = manifest + 1", {}, {"manifest": with_dpt(250)}, set(), {"warn-dpt-manifest"}),
    ("dpt = manifest - 1", {}, {"manifest": with_dpt(252)}, set(), {"warn-dpt-manifest"}),
    ("manifest without dpt", {"voters.dpt.m": 121}, {"manifest": with_dpt(None)}, set(), set()),
    # several at once
    (
        "hard and warning together",
        {"valid": 205},
        {},
        {"valid-sum", "votes-exceed-turnout"},
        {"warn-ballots-used"},
    ),
]


@pytest.mark.parametrize(
    ("changes", "kwargs", "hard", "warn"),
    [c[1:] for c in CHECK_CASES],
    ids=[c[0] for c in CHECK_CASES],
)
def test_check_rules(
    changes: dict[str, Any], kwargs: dict[str, Any], hard: set[str], warn: set[str]
) -> None:
    assert outcome(changes, **kwargs) == (hard, warn)
    assert warn <= WARNING_RULES and not hard & WARNING_RULES
    form = parse_form(edit(changes, kwargs.get("election", "bupati"), kwargs.get("tps", TPS_A)))
    manifest = kwargs.get("manifest", KOTABARU)
    if hard:
        with pytest.raises(FormError) as exc:
            check_or_raise(form, manifest, kwargs.get("previous"))
        assert hard <= set(exc.value.rules)
    elif "previous" not in kwargs:
        # warnings never block: signing goes ahead and carries them
        assert {w.rule for w in check_or_raise(form, manifest, kwargs.get("previous"))} == warn


def test_check_or_raise_requires_a_known_predecessor_when_given_a_lookup() -> None:
    form = parse_form(edit(REV1))
    assert check_or_raise(form, KOTABARU) == []
    with pytest.raises(FormError, match="not known here"):
        check_or_raise(form, KOTABARU, prev(None))


# --- photos ------------------------------------------------------------------------------


def refs(*spec: tuple[int, int, str]) -> list[PhotoRef]:
    return [PhotoRef(sheet, bytes(32), size, kind) for sheet, size, kind in spec]


GOOD3 = ((1, 2000, "jpeg"), (2, 2000, "png"), (3, 2000, "jpeg"))
PHOTO_CASES: list[tuple[str, tuple[tuple[int, int, str], ...], set[str]]] = [
    ("three sheets", GOOD3, set()),
    ("two photos", GOOD3[:2], {"photo-count"}),
    ("four photos", (*GOOD3, (3, 10, "jpeg")), {"photo-count"}),
    ("no photos", (), {"photo-count"}),
    ("sheet 2 twice", (GOOD3[0], GOOD3[1], (2, 10, "jpeg")), {"photo-sheets"}),
    ("sheet 4", (GOOD3[0], GOOD3[1], (4, 10, "jpeg")), {"photo-sheets"}),
    ("sheet 0", ((0, 10, "jpeg"), GOOD3[1], GOOD3[2]), {"photo-sheets"}),
    ("gif", (GOOD3[0], GOOD3[1], (3, 10, "gif")), {"photo-type"}),
    ("upper-case type", (GOOD3[0], GOOD3[1], (3, 10, "JPEG")), {"photo-type"}),
    ("size 1", ((1, 1, "jpeg"), GOOD3[1], GOOD3[2]), set()),
    ("size 0", ((1, 0, "jpeg"), GOOD3[1], GOOD3[2]), {"photo-size"}),
    ("size -1", ((1, -1, "jpeg"), GOOD3[1], GOOD3[2]), {"photo-size"}),
    ("size 15 MB", ((1, MAX_PHOTO_BYTES, "png"), GOOD3[1], GOOD3[2]), set()),
    ("size 15 MB + 1", ((1, MAX_PHOTO_BYTES + 1, "png"), GOOD3[1], GOOD3[2]), {"photo-size"}),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [c[1:] for c in PHOTO_CASES], ids=[c[0] for c in PHOTO_CASES]
)
def test_photo_rules(spec: tuple[tuple[int, int, str], ...], expected: set[str]) -> None:
    assert {v.rule for v in check_photos(refs(*spec))} == expected


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00", "png"),
        (b"\xff\xd8", None),
        (b"GIF89a", None),
        (b"\x89PNG\r\n", None),
        (b"", None),
    ],
)
def test_photo_type_by_magic_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_type(head) == kind


@pytest.mark.parametrize(
    "m",
    [
        None,
        {"sheet": 1, "sha256": bytes(32), "size": 1},
        {"sheet": 1, "sha256": bytes(32), "size": 1, "type": "jpeg", "x": 0},
        {"sheet": True, "sha256": bytes(32), "size": 1, "type": "jpeg"},
        {"sheet": 1, "sha256": bytes(31), "size": 1, "type": "jpeg"},
        {"sheet": 1, "sha256": "00" * 32, "size": 1, "type": "jpeg"},
        {"sheet": 1, "sha256": bytes(32), "size": 1.0, "type": "jpeg"},
        {"sheet": 1, "sha256": bytes(32), "size": 1, "type": None},
    ],
)
def test_photo_entry_shape(m: Any) -> None:
    with pytest.raises(SchemaError):
        PhotoRef.from_map(m)


def test_photo_entry_round_trip() -> None:
    ref = PhotoRef(2, bytes(range(32)), 12345, "png")
    assert PhotoRef.from_map(ref.to_map()) == ref


# --- properties and completeness -------------------------------------------------------------

counts = st.one_of(st.integers(-2, 1001), st.sampled_from([None, True, 1.5, "7"]))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "valid",
                "invalid",
                "votes.1",
                "votes.3",
                "ballots.received",
                "ballots.used",
                "turnout.dpt.m",
                "turnout.dptb.f",
                "voters.dpt.f",
                "disabled.m",
                "revision",
            ]
        ),
        counts,
        max_size=5,
    ),
    st.sampled_from(["gubernur", "bupati", "walikota"]),
)
def test_any_form_yields_only_named_rules(changes: dict[str, Any], election: str) -> None:
    data = edit(changes, election)
    try:
        form = parse_form(data)
    except FormError as exc:
        assert set(exc.rules) <= set(RULES) - WARNING_RULES
        return
    bad, warn = check_form(form, KOTABARU)
    assert {v.rule for v in bad} <= set(RULES) - WARNING_RULES
    assert {w.rule for w in warn} <= WARNING_RULES


def test_rule_names_are_stable() -> None:
    assert set(RULES) - WARNING_RULES == {
        "form-keys",
        "count-range",
        "election-unknown",
        "tps-format",
        "tps-unknown",
        "tps-region",
        "vote-keys",
        "valid-sum",
        "votes-exceed-turnout",
        "turnout-exceeds-dpt",
        "ballots-balance",
        "disabled-exceeds-turnout",
        "revision-supersedes",
        "photo-count",
        "photo-sheets",
        "photo-type",
        "photo-size",
    }
    assert {
        "warn-turnout-unaccounted",
        "warn-ballots-used",
        "warn-dpt-large",
        "warn-ballots-short",
        "warn-dpt-manifest",
    } == WARNING_RULES


def test_every_rule_has_a_test_case() -> None:
    expected = set()
    for _, _, rules in PARSE_CASES:
        expected |= rules
    for _, _, _, hard, warn in CHECK_CASES:
        expected |= hard | warn
    for _, _, rules in PHOTO_CASES:
        expected |= rules
    assert expected == set(RULES)
