"""The paper trail's trust rules (issue 13): admissions, objections, corrections, the D.Hasil.

Every rule is tested on both sides of its boundary: the object one step inside verifies, the one
one step outside is refused with a stable reason.
"""

from __future__ import annotations

import pytest

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import SchemaError
from estafet.protocol.objects import Envelope, ResultBody, decode_envelope, encode_envelope
from estafet.protocol.photos import PhotoRef
from estafet.protocol.plenary import Numbers, make_dhasil
from estafet.protocol.trail import ADMISSION_MAX_SPAN, DHasilBody, ObjectionBody
from tests.kit import DAY, NOW, TPS_A, TPS_B, World, photo_bytes, photo_refs, seeded_key

W = World()
CHAIR, CHAIR_CERT = W.officer("chair A")
CHAIR_B, CHAIR_B_CERT = W.officer("chair B", scope=(TPS_B,))
MEMBER, MEMBER_CERT = W.officer("member A", role="kpps-member")
PPK, PPK_CERT = W.officer("ppk hampang", role="ppk", scope=("630214",))
PPK_OTHER, PPK_OTHER_CERT = W.officer("ppk other", role="ppk", scope=("630201",))
RESULT, _ = W.result(CHAIR, CHAIR_CERT)
LATER = NOW + 2 * DAY


def witness(n: int = 1) -> SigningKey:
    return seeded_key(f"saksi {n}")


def check(env: Envelope | bytes, now: int = NOW + DAY, ts: TrustStore | None = None) -> str:
    """'ok' or the VerifyError reason, on a fresh store unless one is given."""
    try:
        (ts or W.trust()).verify(env, now)
    except VerifyError as exc:
        return exc.reason
    return "ok"


def objection_by(key: SigningKey, admission: Envelope, created: int = NOW + 7200) -> Envelope:
    return W.object_to(key, W.admitted_chain(admission, CHAIR_CERT), RESULT, created=created)


# --- admission --------------------------------------------------------------------------------


def test_an_admitted_witness_objection_verifies_from_the_root_through_the_chair() -> None:
    adm = W.admit(CHAIR, CHAIR_CERT, witness())
    ts = W.trust()
    v = ts.verify(objection_by(witness(), adm), NOW + DAY)
    assert v.signer.role == "witness"
    assert v.signer.cert_envelope is not None and v.signer.cert_envelope.id == adm.id
    # and the witness's endorsement verifies the same way
    from estafet.protocol.objects import EndorsementBody

    body = EndorsementBody(RESULT.id, TPS_A, "bupati", "agree")
    end = seal("endorsement", body, witness(), NOW + 7200, W.admitted_chain(adm, CHAIR_CERT))
    assert check(end) == "ok"


def test_without_the_admission_the_witness_is_unknown() -> None:
    env = W.object_to(witness(), W.chain(CHAIR_CERT), RESULT)
    assert check(env) == "unknown-signer"


def test_a_chair_admits_only_at_its_own_tps() -> None:
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), tps=TPS_A)) == "ok"
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), tps=TPS_B)) == "out-of-scope"
    # a kecamatan-wide chair certificate is not "its own TPS" either
    kec, kec_cert = W.officer("kecamatan chair", scope=("630214",))
    assert check(W.admit(kec, kec_cert, witness(), tps=TPS_A)) == "out-of-scope"


def test_only_a_chair_admits() -> None:
    assert check(W.admit(MEMBER, MEMBER_CERT, witness())) == "wrong-role"
    adm = W.admit(CHAIR, CHAIR_CERT, witness(1))
    # an admitted witness cannot admit another (its chain stops at the chair)
    body = decode_envelope(W.admit(CHAIR, CHAIR_CERT, witness(2)).encode()).body
    env = seal("admission", body, witness(1), NOW + 3600, W.admitted_chain(adm, CHAIR_CERT))
    assert check(env) == "wrong-role"


@pytest.mark.parametrize(
    ("created", "reason"),
    [
        (NOW - 24 * 3600, "ok"),  # the skew tolerance before the day
        (NOW - 24 * 3600 - 1, "out-of-window"),
        (NOW + 24 * 3600, "ok"),  # the last second of a 24-hour day
        (NOW + 24 * 3600 + 1, "out-of-window"),
    ],
)
def test_an_admission_is_signed_within_its_day(created: int, reason: str) -> None:
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), created=created), now=LATER) == reason


def test_an_admission_lasts_at_most_one_election_day() -> None:
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), span=ADMISSION_MAX_SPAN)) == "ok"
    with pytest.raises(SchemaError):
        W.admit(CHAIR, CHAIR_CERT, witness(), span=ADMISSION_MAX_SPAN + 1)


def test_an_objection_after_the_admitted_day_is_refused() -> None:
    adm = W.admit(CHAIR, CHAIR_CERT, witness())
    # 24 h of skew tolerance after the 24 h day, as for any certificate window
    assert check(objection_by(witness(), adm, created=NOW + 2 * DAY), now=LATER) == "ok"
    assert check(objection_by(witness(), adm, created=NOW + 2 * DAY + 1), now=LATER) == "expired"


def test_at_most_two_witnesses_per_pair_per_tps() -> None:
    with pytest.raises(SchemaError):
        W.admit(CHAIR, CHAIR_CERT, witness(3), seat=3)
    ts = W.trust()
    for seat in (1, 2):
        ts.learn(ts.verify(W.admit(CHAIR, CHAIR_CERT, witness(seat), seat=seat), NOW + DAY))
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(3), seat=2), ts=ts) == "seat-taken"
    # another pair's seats are free
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(3), pair=2, seat=1), ts=ts) == "ok"


def test_the_seat_rule_holds_when_the_admission_arrives_only_in_a_chain() -> None:
    ts = W.trust()
    first = W.admit(CHAIR, CHAIR_CERT, witness(1))
    ts.verify(objection_by(witness(1), first), NOW + DAY)
    second = W.admit(CHAIR, CHAIR_CERT, witness(2))
    assert check(objection_by(witness(2), second), ts=ts) == "seat-taken"


def test_a_witness_pair_must_be_on_the_ballot() -> None:
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), pair=3)) == "ok"  # bupati has 1..3
    assert check(W.admit(CHAIR, CHAIR_CERT, witness(), pair=4)) == "invalid-content"


def test_the_chair_admits_only_for_its_own_elections() -> None:
    gub, gub_cert = W.officer("gubernur chair", elections=("gubernur",))
    assert check(W.admit(gub, gub_cert, witness(), elections=("gubernur",))) == "ok"
    assert check(W.admit(gub, gub_cert, witness(), elections=("bupati",))) == "out-of-scope"


def test_ptps_may_object_but_not_endorse() -> None:
    from estafet.protocol.objects import EndorsementBody

    ptps = seeded_key("ptps A")
    adm = W.admit(CHAIR, CHAIR_CERT, ptps, role="ptps", pair=0, elections=("bupati", "gubernur"))
    chain = W.admitted_chain(adm, CHAIR_CERT)
    assert check(W.object_to(ptps, chain, RESULT)) == "ok"
    body = EndorsementBody(RESULT.id, TPS_A, "bupati", "agree")
    assert check(seal("endorsement", body, ptps, NOW + 7200, chain)) == "wrong-role"
    with pytest.raises(SchemaError):
        W.admit(CHAIR, CHAIR_CERT, ptps, role="ptps", pair=1)


def test_admitted_witness_acts_only_at_its_tps_and_election() -> None:
    adm = W.admit(CHAIR, CHAIR_CERT, witness())
    chain = W.admitted_chain(adm, CHAIR_CERT)
    result_b, _ = W.result(CHAIR_B, CHAIR_B_CERT, tps=TPS_B)
    assert check(W.object_to(witness(), chain, result_b)) == "out-of-scope"
    gub, _ = W.result(CHAIR, CHAIR_CERT, election="gubernur")
    assert check(W.object_to(witness(), chain, gub)) == "out-of-scope"


def test_revoking_the_chair_revokes_what_its_witnesses_sign_after() -> None:
    from estafet.protocol.objects import RevokedEntry

    adm = W.admit(CHAIR, CHAIR_CERT, witness())
    ts = W.trust()
    cert = decode_envelope(CHAIR_CERT.encode()).body
    serial = cert.serial  # type: ignore[union-attr]
    entry = RevokedEntry(serial=serial, key=None, reason="phone stolen", time=NOW + 5000)
    ts.learn(ts.verify(W.revocation(1, entry), NOW + DAY))
    assert check(objection_by(witness(), adm, created=NOW + 4000), ts=ts) == "ok"
    assert check(objection_by(witness(), adm, created=NOW + 6000), ts=ts) == "revoked"


# --- objection --------------------------------------------------------------------------------


def test_a_member_may_object_and_the_chair_may_not() -> None:
    assert check(W.object_to(MEMBER, W.chain(MEMBER_CERT), RESULT)) == "ok"
    assert check(W.object_to(CHAIR, W.chain(CHAIR_CERT), RESULT)) == "wrong-role"


def test_objection_reason_and_photos_are_bounded() -> None:
    ok = ObjectionBody(RESULT.id, TPS_A, "bupati", "x" * 1000, photo_refs([photo_bytes("k")] * 3))
    assert check(seal("objection", ok, MEMBER, NOW + 60, W.chain(MEMBER_CERT))) == "ok"
    for bad in (
        {"reason": "x" * 1001},
        {"reason": ""},
        {"photos": [p.to_map() for p in photo_refs([photo_bytes("k")] * 4)]},
        {"photos": [PhotoRef(2, bytes(32), 10, "jpeg").to_map()]},  # must start at sheet 1
    ):
        m = {**ok.to_map(), **bad}
        with pytest.raises(SchemaError):
            ObjectionBody.from_map(m)
    big = ObjectionBody(
        RESULT.id, TPS_A, "bupati", "r", (PhotoRef(1, bytes(32), 15_000_001, "jpeg"),)
    )
    assert (
        check(seal("objection", big, MEMBER, NOW + 60, W.chain(MEMBER_CERT))) == "invalid-content"
    )


# --- correction and D.Hasil -------------------------------------------------------------------


def _plus_one_for_2(result: Envelope) -> dict[str, object]:
    assert isinstance(result.body, ResultBody)
    f = result.body.form
    votes = dict(f.votes)
    votes["2"] += 1
    return {"votes": votes, "valid": f.valid + 1, "invalid": f.invalid - 1}


def test_the_ppk_corrects_results_of_its_kecamatan_only() -> None:
    fix = _plus_one_for_2(RESULT)
    assert check(W.correct(PPK, PPK_CERT, RESULT, **fix), now=LATER) == "ok"
    assert check(W.correct(PPK_OTHER, PPK_OTHER_CERT, RESULT, **fix), now=LATER) == "out-of-scope"
    assert check(W.correct(MEMBER, MEMBER_CERT, RESULT, **fix), now=LATER) == "wrong-role"


def test_correction_numbers_obey_the_form_rules() -> None:
    assert isinstance(RESULT.body, ResultBody)
    f = RESULT.body.form
    votes = dict(f.votes)
    votes["2"] += 1
    # valid must be the sum of the votes: one off is refused, exact is fine
    bad = W.correct(PPK, PPK_CERT, RESULT, votes=votes, valid=f.valid)
    assert check(bad, now=LATER) == "invalid-content"
    good = W.correct(PPK, PPK_CERT, RESULT, votes=votes, valid=f.valid + 1, invalid=f.invalid - 1)
    assert check(good, now=LATER) == "ok"


def _dhasil(key: SigningKey, cert: Envelope, **over: object) -> Envelope:
    assert isinstance(RESULT.body, ResultBody)
    f = RESULT.body.form
    body = make_dhasil(
        "630214", "bupati", ("1", "2", "3"),
        {RESULT.id: Numbers(f.tps, f.election, f.votes, f.valid, f.invalid)}, {},
    )  # fmt: skip
    m = {**body.to_map(), **over}
    return seal("dhasil", DHasilBody.from_map(m), key, LATER, W.chain(cert))


def test_the_dhasil_is_signed_by_the_kecamatan_ppk_and_adds_its_own_votes() -> None:
    assert check(_dhasil(PPK, PPK_CERT), now=LATER) == "ok"
    assert check(_dhasil(PPK_OTHER, PPK_OTHER_CERT), now=LATER) == "out-of-scope"
    assert check(_dhasil(CHAIR, CHAIR_CERT), now=LATER) == "wrong-role"
    env = _dhasil(PPK, PPK_CERT)
    assert isinstance(env.body, DHasilBody)
    assert check(_dhasil(PPK, PPK_CERT, valid=env.body.valid + 1), now=LATER) == "invalid-content"
    votes = {**env.body.votes, "4": 0}
    assert check(_dhasil(PPK, PPK_CERT, votes=votes), now=LATER) == "invalid-content"


def test_dhasil_lists_are_canonical() -> None:
    body = _dhasil(PPK, PPK_CERT).body
    assert isinstance(body, DHasilBody)
    m = body.to_map()
    for bad in ({"results": [RESULT.id, RESULT.id]}, {"results": [b"\xff" * 32, b"\x00" * 32]},
                {"kecamatan": "63021"}):  # fmt: skip
        with pytest.raises(SchemaError):
            DHasilBody.from_map({**m, **bad})


def test_a_tampered_admission_in_the_chain_breaks_the_objection() -> None:
    adm = W.admit(CHAIR, CHAIR_CERT, witness())
    forged = encode_envelope(adm.content, bytes(64), ())
    chain = (forged, CHAIR_CERT.encode(), W.issuer_cert.encode())
    env = W.object_to(witness(), chain, RESULT)
    assert check(env) == "bad-signature"
