"""The centre and the paper trail (issue 13): objections shown, corrections counted by the
documented rule, the D.Hasil checked against the objects it names, seats enforced on disk."""

from __future__ import annotations

from estafet.central.ingest import Central
from estafet.crypto.seal import seal
from estafet.protocol.objects import Envelope, ResultBody
from estafet.protocol.plenary import Numbers, make_dhasil
from estafet.protocol.trail import CorrectionBody, DHasilBody
from tests.kit import DAY, NOW, TPS_A, TPS_B, World, seeded_key

LATER = NOW + 2 * DAY
KEC = "630214"


def _numbers(env: Envelope) -> Numbers:
    assert isinstance(env.body, ResultBody)
    f = env.body.form
    return Numbers(f.tps, f.election, f.votes, f.valid, f.invalid)


def _fix(result: Envelope) -> dict[str, object]:
    assert isinstance(result.body, ResultBody)
    f = result.body.form
    votes = dict(f.votes)
    votes["2"] += 1
    return {"votes": votes, "valid": f.valid + 1, "invalid": f.invalid - 1}


def _bupati(status: dict[str, object], kec: str = KEC) -> dict[str, object]:
    rows = [d for d in status["dhasil"] if d["kecamatan"] == kec and d["election"] == "bupati"]  # type: ignore[attr-defined,index]
    assert len(rows) == 1
    return rows[0]  # type: ignore[no-any-return]


def test_a_disputed_tps_objection_correction_and_dhasil(central: Central, world: World) -> None:
    chair, chair_cert = world.officer("chair A")
    chair_b, chair_b_cert = world.officer("chair B", scope=(TPS_B,))
    ppk, ppk_cert = world.officer("ppk hampang", role="ppk", scope=(KEC,))
    a, _ = world.result(chair, chair_cert)
    b, _ = world.result(chair_b, chair_b_cert, tps=TPS_B)
    for env in (a, b):
        assert central.ingest(env.encode(), NOW + 600)[1] == "accepted"
    saksi = seeded_key("saksi paslon 2")
    adm = world.admit(chair, chair_cert, saksi, pair=2)
    assert central.ingest(adm.encode(), NOW + 3700)[1] == "accepted"
    obj = world.object_to(saksi, world.admitted_chain(adm, chair_cert), a)
    assert central.ingest(obj.encode(), NOW + 3800)[1] == "accepted"
    before = central.status()
    tally_before = before["elections"][1]["tally"]
    assert before["tps_trail"][TPS_A] == {"objections": 1, "corrections": 0}
    assert tally_before == central.status()["elections"][1]["tally"]  # objections never count

    corr = world.correct(ppk, ppk_cert, a, **_fix(a))
    assert central.ingest(corr.encode(), NOW + DAY + 10)[1] == "accepted"
    after = central.status()["elections"][1]
    assert after["tally"]["2"] == tally_before["2"] + 1  # the correction's numbers count
    assert after["invalid"] == before["elections"][1]["invalid"] - 1
    assert isinstance(corr.body, CorrectionBody)
    body = make_dhasil(KEC, "bupati", ("1", "2", "3"), {a.id: _numbers(a), b.id: _numbers(b)},
                       {a.id: (corr.id, corr.body)})  # fmt: skip
    dh = seal("dhasil", body, ppk, LATER, world.chain(ppk_cert))
    assert central.ingest(dh.encode(), LATER + 10)[1] == "accepted"
    view = _bupati(central.status())
    assert view["state"] == "matches", view
    assert view["dhasil"]["votes"] == view["centre"]["votes"]  # type: ignore[index]
    detail = central.tps_detail(TPS_A)
    assert [o["reason"] for o in detail["objections"]] == [obj.body.reason]  # type: ignore[union-attr]
    assert detail["corrections"][0]["standing"] is True
    assert detail["admissions"][0]["pair"] == 2
    # the KPPS figure is still there beside the correction
    kpps = detail["elections"][1]["results"][0]
    assert kpps["votes"] == dict(a.body.form.votes)  # type: ignore[union-attr]


def test_a_dhasil_that_does_not_add_up_is_a_mismatch(central: Central, world: World) -> None:
    chair, chair_cert = world.officer("chair A")
    ppk, ppk_cert = world.officer("ppk hampang", role="ppk", scope=(KEC,))
    a, _ = world.result(chair, chair_cert)
    central.ingest(a.encode(), NOW + 600)
    body = make_dhasil(KEC, "bupati", ("1", "2", "3"), {a.id: _numbers(a)}, {})
    m = body.to_map()
    m["votes"] = {**m["votes"], "1": m["votes"]["1"] + 1}
    m["valid"] += 1
    dh = seal("dhasil", DHasilBody.from_map(m), ppk, LATER, world.chain(ppk_cert))
    assert central.ingest(dh.encode(), LATER + 10)[1] == "accepted"
    view = _bupati(central.status())
    assert view["state"] == "mismatch"
    assert any(p.startswith("dhasil-sum") for p in view["problems"])  # type: ignore[attr-defined]
    # exactly right: matches; a later D.Hasil supersedes the earlier one
    good = seal("dhasil", body, ppk, LATER + 60, world.chain(ppk_cert))
    central.ingest(good.encode(), LATER + 70)
    assert _bupati(central.status())["state"] == "matches"


def test_a_dhasil_naming_a_result_not_received_is_incomplete(
    central: Central, world: World
) -> None:
    chair, chair_cert = world.officer("chair A")
    ppk, ppk_cert = world.officer("ppk hampang", role="ppk", scope=(KEC,))
    a, _ = world.result(chair, chair_cert)
    body = make_dhasil(KEC, "bupati", ("1", "2", "3"), {a.id: _numbers(a)}, {})
    central.ingest(seal("dhasil", body, ppk, LATER, world.chain(ppk_cert)).encode(), LATER + 1)
    assert _bupati(central.status())["state"] == "incomplete"
    central.ingest(a.encode(), LATER + 2)
    assert _bupati(central.status())["state"] == "matches"
    assert _bupati(central.status(), "630201")["state"] == "none"


def test_the_seat_rule_survives_a_restart(central: Central, world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    chair, chair_cert = world.officer("chair A")
    first = world.admit(chair, chair_cert, seeded_key("w1"), pair=1, seat=1)
    second = world.admit(chair, chair_cert, seeded_key("w2"), pair=1, seat=1)
    assert central.ingest(first.encode(), NOW + 3700)[1] == "accepted"
    central.trust._seats.clear()  # as after a restart: only central.db remembers the seat
    _raw, status = central.ingest(second.encode(), NOW + 3800)
    assert status == "rejected"
    refused = [a for a in central.tps_detail(TPS_A)["admissions"] if a["id"] == second.id.hex()]
    assert "seat-taken" in refused[0]["reason"]
    other_seat = world.admit(chair, chair_cert, seeded_key("w3"), pair=1, seat=2)
    assert central.ingest(other_seat.encode(), NOW + 3900)[1] == "accepted"


def test_an_objection_naming_another_tps_result_is_rejected(central: Central, world: World) -> None:
    chair, chair_cert = world.officer("chair A")
    member, member_cert = world.officer("member A", role="kpps-member")
    a, _ = world.result(chair, chair_cert)
    central.ingest(a.encode(), NOW + 600)
    from estafet.protocol.trail import ObjectionBody

    body = ObjectionBody(a.id, TPS_A, "gubernur", "salah TPS", ())
    env = seal("objection", body, member, NOW + 700, world.chain(member_cert))
    assert central.ingest(env.encode(), NOW + 800)[1] == "rejected"


def test_objection_photos_are_confirmed_like_result_photos(central: Central, world: World) -> None:
    """The photo of the C.Kejadian Khusus form travels as a blob; the objection's receipt says
    photos_complete once it is here."""
    import hashlib

    from estafet.protocol.objects import ReceiptBody, decode_envelope
    from tests.kit import photo_bytes, photo_refs

    chair, chair_cert = world.officer("chair A")
    member, member_cert = world.officer("member A", role="kpps-member")
    a, _ = world.result(chair, chair_cert)
    central.ingest(a.encode(), NOW + 600)
    photo = photo_bytes("C.Kejadian Khusus")
    obj = world.object_to(member, world.chain(member_cert), a, photos=photo_refs([photo]))
    raw, _status = central.ingest(obj.encode(), NOW + 700)
    assert raw is not None
    first = decode_envelope(raw).body
    assert isinstance(first, ReceiptBody) and first.photos_complete is False
    receipts = central.note_blob(hashlib.sha256(photo).digest(), NOW + 800)
    bodies = [decode_envelope(r).body for r in receipts]
    assert [(b.object, b.object_kind, b.photos_complete) for b in bodies] == [  # type: ignore[union-attr]
        (obj.id, "objection", True)
    ]
    central.verify_log()
