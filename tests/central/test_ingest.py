"""Central.ingest: receipts for every outcome, duplicates, revisions, equivocation, revocation."""

from __future__ import annotations

import pytest

from estafet.central.authority import Authority
from estafet.central.db import SQLiteCentralDB
from estafet.central.ingest import Central
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol import codec
from estafet.protocol.objects import (
    LOG_GENESIS,
    EndorsementBody,
    Envelope,
    ReceiptBody,
    RevokedEntry,
    VoidBody,
    decode_envelope,
    encode_envelope,
    log_entry_hash,
)
from tests.kit import DAY, NOW, TPS_A, TPS_B, World

from .conftest import photo_hashes, result


def receipt_of(raw: bytes | None, world: World) -> ReceiptBody:
    """Check a receipt as a phone would (root pinned, chain attached) and return its body."""
    assert raw is not None
    phone = TrustStore(world.root.public)
    verified = phone.verify(raw, NOW)
    assert verified.kind == "receipt" and verified.signer.role == "issuer"
    body = verified.envelope.body
    assert isinstance(body, ReceiptBody)
    return body


def test_accepted_result_gets_a_verifiable_receipt(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    raw, status = central.ingest(env.encode(), NOW + 30)
    assert status == "accepted"
    r = receipt_of(raw, world)
    assert (r.object, r.object_kind, r.tps, r.election) == (env.id, "result", TPS_A, "bupati")
    assert (r.status, r.reason, r.log_index, r.log_prev) == ("accepted", "", 0, LOG_GENESIS)
    assert r.log_hash == log_entry_hash(LOG_GENESIS, 0, env.id, "accepted", "", NOW + 30)
    assert decode_envelope(raw or b"").created == NOW + 30
    assert central.receipt_for(env.id) == raw


def test_duplicates_are_idempotent(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    first = central.ingest(env.encode(), NOW)
    again = central.ingest(env.encode(), NOW + 100)
    assert first == again
    # the same content with another (or no) chain has the same id: still a duplicate
    bare = encode_envelope(env.content, env.signature)
    assert central.ingest(bare, NOW + 200) == first
    assert central.status()["log"]["length"] == 1


def _tamper_signature(env: Envelope) -> bytes:
    sig = bytes([env.signature[0] ^ 1]) + env.signature[1:]
    return encode_envelope(env.content, sig, env.chain)


def _cases(world: World) -> dict[str, bytes]:
    key_a, cert_a = world.officer("chair-a")
    member, member_cert = world.officer("member-a", role="kpps-member")
    key_b, cert_b = world.officer("chair-b", scope=(TPS_B,))
    old, old_cert = world.officer("old", not_before=NOW - 30 * DAY, not_after=NOW - 3 * DAY)
    early, early_cert = world.officer("early", not_before=NOW + 3 * DAY, not_after=NOW + 9 * DAY)
    stranger, stranger_cert = World().officer("stranger")
    stranger_env = result(world, stranger, stranger_cert)
    bad_content = codec.encode({"kind": "result", "v": 1, "what": "nonsense"})
    return {
        "malformed": encode_envelope(bad_content, bytes(64)),
        "bad-signature": _tamper_signature(result(world, key_a, cert_a)),
        "unknown-signer": encode_envelope(stranger_env.content, stranger_env.signature),
        "wrong-role": result(world, member, member_cert).encode(),
        "out-of-scope": result(world, key_b, cert_b).encode(),
        "expired": result(world, old, old_cert).encode(),
        "not-yet-valid": result(world, early, early_cert).encode(),
        "invalid-content": result(world, key_a, cert_a, valid=203).encode(),
    }


@pytest.mark.parametrize("reason", ["malformed", "bad-signature", "unknown-signer"])
def test_a_copy_that_does_not_verify_gets_no_row_no_log_entry_no_receipt(
    central: Central, world: World, reason: str
) -> None:
    """Issue 11, item 1: a failure of one copy (not of the signer) is refused unsigned and
    leaves nothing behind: the old code stored it and signed a ``rejected`` receipt."""
    raw = _cases(world)[reason]
    assert central.ingest(raw, NOW) == (None, "unverified")
    assert central.db.log_head()[0] == 0
    assert central.status()["log"]["length"] == 0
    assert not list(central.db.query("SELECT id FROM objects"))
    assert f'verification_failures_total{{reason="{reason}"}} 1' in central.metrics()


def test_junk_with_a_binary_c_is_not_stored_or_receipted(central: Central) -> None:
    """The old code stored any map with a binary ``c`` (7 MiB of junk included) and signed a
    receipt with an empty kind and TPS for it, which then reconciled to every phone."""
    for i in range(64):
        assert central.ingest(codec.encode({"c": bytes([i]) * 27}), NOW) == (None, "unverified")
    big = codec.encode({"c": bytes(1024 * 1024)})
    assert central.ingest(big, NOW) == (None, "unverified")
    assert central.status()["log"]["length"] == 0
    assert not list(central.db.query("SELECT id FROM objects"))


@pytest.mark.parametrize("reason", ["wrong-role", "out-of-scope", "invalid-content"])
def test_a_correctly_signed_object_breaking_a_rule_gets_a_final_rejected_receipt(
    central: Central, world: World, reason: str
) -> None:
    raw = _cases(world)[reason]
    receipt, status = central.ingest(raw, NOW)
    assert status == "rejected"
    body = receipt_of(receipt, world)
    assert body.status == "rejected" and body.reason.startswith(reason), body.reason
    if reason == "invalid-content":
        assert "valid-sum" in body.reason
    assert f'verification_failures_total{{reason="{reason}"}} 1' in central.metrics()


@pytest.mark.parametrize("reason", ["expired", "not-yet-valid"])
def test_time_failures_get_no_receipt_and_no_row(
    central: Central, world: World, reason: str
) -> None:
    """Issue 11, item 6: a failure that depends only on time is not final and not the sender's
    fault: no row, no log entry, no receipt (the sender keeps carrying it)."""
    raw = _cases(world)[reason]
    assert central.ingest(raw, NOW) == (None, "not-final")
    assert central.db.log_head()[0] == 0
    assert f'verification_failures_total{{reason="{reason}"}} 1' in central.metrics()
    central.verify_log()


def test_undecodable_bytes_get_no_receipt(central: Central) -> None:
    for junk in (b"", b"\xc1", b"not msgpack", codec.encode({"c": 5, "s": b""})):
        assert central.ingest(junk, NOW) == (None, "malformed")
    assert central.status()["log"]["length"] == 0


def test_a_broken_copy_does_not_shadow_the_genuine_object(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    assert central.ingest(_tamper_signature(env), NOW) == (None, "unverified")
    assert central.ingest(_tamper_signature(env), NOW + 1) == (None, "unverified")
    assert central.receipt_for(env.id) is None  # no rejected receipt for the genuine id
    raw, status = central.ingest(env.encode(), NOW + 2)
    assert status == "accepted" and receipt_of(raw, world).log_index == 0
    # once the genuine copy is held, a broken copy is a duplicate answered with its receipt
    assert central.ingest(_tamper_signature(env), NOW + 3)[1] == "accepted"
    central.verify_log()


def test_a_revision_supersedes_and_history_stays(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    first = result(world, key, cert)
    second = result(world, key, cert, revision=1, supersedes=first.id.hex(), invalid=9)
    central.ingest(first.encode(), NOW)
    _, status = central.ingest(second.encode(), NOW + 60)
    assert status == "accepted"
    old = receipt_of(central.receipt_for(first.id), world)
    assert (old.status, old.log_index) == ("superseded", 2)
    bupati = central.status()["elections"][1]
    assert bupati["invalid"] == 9 and bupati["tps_accepted"] == 1
    detail = central.tps_detail(TPS_A)["elections"][1]
    assert detail["counted"] == second.id.hex()
    assert [r["status"] for r in detail["results"]] == ["superseded", "accepted"]
    # a late duplicate of the old revision answers its newest receipt
    assert central.ingest(first.encode(), NOW + 90) == (central.receipt_for(first.id), "superseded")


def test_revision_arriving_first(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    first = result(world, key, cert)
    second = result(world, key, cert, revision=1, supersedes=first.id.hex())
    # held until the result it supersedes arrives (issue 11, item 8), then counted
    assert central.ingest(second.encode(), NOW)[1] == "held"
    assert central.status()["elections"][1]["tps_accepted"] == 0
    assert central.ingest(first.encode(), NOW + 1)[1] == "superseded"
    assert central.db.object_state(second.id)["status"] == "accepted"  # type: ignore[index]
    assert receipt_of(central.receipt_for(second.id), world).status == "accepted"
    assert central.status()["elections"][1]["tps_accepted"] == 1


def test_a_revision_may_not_name_another_tps(central: Central, world: World) -> None:
    key, cert = world.officer("chair-ab", scope=(TPS_A, TPS_B))
    other = result(world, key, cert, tps=TPS_B)
    central.ingest(other.encode(), NOW)
    bad = result(world, key, cert, revision=1, supersedes=other.id.hex())
    raw, status = central.ingest(bad.encode(), NOW)
    assert status == "rejected"
    assert receipt_of(raw, world).reason.startswith("invalid-content: revision-supersedes")


def test_equivocation_marks_both_until_a_revision(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    thief, thief_cert = world.officer("thief", role="kpps-chair")
    one = result(world, key, cert)
    two = result(world, thief, thief_cert, invalid=9)
    assert central.ingest(one.encode(), NOW)[1] == "accepted"
    raw, status = central.ingest(two.encode(), NOW + 5)
    assert status == "conflict" and receipt_of(raw, world).reason == "equivocation"
    assert receipt_of(central.receipt_for(one.id), world).status == "conflict"
    st = central.status()
    assert st["conflicts"] == [
        {
            "tps": TPS_A,
            "election": "bupati",
            "objects": sorted([one.id.hex(), two.id.hex()]),
            "signers": [r.signer.hex() for r in sorted((one, two), key=lambda e: e.id)],
        }
    ]
    bupati = st["elections"][1]
    assert (bupati["tps_accepted"], bupati["tps_conflict"], bupati["tally"]["1"]) == (0, 1, 0)
    assert "estafet_central_conflicts 1" in central.metrics()
    fix = result(world, key, cert, revision=2, supersedes=one.id.hex())
    assert central.ingest(fix.encode(), NOW + 60)[1] == "accepted"
    assert central.ingest(one.encode(), NOW + 61)[1] == "superseded"
    assert central.ingest(two.encode(), NOW + 61)[1] == "superseded"
    assert central.status()["conflicts"] == []
    central.verify_log()


def _revoke(world: World, serial: int, when: int, version: int = 2) -> Envelope:
    return world.revocation(version, RevokedEntry(serial, None, "phone stolen", when))


def test_results_of_a_revoked_key_are_kept_and_flagged(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    assert isinstance(cert.body.serial, int)  # type: ignore[union-attr]
    serial = cert.body.serial  # type: ignore[union-attr]
    assert central.ingest(_revoke(world, serial, NOW).encode(), NOW + 1)[1] == "accepted"
    env = result(world, key, cert)
    raw, status = central.ingest(env.encode(), NOW + 10)
    assert status == "rejected" and receipt_of(raw, world).reason == "revoked-signer"
    st = central.status()
    assert [r["id"] for r in st["revoked_results"]] == [env.id.hex()]
    assert st["elections"][1]["tps_accepted"] == 0
    assert central.db.object_state(env.id) is not None  # kept as evidence


def test_a_revocation_flags_results_signed_since_the_compromise(
    central: Central, world: World
) -> None:
    """Issue 11, item 8: revocation used to flag only results *received* after it, so a thief's
    results that arrived first stood. Now the stated compromise time decides, by signing time:
    results signed before it stand, those signed since are revoked, whenever they arrived."""
    key, cert = world.officer("chair-a")
    serial = cert.body.serial  # type: ignore[union-attr]
    before = seal("result", result(world, key, cert, election="gubernur").body, key, NOW - 100,
                  chain=world.chain(cert))  # fmt: skip
    since = seal("result", result(world, key, cert).body, key, NOW + 10, chain=world.chain(cert))
    central.ingest(before.encode(), NOW + 20)
    central.ingest(since.encode(), NOW + 20)  # received *before* the revocation
    entry = RevokedEntry(serial, None, "phone stolen", NOW + 500, since=NOW)
    assert central.ingest(world.revocation(2, entry).encode(), NOW + 600)[1] == "accepted"
    assert receipt_of(central.receipt_for(since.id), world).reason == "revoked-signer"
    assert receipt_of(central.receipt_for(before.id), world).status == "accepted"
    central.verify_log()


def test_a_revocation_resolves_a_conflict(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    thief, thief_cert = world.officer("thief")
    honest = result(world, key, cert)
    forged = result(world, thief, thief_cert, invalid=0)
    central.ingest(honest.encode(), NOW)
    central.ingest(forged.encode(), NOW + 1)
    central.ingest(_revoke(world, thief_cert.body.serial, NOW).encode(), NOW + 2)  # type: ignore[union-attr]
    assert central.ingest(honest.encode(), NOW + 3)[1] == "accepted"
    assert central.status()["elections"][1]["tps_accepted"] == 1


def test_endorsements_are_verified_and_counted(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    member, member_cert = world.officer("member-a", role="kpps-member")
    witness, witness_cert = world.officer("witness-a", role="witness")
    outsider, outsider_cert = world.officer("witness-b", role="witness", scope=(TPS_B,))
    env = result(world, key, cert)
    central.ingest(env.encode(), NOW)
    for k, c in ((member, member_cert), (witness, witness_cert)):
        assert central.ingest(world.endorse(k, c, env).encode(), NOW + 5)[1] == "accepted"
    raw, status = central.ingest(world.endorse(outsider, outsider_cert, env).encode(), NOW)
    assert status == "rejected" and receipt_of(raw, world).reason.startswith("out-of-scope")
    lying = seal(
        "endorsement",
        EndorsementBody(env.id, TPS_A, "gubernur", "agree"),
        member,
        NOW,
        chain=world.chain(member_cert),
    )
    raw, status = central.ingest(lying.encode(), NOW)
    assert status == "rejected" and "another TPS or election" in receipt_of(raw, world).reason
    assert central.status()["endorsements"] == {env.id.hex(): 2}
    shown = central.tps_detail(TPS_A)["elections"][1]["results"][0]["endorsements"]
    assert sorted((e["role"], e["status"]) for e in shown) == [
        ("kpps-member", "accepted"),
        ("kpps-member", "rejected"),
        ("witness", "accepted"),
    ]


def test_trust_objects_are_acknowledged_not_tallied(
    central: Central, world: World, authority: Authority
) -> None:
    _, cert = world.officer("chair-a")
    assert central.ingest(cert.encode(), NOW)[1] == "accepted"
    raw, status = central.ingest(world.manifest_env.encode(), NOW)
    assert status == "accepted" and receipt_of(raw, world).reason == "stale"
    newer = world.revocation(5)
    assert central.ingest(newer.encode(), NOW)[1] == "accepted"
    assert authority.trust.revocation is not None and authority.trust.revocation.version == 5
    assert central.ingest(world.revocation(4).encode(), NOW)[1] == "accepted"
    assert authority.trust.revocation.version == 5
    # receipts are never receipted, so they cannot loop through the mesh
    assert central.ingest(raw or b"", NOW) == (None, "ignored")
    assert central.status()["elections"][1]["tps_received"] == 0


def test_photos_complete_when_all_three_blobs_arrive(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    central.ingest(env.encode(), NOW)
    hashes = photo_hashes(env)
    for h in hashes[:2]:
        assert central.note_blob(h, NOW) == []
    assert central.status()["elections"][1]["tps_photos_complete"] == 0
    # the third photo completes the result: a new receipt says so, once
    (receipt,) = central.note_blob(hashes[2], NOW + 5)
    assert central.note_blob(hashes[2], NOW + 6) == []
    body = decode_envelope(receipt).body
    assert isinstance(body, ReceiptBody)
    assert (body.object, body.status, body.reason, body.photos_complete) == (
        env.id, "accepted", "", True,
    )  # fmt: skip
    assert central.receipt_for(env.id) == receipt
    central.verify_log()
    assert central.status()["elections"][1]["tps_photos_complete"] == 1
    photos = central.tps_detail(TPS_A)["elections"][1]["results"][0]["photos"]
    assert [p["present"] for p in photos] == [True, True, True]


def test_state_survives_a_restart(authority: Authority, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    c = Central(authority.home, authority)
    first = c.ingest(env.encode(), NOW)
    c.ingest(world.revocation(3).encode(), NOW)
    c.close()
    authority.trust.revocation = None
    c = Central(authority.home, authority)
    try:
        assert c.ingest(env.encode(), NOW + 5) == first
        assert authority.trust.revocation is not None and authority.trust.revocation.version == 3
        c.verify_log()
        assert [r["version"] for r in c.db.query("SELECT version FROM migrations")] == [
            1,
            2,
            3,
            4,
            5,
        ]
        if isinstance(c.db, SQLiteCentralDB):
            assert c.db.query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
            tables = {
                r["name"]: r["sql"]
                for r in c.db.query("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            }
            assert all(sql.rstrip().endswith("STRICT") for name, sql in tables.items()), tables
    finally:
        c.close()


def test_metrics_count_kinds_statuses_and_bytes(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    central.ingest(env.encode(), NOW)
    central.ingest(env.encode(), NOW)
    central.ingest(b"junk", NOW)
    text = central.metrics()
    assert 'objects_received_total{kind="result",status="accepted"} 1' in text
    assert 'objects_received_total{kind="result",status="duplicate"} 1' in text
    assert 'objects_received_total{kind="unknown",status="malformed"} 1' in text
    assert f"estafet_central_bytes_received_total {2 * len(env.encode()) + 4}" in text
    assert 'objects_stored{kind="result",status="accepted"} 1' in text
    assert "# TYPE estafet_central_log_length gauge" in text


def test_one_ingest_is_one_transaction(
    central: Central, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = world.officer("chair-a")
    one = result(world, key, cert)
    central.ingest(one.encode(), NOW)
    thief, thief_cert = world.officer("thief")
    two = result(world, thief, thief_cert, invalid=2)
    calls = []

    def failing_append(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:  # the second log entry of this ingest: the first result's conflict
            raise OSError("disk full")
        original(*args)

    original = central.db.append_log
    monkeypatch.setattr(central.db, "append_log", failing_append)
    with pytest.raises(OSError, match="disk full"):
        central.ingest(two.encode(), NOW + 1)
    monkeypatch.undo()
    assert central.db.object_state(two.id) is None
    assert central.status()["log"]["length"] == 1
    assert receipt_of(central.receipt_for(one.id), world).status == "accepted"
    assert central.ingest(two.encode(), NOW + 2)[1] == "conflict"
    central.verify_log()


def test_making_codes_is_one_transaction(central: Central, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = [TPS_A, TPS_B]
    original = central.db.put_codes

    def put_then_fail(rows: list[dict[str, object]]) -> None:
        original(rows)
        raise OSError("crash after insert_all")

    monkeypatch.setattr(central.db, "put_codes", put_then_fail)
    with pytest.raises(OSError):
        central.enrollment.make_codes("witness", bad, NOW + DAY, NOW)
    assert central.db.query("SELECT count(*) AS n FROM enroll_codes") == [{"n": 0}]


def test_a_running_server_learns_a_revocation_made_by_another_process(
    authority: Authority, world: World
) -> None:
    """`central revoke` runs as its own process while `central serve` runs: the server must
    stop trusting the key at its next ingest, without a restart."""
    from tests.central.conftest import world_authority

    key, cert = world.officer("chair-a")
    serving = Central(authority.home, authority)
    # the revoking process: same home, its own authority and trust store
    other = world_authority(world, authority.home)
    revoker = Central(authority.home, other)
    try:
        serial = cert.body.serial  # type: ignore[union-attr]
        assert revoker.ingest(_revoke(world, serial, NOW).encode(), NOW)[1] == "accepted"
        later = result(world, key, cert, election="gubernur")
        receipt, status = serving.ingest(later.encode(), NOW + 60)
        assert status == "rejected"
        body = decode_envelope(receipt or b"").body
        assert isinstance(body, ReceiptBody) and body.reason == "revoked-signer"
    finally:
        serving.close()
        revoker.close()


def test_a_revocation_taken_by_another_worker_during_verification_is_applied(
    authority: Authority, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers (issue 16): worker B takes a revocation after worker A refreshed its
    trust but before A's write. A must not accept the revoked key's result on stale trust
    (B's sweep of accepted results ran before A's result existed)."""
    from tests.central.conftest import world_authority

    key, cert = world.officer("chair-a")
    a = Central(authority.home, authority)
    b = Central(authority.home, world_authority(world, authority.home))
    try:
        monkeypatch.setattr(a, "refresh_trust", lambda: None)  # A's refresh came just before
        serial = cert.body.serial  # type: ignore[union-attr]
        assert b.ingest(_revoke(world, serial, NOW).encode(), NOW)[1] == "accepted"
        receipt, status = a.ingest(result(world, key, cert).encode(), NOW + 60)
        assert status == "rejected"
        body = decode_envelope(receipt or b"").body
        assert isinstance(body, ReceiptBody) and body.reason == "revoked-signer"
        a.verify_log()
    finally:
        a.close()
        b.close()


def test_endorsements_count_distinct_signers_never_the_results_own(
    central: Central, world: World
) -> None:
    """Attack (issue 11, item 9): one witness signing 20 endorsements counted 20, and the chair
    endorsing its own result counted too. Now: distinct signers other than the result's own."""
    key, cert = world.officer("chair-a")
    witness, witness_cert = world.officer("witness-a", role="witness")
    env = result(world, key, cert)
    central.ingest(env.encode(), NOW)
    body = EndorsementBody(env.id, env.tps, env.election, "agree")
    for i in range(20):
        spam = seal("endorsement", body, witness, NOW + 60 + i, chain=world.chain(witness_cert))
        assert central.ingest(spam.encode(), NOW + 100)[1] == "accepted"
    own = seal("endorsement", body, key, NOW + 90, chain=world.chain(cert))
    central.ingest(own.encode(), NOW + 100)
    assert central.status()["endorsements"] == {env.id.hex(): 1}


# --- validity that fits store-and-forward (issue 11, item 6) ---------------------------------


def test_a_result_signed_in_time_but_arriving_late_is_counted(
    central: Central, world: World
) -> None:
    """Attack/accident: the result walks out of a no-signal kecamatan after the certificate
    ended. Before: refused with a final `expired` receipt. Now: judged by its signing time."""
    key, cert = world.officer("chair-a", not_after=NOW + 14 * DAY)
    env = result(world, key, cert)  # signed at NOW
    raw, status = central.ingest(env.encode(), NOW + 20 * DAY)
    assert status == "accepted", receipt_of(raw, world).reason if raw else status
    assert central.status()["elections"][1]["tps_accepted"] == 1


def test_time_only_failures_are_not_final_and_leave_no_row_or_receipt(
    central: Central, world: World
) -> None:
    key, cert = world.officer("chair-a", not_after=NOW + 14 * DAY)
    body = result(world, key, cert).body
    late = seal("result", body, key, NOW + 16 * DAY, chain=world.chain(cert))  # after the window
    raw, status = central.ingest(late.encode(), NOW + 16 * DAY)
    assert (raw, status) == (None, "not-final")
    assert central.db.object_state(late.id) is None
    assert central.receipt_for(late.id) is None
    # and a copy with a bad signature is the copy's own fault: refused, unsigned, no row
    assert central.ingest(_tamper_signature(late), NOW + 16 * DAY) == (None, "unverified")


# --- KPU recovery (issue 11, item 8) --------------------------------------------------------


def _void(world: World, target: Envelope, by: str = "issuer", when: int = NOW + 50) -> Envelope:
    body = VoidBody(target.id, target.tps, target.election, "stolen key, form replaced")
    key = world.issuer if by == "issuer" else world.root
    chain = (world.issuer_cert.encode(),) if by == "issuer" else ()
    return seal("void", body, key, when, chain=chain)


@pytest.mark.parametrize("by", ["issuer", "root"])
def test_a_void_uncounts_revision_99_and_keeps_it_as_evidence(
    central: Central, world: World, by: str
) -> None:
    """Attack: a stolen key signs revision 99; nothing could supersede it and the KPU had no way
    to void it. Now a void leaves it uncounted (kept, receipt `voided`); revision 0 counts."""
    key, cert = world.officer("chair-a")
    honest = result(world, key, cert)
    stolen = result(world, key, cert, revision=99, supersedes=honest.id.hex(), valid=201,
                    votes={"1": 0, "2": 1, "3": 200})  # fmt: skip
    central.ingest(honest.encode(), NOW)
    assert central.ingest(stolen.encode(), NOW + 1)[1] == "accepted"
    assert central.ingest(_void(world, stolen, by).encode(), NOW + 60)[1] == "accepted"
    assert receipt_of(central.receipt_for(stolen.id), world).status == "voided"
    assert central.db.object_state(stolen.id) is not None  # kept as evidence
    assert central.db.object_state(honest.id)["status"] == "accepted"  # type: ignore[index]
    bupati = central.status()["elections"][1]
    assert bupati["tps_accepted"] == 1 and bupati["tally"]["3"] != 200
    central.verify_log()


def test_a_void_that_arrives_first_voids_the_result_on_arrival(
    central: Central, world: World
) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    central.ingest(_void(world, env).encode(), NOW)
    assert central.ingest(env.encode(), NOW + 1)[1] == "voided"
    assert central.status()["elections"][1]["tps_accepted"] == 0


def test_only_the_root_or_an_issuer_may_void(central: Central, world: World) -> None:
    key, cert = world.officer("chair-a")
    env = result(world, key, cert)
    central.ingest(env.encode(), NOW)
    body = VoidBody(env.id, env.tps, env.election, "I changed my mind")
    own = seal("void", body, key, NOW + 5, chain=world.chain(cert))
    raw, status = central.ingest(own.encode(), NOW + 6)
    assert status == "rejected" and receipt_of(raw, world).reason.startswith("wrong-role")
    assert central.db.object_state(env.id)["status"] == "accepted"  # type: ignore[index]


def test_a_re_enrolled_chair_supersedes_the_old_keys_result(central: Central, world: World) -> None:
    """The chair's phone is stolen: the KPU revokes the old key from the compromise time, the
    chair re-enrolls (new key, same TPS) and signs revision 1 over the old key's revision 0.
    The thief's revision 99, signed after the compromise, is revoked."""
    old, old_cert = world.officer("chair-a old")
    new, new_cert = world.officer("chair-a new")
    first = result(world, old, old_cert)
    central.ingest(first.encode(), NOW)
    stolen = seal("result", result(world, old, old_cert, revision=99,
                                   supersedes=first.id.hex()).body, old, NOW + 100,
                  chain=world.chain(old_cert))  # fmt: skip
    central.ingest(stolen.encode(), NOW + 100)
    serial = old_cert.body.serial  # type: ignore[union-attr]
    revocation = world.revocation(2, RevokedEntry(serial, None, "phone stolen", NOW + 200,
                                                  since=NOW + 50))  # fmt: skip
    central.ingest(revocation.encode(), NOW + 200)
    assert receipt_of(central.receipt_for(stolen.id), world).reason == "revoked-signer"
    assert central.db.object_state(first.id)["status"] == "accepted"  # type: ignore[index]
    fix = seal("result", result(world, new, new_cert, revision=1,
                                supersedes=first.id.hex()).body, new, NOW + 300,
               chain=world.chain(new_cert))  # fmt: skip
    assert central.ingest(fix.encode(), NOW + 300)[1] == "accepted"
    assert central.db.object_state(first.id)["status"] == "superseded"  # type: ignore[index]
    assert central.status()["elections"][1]["tps_accepted"] == 1


def test_a_revision_naming_an_unknown_id_is_held_not_counted(
    central: Central, world: World
) -> None:
    """Attack: a revision whose `supersedes` names an id nobody has was counted, beating the
    genuine revision 0. Now it is held (not counted) until the named result arrives."""
    key, cert = world.officer("chair-a")
    honest = result(world, key, cert)
    phantom = result(world, key, cert, revision=5, supersedes=(b"\x07" * 32).hex(), valid=201,
                     votes={"1": 0, "2": 1, "3": 200})  # fmt: skip
    central.ingest(honest.encode(), NOW)
    raw, status = central.ingest(phantom.encode(), NOW + 1)
    assert status == "held" and "held" in receipt_of(raw, world).reason
    assert central.db.object_state(honest.id)["status"] == "accepted"  # type: ignore[index]
    assert central.status()["elections"][1]["tally"]["3"] != 200
