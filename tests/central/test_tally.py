"""Tally and progress over every Kotabaru TPS, checked against sums computed independently."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from estafet.central.ingest import Central
from estafet.crypto.trust import Verified
from estafet.protocol.objects import Envelope, ResultBody
from estafet.protocol.tally import resolve_slot, tally_from_results
from tests.kit import NOW, World

from .conftest import photo_hashes, result, world_authority


def random_form(rng: random.Random, election: str) -> dict[str, Any]:
    """Counts that satisfy every hard rule: votes + invalid never exceed the turnout of 214."""
    n = 2 if election == "gubernur" else 3
    votes = {str(i): rng.randint(0, 200 // n) for i in range(1, n + 1)}
    return {"votes": votes, "valid": sum(votes.values()), "invalid": rng.randint(0, 10)}


@pytest.fixture(scope="module")
def everything() -> tuple[World, list[Envelope], dict[str, dict[str, Any]]]:
    """One signed result per TPS per election (1102), and the forms that went into them."""
    world, rng = World(), random.Random(2024)
    envs, forms = [], {}
    for tps in sorted(world.manifest.tps):
        key, cert = world.officer(f"chair-{tps}", scope=(tps,))
        for election in ("gubernur", "bupati"):
            form = random_form(rng, election)
            forms[f"{tps}/{election}"] = form
            envs.append(result(world, key, cert, election=election, tps=tps, **form))
    return world, envs, forms


def expected_sums(
    forms: dict[str, dict[str, Any]], election: str, prefix: str = ""
) -> Counter[str]:
    total: Counter[str] = Counter()
    for slot, form in forms.items():
        tps, kind = slot.split("/")
        if kind == election and tps.startswith(prefix):
            total.update(form["votes"])
            total["valid"] += form["valid"]
            total["invalid"] += form["invalid"]
    return total


def test_tally_of_all_kotabaru_tps(everything: Any, tmp_path: Any) -> None:
    world, envs, forms = everything
    authority = world_authority(world, tmp_path / "central")
    central = Central(authority.home, authority)
    try:
        for i, env in enumerate(envs):
            assert central.ingest(env.encode(), NOW + i)[1] == "accepted"
        with_photos = envs[::7]
        for env in with_photos:
            for h in photo_hashes(env):
                central.note_blob(h, NOW)
        status = central.status()
    finally:
        central.close()
    for election in status["elections"]:
        kind = election["kind"]
        want = expected_sums(forms, kind)
        assert election["tps_expected"] == election["tps_accepted"] == 551
        assert election["tps_missing"] == election["tps_conflict"] == 0
        assert election["tally"] == {b: want[b] for b in election["tally"]}
        assert (election["valid"], election["invalid"]) == (want["valid"], want["invalid"])
        photos = sum(1 for e in with_photos if e.election == kind)
        assert election["tps_photos_complete"] == photos
        assert len(election["kecamatan"]) == 22
        for kec in election["kecamatan"]:
            want = expected_sums(forms, kind, kec["code"])
            assert kec["tally"] == {b: want[b] for b in kec["tally"]}
            assert kec["tps_accepted"] == kec["tps_expected"] and kec["missing"] == []
            for desa in kec["desa"]:
                want = expected_sums(forms, kind, desa["code"])
                assert desa["tally"] == {b: want[b] for b in desa["tally"]}
        assert sum(k["tps_expected"] for k in election["kecamatan"]) == 551
        assert [k["code"] for k in election["kabupaten"]] == ["6302"]
    hampang = next(k for k in status["elections"][1]["kecamatan"] if k["code"] == "630214")
    assert (hampang["name"], hampang["tps_expected"]) == ("Hampang", 23)


def held(verified: list[Verified]) -> list[tuple[bytes, ResultBody, bytes]]:
    out = []
    for v in verified:
        assert isinstance(v.envelope.body, ResultBody)
        out.append((v.id, v.envelope.body, v.signer.key_id))
    return out


def test_a_gateway_sees_the_same_view(everything: Any) -> None:
    world, envs, forms = everything
    trust = world.trust()
    verified = [trust.verify(env, NOW) for env in envs if env.tps.startswith("630214")]
    view = tally_from_results(world.manifest, held(verified), region_prefix="630214")
    for election in view["elections"]:
        want = expected_sums(forms, election["kind"], "630214")
        assert election["tps_expected"] == election["tps_accepted"] == 23
        assert election["tally"] == {b: want[b] for b in election["tally"]}
        assert [k["code"] for k in election["kecamatan"]] == ["630214"]
    # without a region the rest of the kabupaten is simply missing
    whole = tally_from_results(world.manifest, held(verified))
    bupati = whole["elections"][1]
    assert (bupati["tps_accepted"], bupati["tps_missing"]) == (23, 551 - 23)
    pulau = next(k for k in bupati["kecamatan"] if k["code"] == "630201")
    assert pulau["missing"] == sorted(t for t in world.manifest.tps if t.startswith("630201"))


def test_partial_progress_and_missing_lists(everything: Any, tmp_path: Any) -> None:
    world, envs, _ = everything
    authority = world_authority(world, tmp_path / "central")
    central = Central(authority.home, authority)
    try:
        sent = [e for e in envs if e.election == "bupati" and e.tps.startswith("630201")][:5]
        for env in sent:
            central.ingest(env.encode(), NOW)
        bupati = central.status()["elections"][1]
    finally:
        central.close()
    kec = next(k for k in bupati["kecamatan"] if k["code"] == "630201")
    assert (kec["tps_expected"], kec["tps_accepted"], len(kec["missing"])) == (11, 5, 6)
    assert set(kec["missing"]).isdisjoint(e.tps for e in sent)
    assert (bupati["tps_accepted"], bupati["tps_missing"]) == (5, 546)


def test_gateway_view_applies_the_counting_rule(everything: Any) -> None:
    world, _, _ = everything
    trust = world.trust()
    key, cert = world.officer("chair-x")
    thief, thief_cert = world.officer("thief-x")
    one = result(world, key, cert)
    two = result(world, thief, thief_cert, invalid=1)
    verified: list[Verified] = [trust.verify(e, NOW) for e in (one, two)]
    view = tally_from_results(world.manifest, held(verified))
    assert view["elections"][1]["tps_conflict"] == 1
    assert view["conflicts"][0]["tps"] == one.tps
    fix = result(world, key, cert, revision=1, supersedes=one.id.hex())
    view = tally_from_results(world.manifest, held([*verified, trust.verify(fix, NOW)]))
    assert view["elections"][1]["tps_accepted"] == 1 and view["conflicts"] == []


def test_resolve_slot() -> None:
    a, b, c = b"a", b"b", b"c"
    assert resolve_slot([]) == {}
    assert resolve_slot([(a, 0)]) == {a: "accepted"}
    assert resolve_slot([(a, 0), (b, 1)]) == {a: "superseded", b: "accepted"}
    assert resolve_slot([(a, 0), (b, 0)]) == {a: "conflict", b: "conflict"}
    assert resolve_slot([(a, 0), (b, 0), (c, 2)]) == {
        a: "superseded",
        b: "superseded",
        c: "accepted",
    }
    # the rule depends on the set, not the order
    assert resolve_slot([(a, 1), (b, 1), (c, 0)]) == resolve_slot([(c, 0), (b, 1), (a, 1)])


def test_gateway_recap_holds_unresolved_revisions_and_honours_voids(everything: Any) -> None:
    """Issue 11, item 8, through protocol/tally.py (a PPK gateway's recap without internet)."""
    world, _, _ = everything
    trust = world.trust()
    key, cert = world.officer("chair-x")
    one = trust.verify(result(world, key, cert), NOW)
    phantom = trust.verify(
        result(world, key, cert, revision=5, supersedes=(b"\x07" * 32).hex(), invalid=3), NOW
    )
    view = tally_from_results(world.manifest, held([one, phantom]))
    bupati = view["elections"][1]
    assert bupati["tps_accepted"] == 1 and bupati["invalid"] == one.envelope.body.form.invalid  # type: ignore[union-attr]
    # revision 99 by a stolen key, voided by the KPU: revision 0 counts again
    stolen = trust.verify(
        result(world, key, cert, revision=99, supersedes=one.id.hex(), invalid=7), NOW
    )
    view = tally_from_results(world.manifest, held([one, stolen]))
    assert view["elections"][1]["invalid"] == 7
    view = tally_from_results(world.manifest, held([one, stolen]), voided=[stolen.id])
    assert view["elections"][1]["invalid"] == one.envelope.body.form.invalid  # type: ignore[union-attr]
    assert view["elections"][1]["tps_accepted"] == 1
