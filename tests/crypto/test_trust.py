"""TrustStore: one test (at least) for every VerifyError reason, and what learning believes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from estafet.crypto.errors import REASONS, VerifyError
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import certify, seal
from estafet.crypto.trust import ARRIVAL_GRACE, CLOCK_SKEW, TrustStore
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import (
    LOG_GENESIS,
    Body,
    CertificateBody,
    Envelope,
    ManifestBody,
    ReceiptBody,
    ResultBody,
    RevokedEntry,
    encode_envelope,
    log_entry_hash,
    make_content,
    signing_message,
)
from tests.kit import DAY, NOW, TPS_A, TPS_B, World, kotabaru_manifest, photo_bytes, seeded_key

W = World()
CHAIR, CHAIR_CERT = W.officer("chair A")
CHAIR_B, CHAIR_B_CERT = W.officer("chair B", scope=(TPS_B,))
WITNESS, WITNESS_CERT = W.officer("witness A", role="witness")
GUB_ONLY, GUB_ONLY_CERT = W.officer("gubernur-only chair", elections=("gubernur",))
KECAMATAN, KECAMATAN_CERT = W.officer("hampang chair", scope=("630214",))
RESULT, _ = W.result(CHAIR, CHAIR_CERT)


def store() -> TrustStore:
    """Knows the root, the issuer and the manifest; officers arrive through attached chains."""
    return W.trust()


def forge(
    kind: str,
    body: Body,
    key: SigningKey,
    *,
    signer: bytes | None = None,
    message: Callable[[bytes], bytes] | None = None,
    chain: tuple[bytes, ...] = (),
    created: int = NOW,
) -> bytes:
    """An envelope whose content claims ``signer`` but whose signature is ``key``'s."""
    content = make_content(kind, signer or key.id, created, body)
    msg = message(content) if message else signing_message(kind, content)
    return encode_envelope(content, key.sign(msg), chain)


def receipt(
    log_hash: bytes | None = None, key: SigningKey = W.issuer, chain: tuple[bytes, ...] = ()
) -> Envelope:
    server_time = NOW + 300
    good = log_entry_hash(LOG_GENESIS, 0, RESULT.id, "accepted", "", server_time)
    body = ReceiptBody(
        RESULT.id, "result", TPS_A, "bupati", "accepted", "", 0, LOG_GENESIS, log_hash or good
    )
    return seal("receipt", body, key, server_time, chain=chain)


def older() -> Manifest:
    """The Kotabaru manifest as a receiver with an older version might hold it: without TPS_A."""
    m = W.manifest
    tps = {k: v for k, v in m.tps.items() if k != TPS_A}
    return Manifest(name=m.name, version=m.version, elections=m.elections, tps=tps,
                    regions=m.regions)  # fmt: skip


@dataclass(frozen=True)
class Case:
    data: Callable[[], bytes | Envelope]
    reason: str
    now: int = NOW
    setup: Callable[[TrustStore], None] | None = None


def with_chain(env: Envelope, chain: tuple[bytes, ...]) -> bytes:
    return encode_envelope(env.content, env.signature, chain)


def revoke(*entries: RevokedEntry) -> Callable[[TrustStore], None]:
    def setup(ts: TrustStore) -> None:
        ts.learn(ts.verify(W.revocation(1, *entries), NOW))

    return setup


def other_world() -> World:
    return World(root=seeded_key("another root"), issuer=seeded_key("another issuer"))


OTHER = other_world()
OTHER_CHAIR, OTHER_CHAIR_CERT = OTHER.officer("chair A")
assert isinstance(CHAIR_CERT.body, CertificateBody)
assert isinstance(W.issuer_cert.body, CertificateBody)
assert isinstance(RESULT.body, ResultBody)
CHAIR_BODY, ISSUER_BODY, RESULT_BODY = CHAIR_CERT.body, W.issuer_cert.body, RESULT.body


def cert_by(
    issuer: SigningKey, role: str, scope: tuple[str, ...], elections: tuple[str, ...] = ("bupati",)
) -> Envelope:
    return certify(
        issuer,
        subject=seeded_key(f"{role} {scope}").public,
        role=role,
        scope=scope,
        elections=elections,
        serial=900,
        not_before=NOW - DAY,
        not_after=NOW + DAY,
    )


CASES: dict[str, Case] = {
    # malformed
    "garbage": Case(lambda: b"\x00garbage", "malformed"),
    "truncated": Case(lambda: RESULT.encode()[:-1], "malformed"),
    "count out of range": Case(
        lambda: forge(
            "result",
            replace(RESULT_BODY, form=replace(RESULT_BODY.form, valid=1000)),
            CHAIR,
            chain=RESULT.chain,
        ),
        "malformed",
    ),
    # bad-signature
    "signed by another key": Case(
        lambda: forge("result", RESULT.body, WITNESS, signer=CHAIR.id, chain=RESULT.chain),
        "bad-signature",
    ),
    "signed without the domain prefix": Case(
        lambda: forge("result", RESULT.body, CHAIR, message=lambda c: c, chain=RESULT.chain),
        "bad-signature",
    ),
    "signed as another kind": Case(
        lambda: forge(
            "result",
            RESULT.body,
            CHAIR,
            message=lambda c: signing_message("endorsement", c),
            chain=RESULT.chain,
        ),
        "bad-signature",
    ),
    "signature bytes swapped": Case(
        lambda: encode_envelope(RESULT.content, WITNESS.sign(b"x"), RESULT.chain), "bad-signature"
    ),
    "forged certificate in the chain": Case(
        lambda: encode_envelope(
            RESULT.content,
            RESULT.signature,
            (forge("certificate", CHAIR_BODY, CHAIR, signer=W.issuer.id), W.issuer_cert.encode()),
        ),
        "bad-signature",
    ),
    # unknown-signer
    "no chain": Case(lambda: encode_envelope(RESULT.content, RESULT.signature), "unknown-signer"),
    "chain of garbage": Case(
        lambda: encode_envelope(RESULT.content, RESULT.signature, (b"junk",)), "unknown-signer"
    ),
    "another root's officer": Case(
        lambda: OTHER.result(OTHER_CHAIR, OTHER_CHAIR_CERT)[0], "unknown-signer"
    ),
    "another root's manifest": Case(lambda: OTHER.manifest_env, "unknown-signer"),
    "chain that does not name the signer": Case(
        lambda: encode_envelope(RESULT.content, RESULT.signature, W.chain(WITNESS_CERT)),
        "unknown-signer",
    ),
    # wrong-role
    "witness signs a result": Case(lambda: W.result(WITNESS, WITNESS_CERT)[0], "wrong-role"),
    "kpps-chair signs a receipt": Case(
        lambda: receipt(key=CHAIR, chain=W.chain(CHAIR_CERT)), "wrong-role"
    ),
    "issuer certifies an issuer": Case(
        lambda: cert_by(W.issuer, "issuer", ("6302",)), "wrong-role"
    ),
    "root certifies a kpps-chair": Case(
        lambda: cert_by(W.root, "kpps-chair", (TPS_A,)), "wrong-role"
    ),
    "kpps-chair certifies a witness": Case(
        lambda: with_chain(cert_by(CHAIR, "witness", (TPS_A,)), W.chain(CHAIR_CERT)), "wrong-role"
    ),
    "issuer signs a manifest": Case(
        lambda: seal("manifest", ManifestBody(W.manifest), W.issuer, NOW), "wrong-role"
    ),
    "root signs a result": Case(lambda: forge("result", RESULT.body, W.root), "wrong-role"),
    "relay endorses": Case(
        lambda: W.endorse(*W.officer("relay", role="relay"), RESULT), "wrong-role"
    ),
    # out-of-scope
    "chair of A signs for B": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, tps=TPS_B)[0], "out-of-scope"
    ),
    "chair of B signs for A": Case(lambda: W.result(CHAIR_B, CHAIR_B_CERT)[0], "out-of-scope"),
    "election not in cert": Case(lambda: W.result(GUB_ONLY, GUB_ONLY_CERT)[0], "out-of-scope"),
    "endorsement for another TPS": Case(
        lambda: W.endorse(WITNESS, WITNESS_CERT, W.result(CHAIR_B, CHAIR_B_CERT, tps=TPS_B)[0]),
        "out-of-scope",
    ),
    "issuer certifies outside its region": Case(
        lambda: cert_by(W.issuer, "kpps-chair", ("6301012001001",)), "out-of-scope"
    ),
    "issuer certifies an election it lacks": Case(
        lambda: cert_by(W.issuer, "kpps-chair", (TPS_A,), elections=("walikota",)),
        "out-of-scope",
    ),
    # validity window at the signing time, with CLOCK_SKEW either side
    "expired": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, created=NOW + 14 * DAY + CLOCK_SKEW + 1)[0],
        "expired",
        now=NOW + 15 * DAY + CLOCK_SKEW,
    ),
    "not yet valid": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, created=NOW - DAY - CLOCK_SKEW - 1)[0],
        "not-yet-valid",
    ),
    "manifest lacks the TPS": Case(
        lambda: RESULT, "manifest-mismatch", setup=lambda ts: setattr(ts, "manifest", older())
    ),
    "arrived after the grace": Case(
        lambda: RESULT, "expired", now=NOW + 14 * DAY + ARRIVAL_GRACE + 1
    ),
    "dated in the receiver's future": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, created=NOW + CLOCK_SKEW + 1)[0], "not-yet-valid"
    ),
    # revoked
    "revoked by serial": Case(
        lambda: RESULT, "revoked", setup=revoke(RevokedEntry(CHAIR_BODY.serial, None, "lost", NOW))
    ),
    "revoked by key id": Case(
        lambda: RESULT, "revoked", setup=revoke(RevokedEntry(None, CHAIR.id, "stolen", NOW))
    ),
    "issuer revoked": Case(
        lambda: RESULT, "revoked", setup=revoke(RevokedEntry(None, W.issuer.id, "breach", NOW))
    ),
    # invalid-content
    "valid != sum of votes": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, valid=205, invalid=9)[0], "invalid-content"
    ),
    "two photos": Case(
        lambda: W.result(CHAIR, CHAIR_CERT, photos=[photo_bytes("a"), photo_bytes("b")])[0],
        "invalid-content",
    ),
    "receipt with a wrong log hash": Case(lambda: receipt(log_hash=bytes(32)), "invalid-content"),
    "admission signed after its day": Case(
        lambda: W.admit(CHAIR, CHAIR_CERT, seeded_key("late witness"), created=NOW + DAY + 1),
        "out-of-window",
        now=NOW + 2 * DAY,
    ),
    "third admission for a taken seat": Case(
        lambda: W.admit(CHAIR, CHAIR_CERT, seeded_key("second on seat 1"), seat=1),
        "seat-taken",
        setup=lambda ts: ts.learn(
            ts.verify(W.admit(CHAIR, CHAIR_CERT, seeded_key("first on seat 1"), seat=1), NOW + DAY)
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_verify_error_reasons(case: Case) -> None:
    ts = store()
    if case.setup:
        case.setup(ts)
    data = case.data()
    with pytest.raises(VerifyError) as exc:
        ts.verify(data, case.now)
    assert exc.value.reason == case.reason, exc.value
    assert str(exc.value).startswith(case.reason)


def test_every_reason_is_tested_and_documented() -> None:
    assert {c.reason for c in CASES.values()} == set(REASONS)
    assert "stale" not in REASONS


def test_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        VerifyError("nonsense")


# --- what passes --------------------------------------------------------------------------


def test_objects_that_pass() -> None:
    ts = store()
    v = ts.verify(RESULT.encode(), NOW)
    assert (v.kind, v.id, v.signer.role, v.revoked, v.warnings) == (
        "result", RESULT.id, "kpps-chair", None, ()
    )  # fmt: skip
    assert ts.verify(W.endorse(WITNESS, WITNESS_CERT, RESULT), NOW).kind == "endorsement"
    assert ts.verify(W.endorse(CHAIR, CHAIR_CERT, RESULT), NOW).signer.role == "kpps-chair"
    assert ts.verify(receipt(), NOW).signer.role == "issuer"
    assert ts.verify(W.result(KECAMATAN, KECAMATAN_CERT)[0], NOW).signer.cert == KECAMATAN_CERT.body
    assert ts.verify(W.result(GUB_ONLY, GUB_ONLY_CERT, election="gubernur")[0], NOW)
    assert ts.verify(W.issuer_cert, NOW).signer.role == "root"


def test_a_result_verifies_from_the_root_alone_through_its_chain() -> None:
    """E.g. from a USB stick: the store knows only the root key (and the manifest)."""
    ts = TrustStore(W.root.public, manifest=W.manifest)
    assert ts.verify(RESULT.encode(), NOW).id == RESULT.id
    assert ts.certificate_for(CHAIR.id) == CHAIR_CERT.body
    assert ts.certificate_for(W.issuer.id) == W.issuer_cert.body


def test_warnings_never_block_and_are_reported() -> None:
    ts = store()
    env, _ = W.result(CHAIR, CHAIR_CERT, invalid=9, ballots={"received": 257, "used": 213,
                      "damaged": 1, "unused": 43})  # fmt: skip
    assert ts.verify(env, NOW).warnings == ("warn-turnout-unaccounted",)


def test_content_checks_can_be_skipped_but_signatures_cannot() -> None:
    ts = store()
    bad, _ = W.result(CHAIR, CHAIR_CERT, valid=205, invalid=9)
    assert ts.verify(bad, NOW, check_content=False).id == bad.id
    with pytest.raises(VerifyError, match="bad-signature"):
        ts.verify(
            encode_envelope(bad.content, RESULT.signature, bad.chain), NOW, check_content=False
        )


def test_without_a_manifest_only_photo_rules_apply() -> None:
    ts = TrustStore(W.root.public)
    bad, _ = W.result(CHAIR, CHAIR_CERT, valid=205, invalid=9)
    assert ts.verify(bad, NOW).warnings == ()
    two, _ = W.result(CHAIR, CHAIR_CERT, photos=[photo_bytes("a"), photo_bytes("b")])
    with pytest.raises(VerifyError, match="invalid-content: photo-count"):
        ts.verify(two, NOW)


# --- the clock tolerance --------------------------------------------------------------------

NOT_BEFORE, NOT_AFTER = NOW - DAY, NOW + 14 * DAY  # the officer certificate's window


@pytest.mark.parametrize(
    ("signed", "reason"),
    [
        (NOT_BEFORE - CLOCK_SKEW - 1, "not-yet-valid"),
        (NOT_BEFORE - CLOCK_SKEW, None),
        (NOT_BEFORE, None),
        (NOT_AFTER, None),
        (NOT_AFTER + CLOCK_SKEW, None),
        (NOT_AFTER + CLOCK_SKEW + 1, "expired"),
    ],
)
def test_judged_by_signing_time_inside_the_window(signed: int, reason: str | None) -> None:
    """Attack (issue 11, item 6): certificates expired at the receiver's clock, so a result
    signed on time but walking out late was refused at every hop. Now the signing time counts;
    the receiver here is 10 days past the window (inside the arrival grace)."""
    assert (CHAIR_BODY.not_before, CHAIR_BODY.not_after) == (NOT_BEFORE, NOT_AFTER)
    env, _ = W.result(CHAIR, CHAIR_CERT, created=signed)
    arrival = NOT_AFTER + 10 * DAY
    for learn_first in (False, True):
        ts = store()
        if learn_first:
            ts.learn(ts.verify(CHAIR_CERT, NOW))
        if reason is None:
            assert ts.verify(env, arrival).id == env.id
        else:
            with pytest.raises(VerifyError) as exc:
                ts.verify(env, arrival)
            assert exc.value.reason == reason
            assert exc.value.final is False  # time only: not the sender's fault, not final


@pytest.mark.parametrize(
    ("arrival", "ok"),
    [(NOT_AFTER + ARRIVAL_GRACE, True), (NOT_AFTER + ARRIVAL_GRACE + 1, False)],
)
def test_arrival_grace_both_sides(arrival: int, ok: bool) -> None:
    ts = store()
    if ok:
        assert ts.verify(RESULT, arrival).id == RESULT.id
    else:
        with pytest.raises(VerifyError, match="arrived after the 30-day grace"):
            ts.verify(RESULT, arrival)


@pytest.mark.parametrize(
    ("signed", "ok"), [(NOW + CLOCK_SKEW, True), (NOW + CLOCK_SKEW + 1, False)]
)
def test_a_signing_time_in_the_receivers_future_is_refused_not_final(signed: int, ok: bool) -> None:
    env, _ = W.result(CHAIR, CHAIR_CERT, created=signed)
    if ok:
        assert store().verify(env, NOW).id == env.id
    else:
        with pytest.raises(VerifyError, match="receiver's future") as exc:
            store().verify(env, NOW)
        assert not exc.value.final


def test_a_correction_signed_on_day_15_after_a_recount_is_accepted() -> None:
    """A chair whose certificate runs the default enrollment validity (covering the recap and
    dispute period) signs a revision on day 15; every hop accepts it, up to the grace."""
    from estafet.central.enroll import DEFAULT_VALIDITY

    chair, cert = W.officer("chair long", not_after=NOW + DEFAULT_VALIDITY)
    first, _ = W.result(chair, cert)
    fix, _ = W.result(chair, cert, revision=1, supersedes=first.id, created=NOW + 15 * DAY)
    assert store().verify(fix, NOW + 16 * DAY).id == fix.id
    assert store().verify(fix, NOW + DEFAULT_VALIDITY + ARRIVAL_GRACE).id == fix.id


def test_skew_and_grace_are_configurable() -> None:
    ts = TrustStore(W.root.public, skew=0, arrival_grace=0, manifest=W.manifest)
    assert ts.verify(RESULT, NOT_AFTER).id == RESULT.id
    with pytest.raises(VerifyError, match="expired"):
        ts.verify(RESULT, NOT_AFTER + 1)
    late, _ = W.result(CHAIR, CHAIR_CERT, created=NOT_BEFORE - 1)
    with pytest.raises(VerifyError, match="not-yet-valid"):
        ts.verify(late, NOW)


def test_a_result_for_a_tps_the_receivers_manifest_lacks_is_not_final() -> None:
    """Failures that depend only on manifest version are not the sender's fault."""
    ts = TrustStore(W.root.public, manifest=older())
    with pytest.raises(VerifyError) as exc:
        ts.verify(RESULT, NOW)
    assert exc.value.reason == "manifest-mismatch" and not exc.value.final
    bad, _ = W.result(CHAIR, CHAIR_CERT, valid=205, invalid=9)
    with pytest.raises(VerifyError) as exc:
        TrustStore(W.root.public, manifest=W.manifest).verify(bad, NOW)
    assert exc.value.reason == "invalid-content" and exc.value.final


# --- revocation -----------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["chain", "cached"])
@pytest.mark.parametrize(
    "entry",
    [
        RevokedEntry(None, CHAIR.id, "stolen", NOW),
        RevokedEntry(CHAIR_BODY.serial, None, "lost", NOW),
        RevokedEntry(None, W.issuer.id, "issuer breach", NOW),
        RevokedEntry(ISSUER_BODY.serial, None, "issuer breach", NOW),
    ],
    ids=["key", "serial", "issuer key", "issuer serial"],
)
def test_allow_revoked_returns_flagged_evidence(entry: RevokedEntry, cached: bool) -> None:
    ts = store()
    if cached:
        ts.learn(ts.verify(CHAIR_CERT, NOW))
    revoke(entry)(ts)
    with pytest.raises(VerifyError, match="revoked"):
        ts.verify(RESULT, NOW)
    v = ts.verify(RESULT, NOW, allow_revoked=True)
    assert v.revoked == entry
    assert v.id == RESULT.id
    # a certificate from a revoked issuer may be learnt as evidence; it still vouches for nothing
    late_key, late_cert = W.officer("late", not_before=NOW)
    flagged_cert = ts.verify(late_cert, NOW, allow_revoked=True)
    if entry.key == W.issuer.id or entry.serial == ISSUER_BODY.serial:
        assert flagged_cert.revoked == entry
        assert ts.learn(flagged_cert) is True
        late = W.result(late_key, late_cert)[0]
        bare = encode_envelope(late.content, late.signature)  # relies on the learnt certificate
        with pytest.raises(VerifyError, match="revoked"):
            ts.verify(bare, NOW)
        assert ts.verify(bare, NOW, allow_revoked=True).revoked == entry
    else:
        assert flagged_cert.revoked is None
    # other officers are untouched by a revocation of the chair
    if entry.key == CHAIR.id:
        assert ts.verify(W.endorse(WITNESS, WITNESS_CERT, RESULT), NOW).revoked is None


def test_revocation_of_another_key_changes_nothing() -> None:
    ts = store()
    others = (
        RevokedEntry(None, seeded_key("someone").id, "lost", NOW),
        RevokedEntry(999, None, "x", 0),
    )
    revoke(*others)(ts)
    assert ts.verify(RESULT, NOW).revoked is None


# --- learning: newer replaces older, never the reverse ---------------------------------------


def manifest_env(version: int) -> Envelope:
    return seal("manifest", ManifestBody(kotabaru_manifest(version)), W.root, NOW)


def test_newer_manifest_replaces_older_never_the_reverse() -> None:
    ts = TrustStore(W.root.public)
    assert ts.learn(ts.verify(manifest_env(2), NOW)) is True
    assert ts.manifest is not None and ts.manifest.version == 2
    assert ts.learn(ts.verify(manifest_env(1), NOW)) is False
    assert ts.manifest.version == 2
    assert ts.learn(ts.verify(manifest_env(2), NOW)) is False
    assert ts.learn(ts.verify(manifest_env(3), NOW)) is True
    assert ts.manifest.version == 3
    assert ts.manifest_envelope is not None
    assert ts.manifest_envelope.body == ManifestBody(kotabaru_manifest(3))


def test_newer_revocation_replaces_older_never_the_reverse() -> None:
    ts = store()
    v2 = W.revocation(2, RevokedEntry(None, CHAIR.id, "stolen", NOW))
    v1 = W.revocation(1)
    v3 = W.revocation(3)
    assert ts.learn(ts.verify(v2, NOW)) is True
    assert ts.learn(ts.verify(v1, NOW)) is False
    assert ts.revocation is not None and ts.revocation.version == 2
    with pytest.raises(VerifyError, match="revoked"):
        ts.verify(RESULT, NOW)
    assert ts.learn(ts.verify(v3, NOW)) is True  # v3 lifts the revocation
    assert ts.revocation_envelope == v3
    assert ts.verify(RESULT, NOW).revoked is None


def test_learning_certificates_and_other_kinds() -> None:
    ts = store()
    assert ts.learn(ts.verify(CHAIR_CERT, NOW)) is True
    assert ts.learn(ts.verify(CHAIR_CERT, NOW)) is False
    assert CHAIR_CERT in ts.certificates()
    assert ts.learn(ts.verify(RESULT, NOW)) is False
    assert ts.learn(ts.verify(receipt(), NOW)) is False
    # once learnt, the certificate is enough: the object may travel without its chain
    assert ts.verify(encode_envelope(RESULT.content, RESULT.signature), NOW).id == RESULT.id


def test_verifying_caches_only_certificates_that_verified() -> None:
    ts = TrustStore(W.root.public, manifest=W.manifest)
    bad_chain = (CHAIR_CERT.encode(),)  # the issuer certificate is missing
    with pytest.raises(VerifyError, match="unknown-signer"):
        ts.verify(encode_envelope(RESULT.content, RESULT.signature, bad_chain), NOW)
    assert ts.certificate_for(CHAIR.id) is None


# --- attached chains: checked by their exact bytes, even when the certificate is held ----------


def broken(cert: Envelope) -> bytes:
    """``cert`` with one bit of its signature flipped: same content, same id."""
    sig = bytearray(cert.signature)
    sig[10] ^= 0x01
    return encode_envelope(cert.content, bytes(sig), cert.chain)


@pytest.mark.parametrize("which", ["officer", "issuer"])
def test_a_broken_copy_of_a_held_certificate_in_the_chain_is_refused(which: str) -> None:
    """A node that already trusts the certificate (by content id) must still refuse a result
    whose attached copy has broken signature bytes: it would pass the object on, and a node that
    holds no copy would refuse it and blame the honest relay."""
    ts = TrustStore(W.root.public, manifest=W.manifest)
    assert ts.verify(RESULT.encode(), NOW).id == RESULT.id  # both certificates cached, good
    chain = (
        (broken(CHAIR_CERT), W.issuer_cert.encode())
        if which == "officer"
        else (CHAIR_CERT.encode(), broken(W.issuer_cert))
    )
    bad = encode_envelope(RESULT.content, RESULT.signature, chain)
    fresh = TrustStore(W.root.public, manifest=W.manifest)
    with pytest.raises(VerifyError, match="bad-signature"):
        fresh.verify(bad, NOW)  # the downstream node that holds neither
    with pytest.raises(VerifyError, match="bad-signature"):
        ts.verify(bad, NOW)  # so this node refuses it too, though it holds both
    # the same node, asked again, still refuses it (nothing cached by content id)
    with pytest.raises(VerifyError, match="bad-signature"):
        ts.verify(bad, NOW)
    assert ts.verify(RESULT.encode(), NOW).id == RESULT.id  # the good copy still verifies


def test_a_broken_chain_copy_is_refused_when_the_certificate_was_learnt() -> None:
    """The certificate held through learn() (not through a chain) does not excuse a broken
    attached copy either; an object without a chain still verifies by the held certificate."""
    ts = store()
    ts.learn(ts.verify(CHAIR_CERT, NOW))
    bad = encode_envelope(
        RESULT.content, RESULT.signature, (broken(CHAIR_CERT), W.issuer_cert.encode())
    )
    with pytest.raises(VerifyError, match="bad-signature"):
        ts.verify(bad, NOW)
    assert ts.verify(encode_envelope(RESULT.content, RESULT.signature), NOW).id == RESULT.id


def test_a_chain_verifies_once_per_exact_byte_string() -> None:
    """The cache keys chain entries by the hash of their exact bytes: a second result by the
    same officer does not decode the chain again, but a different byte string is checked."""
    ts = TrustStore(W.root.public, manifest=W.manifest)
    ts.verify(RESULT.encode(), NOW)
    second, _ = W.result(CHAIR, CHAIR_CERT, election="gubernur")
    assert ts.verify(second.encode(), NOW).signer.cert == CHAIR_CERT.body
    assert len(ts._links_ok) == 2  # the officer's and the issuer's certificate, once each
