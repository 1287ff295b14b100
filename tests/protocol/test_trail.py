"""The paper trail's pure parts: key codes a chair types, and the plenary's arithmetic rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estafet.protocol.errors import SchemaError
from estafet.protocol.plenary import Numbers, check_dhasil, latest_corrections, latest_dhasil
from estafet.protocol.trail import DHasilBody, key_code, parse_key_code


@given(st.binary(min_size=32, max_size=32))
def test_key_codes_round_trip_in_any_case_and_spacing(key: bytes) -> None:
    code = key_code(key)
    assert len(code.split("-")) == 14
    assert parse_key_code(code.lower().replace("-", " ")) == key


@given(st.binary(min_size=32, max_size=32), st.integers(0, 55), st.sampled_from("ABCXYZ2367"))
def test_one_mistyped_character_is_refused(key: bytes, at: int, c: str) -> None:
    text = key_code(key).replace("-", "")
    if text[at] == c:
        return
    with pytest.raises(SchemaError):
        parse_key_code(text[:at] + c + text[at + 1 :])


def test_short_or_foreign_codes_are_refused() -> None:
    for bad in ("", "ABCD", "0" * 56, "é" * 56):
        with pytest.raises(SchemaError):
            parse_key_code(bad)


R1, R2 = b"\x01" * 32, b"\x02" * 32
N1 = Numbers("6302142001001", "bupati", {"1": 10, "2": 5}, 15, 1)
N2 = Numbers("6302142001002", "bupati", {"1": 3, "2": 7}, 10, 0)


def _dhasil(
    votes: dict[str, int], valid: int, invalid: int, results: tuple[bytes, ...]
) -> DHasilBody:
    return DHasilBody("630214", "bupati", votes, valid, invalid, results, ())


def test_dhasil_sum_boundary() -> None:
    ok = _dhasil({"1": 13, "2": 12}, 25, 1, (R1, R2))
    assert check_dhasil(ok, {R1: N1, R2: N2}, {}) == []
    off = _dhasil({"1": 14, "2": 12}, 26, 1, (R1, R2))
    assert [p.rule for p in check_dhasil(off, {R1: N1, R2: N2}, {})] == ["dhasil-sum"]
    assert [p.rule for p in check_dhasil(ok, {R1: N1}, {})] == ["dhasil-missing"]


def test_two_results_for_one_tps_or_another_kecamatan_are_named() -> None:
    twin = Numbers(N1.tps, "bupati", N2.votes, N2.valid, N2.invalid)
    body = _dhasil({"1": 13, "2": 12}, 25, 1, (R1, R2))
    assert "dhasil-duplicate" in [p.rule for p in check_dhasil(body, {R1: N1, R2: twin}, {})]
    far = Numbers("6302010001001", "bupati", N2.votes, N2.valid, N2.invalid)
    assert "dhasil-scope" in [p.rule for p in check_dhasil(body, {R1: N1, R2: far}, {})]


def test_the_latest_signed_correction_and_dhasil_stand() -> None:
    from estafet.protocol.form import parse_form
    from estafet.protocol.trail import CorrectionBody
    from tests.kit import form_json

    form = parse_form(form_json())
    early, late = CorrectionBody(R1, form, "first", ()), CorrectionBody(R1, form, "second", ())
    c1, c2 = b"\x09" * 32, b"\x08" * 32
    assert latest_corrections([(c1, 100, early), (c2, 200, late)]) == {R1: (c2, late)}
    assert latest_corrections([(c1, 200, early), (c2, 200, late)]) == {R1: (c1, early)}  # id
    d_old, d_new = _dhasil({"1": 0}, 0, 0, ()), _dhasil({"1": 1}, 1, 0, ())
    assert latest_dhasil([(c1, 300, d_new), (c2, 100, d_old)]) == {("630214", "bupati"): c1}
