"""The signed-object envelope: golden vectors, schemas per kind, and hostile bytes."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import verify_signature
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol import codec
from estafet.protocol.errors import DecodeError, ProtocolError, SchemaError
from estafet.protocol.objects import (
    FETCH_PRIORITY,
    KINDS,
    LOG_GENESIS,
    MAX_OBJECT_BYTES,
    EndorsementBody,
    Envelope,
    ManifestBody,
    ReceiptBody,
    ResultBody,
    decode_envelope,
    encode_envelope,
    log_entry_hash,
    make_content,
    object_id,
    receipt_log_ok,
    signing_message,
)
from tests.kit import NOW, TPS_A, World, seeded_key
from tests.vectors.make_vectors import HERE, build, render, small_manifest

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BUILT = build()
STEMS = (
    "certificate", "manifest", "revocation", "void", "result", "endorsement", "receipt",
    "admission", "objection", "correction", "dhasil",
)  # fmt: skip


def load(stem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / f"{stem}.json").read_text(encoding="utf-8"))
    return data


# --- golden vectors ------------------------------------------------------------------------


def test_there_is_a_vector_for_every_kind() -> None:
    assert {load(s)["kind"] for s in STEMS} == set(KINDS)


@pytest.mark.parametrize("stem", [*STEMS, "keyfile"])
def test_vector_file_matches_a_rebuild(stem: str) -> None:
    """Any change to the wire format, the canonical encoding or a signature fails here."""
    assert build()[stem] == load(stem)
    assert render(BUILT[stem]) == (HERE / f"{stem}.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("stem", STEMS)
def test_vector_bytes_are_self_consistent(stem: str) -> None:
    v = load(stem)
    content = bytes.fromhex(v["content_hex"])
    env = decode_envelope(bytes.fromhex(v["envelope_hex"]))
    assert env.content == content
    assert env.kind == v["kind"]
    assert env.id.hex() == v["object_id_hex"] == object_id(content).hex()
    assert env.signature.hex() == v["signature_hex"]
    assert env.signer.hex() == v["signer_key_id"]
    assert env.created == v["created"]
    assert env.encode().hex() == v["envelope_hex"]
    prefix = bytes.fromhex(v["signing_prefix_hex"])
    assert prefix == b"estafet/" + v["kind"].encode() + b"/v2\x00"
    assert signing_message(env.kind, content) == prefix + content
    public = bytes.fromhex(v["signer_public"])
    assert verify_signature(public, prefix + content, env.signature)
    assert public == seeded_key(v["signer_seed_label"]).public


def test_vectors_verify_from_the_root_alone() -> None:
    """A store that knows only the root public key accepts every vector, in fetch order."""
    ts = TrustStore(bytes.fromhex(load("certificate")["root_public"]))
    for stem in sorted(STEMS, key=lambda s: FETCH_PRIORITY[load(s)["kind"]]):
        v = load(stem)  # the plenary's objects are signed days after the count
        verified = ts.verify(bytes.fromhex(v["envelope_hex"]), max(NOW, v["created"]))
        ts.learn(verified)
        if stem == "result":
            assert verified.warnings == ("warn-dpt-manifest",)
    assert ts.manifest == small_manifest()


def test_receipt_vector_commits_to_its_log_entry() -> None:
    v = load("receipt")
    e = v["log_entry"]
    expected = log_entry_hash(
        bytes.fromhex(e["prev_hex"]),
        e["index"],
        bytes.fromhex(e["object_hex"]),
        e["status"],
        e["reason"],
        e["server_time"],
        e["photos_complete"],
    )
    assert expected.hex() == e["hash_hex"]
    assert e["object_hex"] == load("result")["object_id_hex"]
    body = decode_envelope(bytes.fromhex(v["envelope_hex"])).body
    assert isinstance(body, ReceiptBody)
    assert receipt_log_ok(body, e["server_time"])
    assert not receipt_log_ok(body, e["server_time"] + 1)


# --- ids, domains and the ingest-log hash ---------------------------------------------------


def test_signing_messages_are_separated_by_kind() -> None:
    content = b"\x80"
    messages = {signing_message(k, content) for k in KINDS}
    assert len(messages) == len(KINDS)
    assert all(m.endswith(b"/v2\x00" + content) for m in messages)


def test_fetch_priority_puts_trust_first_and_endorsements_last() -> None:
    order = sorted(KINDS, key=FETCH_PRIORITY.__getitem__)
    assert order[0] == "revocation"
    assert order.index("endorsement") > order.index("result")
    assert order.index("admission") < order.index("result") < order.index("objection")
    assert order[-1] == "dhasil"
    assert order.index("receipt") < order.index("result")


@pytest.mark.parametrize("field", range(7))
def test_log_hash_commits_to_every_field(field: int) -> None:
    args: list[Any] = [LOG_GENESIS, 0, bytes(32), "accepted", "", NOW, False]
    changed = list(args)
    changed[field] = [b"\x01" * 32, 1, b"\x02" * 32, "rejected", "x", NOW + 1, True][field]
    assert log_entry_hash(*args) != log_entry_hash(*changed)
    assert len(log_entry_hash(*args)) == 32


# --- schemas ---------------------------------------------------------------------------------

WORLD = World(manifest=small_manifest())
CHAIR, CHAIR_CERT = WORLD.officer("kpps-chair " + TPS_A)
RESULT, _ = WORLD.result(CHAIR, CHAIR_CERT)


def content_of(env: Envelope) -> dict[str, Any]:
    m: dict[str, Any] = codec.decode(env.content, codec.MANIFEST_LIMITS)
    return m


def rewrap(m: dict[str, Any], chain: tuple[bytes, ...] = ()) -> bytes:
    """Re-encode edited content with a dummy signature: decoding never checks signatures."""
    return encode_envelope(codec.encode(m), bytes(64), chain)


def test_decode_keeps_content_bytes_and_derives_fields() -> None:
    env = decode_envelope(RESULT.encode())
    assert env == RESULT
    assert env.tps == TPS_A and env.election == "bupati"
    assert len(env.chain) == 2
    assert isinstance(env.body, ResultBody)
    assert WORLD.issuer_cert.tps == "" and WORLD.issuer_cert.election == ""
    endorsement = WORLD.endorse(CHAIR, CHAIR_CERT, RESULT)
    assert (endorsement.tps, endorsement.election) == (TPS_A, "bupati")


def edited(**changes: Any) -> dict[str, Any]:
    m = content_of(RESULT)
    for k, v in changes.items():
        if v is KeyError:
            del m[k]
        else:
            m[k] = v
    return m


SCHEMA_CASES: dict[str, tuple[dict[str, Any], type[ProtocolError]]] = {
    "unknown kind": (edited(kind="ballot"), SchemaError),
    "kind is a list": (edited(kind=[]), SchemaError),
    "kind is a map": (edited(kind={}), SchemaError),
    "version 1 (before the trail kinds)": (edited(v=1), SchemaError),
    "version 3": (edited(v=3), SchemaError),
    "version missing": (edited(v=KeyError), SchemaError),
    "extra key": (edited(extra=1), SchemaError),
    "missing key": (edited(photos=KeyError), SchemaError),
    "signer 15 bytes": (edited(signer=bytes(15)), SchemaError),
    "signer as text": (edited(signer="00" * 16), SchemaError),
    "created negative": (edited(created=-1), SchemaError),
    "created beyond 2**40": (edited(created=2**40 + 1), SchemaError),
    "count out of range": (edited(valid=1000), SchemaError),
    "photos not a list": (edited(photos={}), SchemaError),
    "nine photos": (edited(photos=[content_of(RESULT)["photos"][0]] * 9), SchemaError),
    "warning not text": (edited(warnings=[1]), SchemaError),
    # the same meaning written differently would get a second id: refused
    "supersedes as hex": (edited(revision=1, supersedes="ab" * 32), DecodeError),
    "unsorted warnings": (edited(warnings=["warn-dpt-large", "warn-ballots-short"]), DecodeError),
    "photos out of order": (
        edited(photos=list(reversed(content_of(RESULT)["photos"]))),
        DecodeError,
    ),
}


@pytest.mark.parametrize(("m", "error"), list(SCHEMA_CASES.values()), ids=list(SCHEMA_CASES.keys()))
def test_content_schema(m: dict[str, Any], error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        decode_envelope(rewrap(m))


def test_sorted_warnings_and_revisions_are_fine() -> None:
    env = decode_envelope(rewrap(edited(warnings=["warn-ballots-short", "warn-dpt-large"])))
    assert isinstance(env.body, ResultBody)
    assert env.body.warnings == ("warn-ballots-short", "warn-dpt-large")
    env = decode_envelope(rewrap(edited(revision=1, supersedes=bytes(32))))
    assert isinstance(env.body, ResultBody)
    assert env.body.form.supersedes == bytes(32)


def test_manifest_rows_must_be_canonical() -> None:
    m = content_of(WORLD.manifest_env)
    dup = dict(m, tps=[*m["tps"], m["tps"][0]])
    with pytest.raises(DecodeError):
        decode_envelope(rewrap(dup))
    unsorted = dict(m, tps=list(reversed(m["tps"])))
    with pytest.raises(DecodeError):
        decode_envelope(rewrap(unsorted))
    with pytest.raises(SchemaError):
        decode_envelope(rewrap(dict(m, tps=[["123", None]])))


def test_endorsement_and_receipt_shapes() -> None:
    base = content_of(WORLD.endorse(CHAIR, CHAIR_CERT, RESULT))
    for change in ({"statement": "maybe"}, {"tps": "123"}, {"result": bytes(31)}):
        with pytest.raises(SchemaError):
            decode_envelope(rewrap({**base, **change}))
    body = ReceiptBody(
        RESULT.id, "result", "", "", "rejected", "valid-sum", 3, bytes(32), bytes(32)
    )
    receipt = content_of(seal("receipt", body, WORLD.issuer, NOW))
    assert decode_envelope(rewrap(receipt)).tps == ""
    for change in ({"status": "ok"}, {"tps": "12"}, {"log_prev": bytes(31)}, {"log_index": -1}):
        with pytest.raises(SchemaError):
            decode_envelope(rewrap({**receipt, **change}))


def test_revocation_and_certificate_shapes() -> None:
    rev = content_of(WORLD.revocation(1))
    for change in (
        {"version": 0},
        {"entries": {}},
        {"entries": [{"serial": None, "key": None, "reason": "x", "time": 0}]},
        {"entries": [{"serial": 1, "key": None, "reason": "x"}]},
    ):
        with pytest.raises(SchemaError):
            decode_envelope(rewrap({**rev, **change}))
    cert = content_of(CHAIR_CERT)
    for change in (
        {"role": "president"},
        {"scope": ["63x"]},
        {"elections": ["dprd"]},
        {"not_after": cert["not_before"]},
        {"subject": bytes(31)},
    ):
        with pytest.raises(SchemaError):
            decode_envelope(rewrap({**cert, **change}))


ENVELOPE_CASES: dict[str, tuple[bytes, type[ProtocolError]]] = {
    "not a map": (codec.encode([RESULT.content, RESULT.signature]), SchemaError),
    "missing signature": (codec.encode({"c": RESULT.content}), SchemaError),
    "extra key": (codec.encode({"c": RESULT.content, "s": RESULT.signature, "y": 1}), SchemaError),
    "short signature": (codec.encode({"c": RESULT.content, "s": bytes(63)}), SchemaError),
    "content as text": (codec.encode({"c": "x", "s": bytes(64)}), SchemaError),
    "content not a map": (encode_envelope(codec.encode([1]), bytes(64)), SchemaError),
    "content not msgpack": (encode_envelope(b"\xc1", bytes(64)), DecodeError),
    "chain of text": (codec.encode({"c": RESULT.content, "s": bytes(64), "x": ["a"]}), SchemaError),
    "empty chain": (codec.encode({"c": RESULT.content, "s": bytes(64), "x": []}), DecodeError),
    "chain of four": (encode_envelope(RESULT.content, bytes(64), (b"\xc0",) * 4), DecodeError),
    "unsorted outer keys": (
        b"\x82\xa1s\xc4\x40" + bytes(64) + b"\xa1c" + codec.encode(RESULT.content),
        DecodeError,
    ),
}


@pytest.mark.parametrize(
    ("data", "error"), list(ENVELOPE_CASES.values()), ids=list(ENVELOPE_CASES.keys())
)
def test_envelope_shape(data: bytes, error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        decode_envelope(data)


def test_size_caps() -> None:
    big = encode_envelope(RESULT.content, RESULT.signature, (bytes(MAX_OBJECT_BYTES),))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_envelope(big)
    with pytest.raises(DecodeError):
        decode_envelope(RESULT.encode(), max_bytes=len(RESULT.encode()) - 1)
    assert decode_envelope(RESULT.encode(), max_bytes=len(RESULT.encode())) == RESULT
    # a manifest may be larger than an ordinary object
    assert len(WORLD.manifest_env.encode()) < MAX_OBJECT_BYTES
    kotabaru = World()
    assert decode_envelope(kotabaru.manifest_env.encode()) == kotabaru.manifest_env


def test_make_content_refuses_mismatches() -> None:
    body = RESULT.body
    with pytest.raises(SchemaError):
        make_content("endorsement", CHAIR.id, NOW, body)
    with pytest.raises(SchemaError):
        make_content("result", CHAIR.id[:15], NOW, body)
    with pytest.raises(SchemaError):
        make_content("nonsense", CHAIR.id, NOW, body)
    assert isinstance(WORLD.manifest_env.body, ManifestBody)
    assert isinstance(WORLD.endorse(CHAIR, CHAIR_CERT, RESULT).body, EndorsementBody)


# --- hostile bytes ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_decode_or_schema_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError, SchemaError):
        decode_envelope(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_envelopes_raise_only_decode_or_schema_errors(data: st.DataObject) -> None:
    raw = bytearray(RESULT.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError, SchemaError):
        decode_envelope(bytes(raw))


field_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 2**40 + 1)
    | st.text(max_size=16)
    | st.binary(max_size=40)
    | st.sampled_from([TPS_A, "bupati", "kpps-chair", "accepted", "agree", "6302"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*KINDS, "other"]),
    st.dictionaries(
        st.sampled_from(
            sorted(
                {f for stem in STEMS for f in BUILT[stem]["content"]}
                | {"kind", "v", "signer", "created"}
            )
        ),
        field_values,
        max_size=12,
    ),
    st.data(),
)
def test_generated_content_raises_only_decode_or_schema_errors(
    kind: str, fields: dict[str, Any], data: st.DataObject
) -> None:
    """Content maps with real field names and random values: shape errors, never a crash."""
    base = data.draw(st.sampled_from(STEMS))
    m = {k: _plain(v) for k, v in BUILT[base]["content"].items()}
    m.update(fields)
    m["kind"] = kind if data.draw(st.booleans()) else m.get("kind")
    try:
        content = codec.encode(m)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError, SchemaError):
        decode_envelope(encode_envelope(content, bytes(64)))


def _plain(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"hex"}:
        return bytes.fromhex(v["hex"])
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# --- any flipped bit or byte breaks verification --------------------------------------------


def fresh_store(learn_certs: bool) -> TrustStore:
    ts = TrustStore(WORLD.root.public, manifest=WORLD.manifest)
    if learn_certs:
        ts.learn(ts.verify(WORLD.issuer_cert, NOW))
        ts.learn(ts.verify(CHAIR_CERT, NOW))
    return ts


BARE = encode_envelope(RESULT.content, RESULT.signature)  # the certificates are learnt
CHAINED = RESULT.encode()


def test_unmodified_envelopes_verify() -> None:
    assert fresh_store(True).verify(BARE, NOW).id == RESULT.id
    assert fresh_store(False).verify(CHAINED, NOW).id == RESULT.id


@SETTINGS
@given(st.data())
def test_any_flipped_bit_fails_verification(data: st.DataObject) -> None:
    chained = data.draw(st.booleans())
    raw = bytearray(CHAINED if chained else BARE)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(VerifyError):
        fresh_store(learn_certs=not chained).verify(bytes(raw), NOW)


@SETTINGS
@given(st.data())
def test_any_replaced_byte_fails_verification(data: st.DataObject) -> None:
    chained = data.draw(st.booleans())
    raw = bytearray(CHAINED if chained else BARE)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    with pytest.raises(VerifyError):
        fresh_store(learn_certs=not chained).verify(bytes(raw), NOW)


def test_every_single_bit_flip_of_the_bare_envelope_fails() -> None:
    """Exhaustive over the object without its chain (about 4,000 flips)."""
    ts = fresh_store(True)
    raw = bytearray(BARE)
    for i in range(len(raw)):
        for bit in (0, 3, 7):
            raw[i] ^= 1 << bit
            with pytest.raises(VerifyError):
                ts.verify(bytes(raw), NOW)
            raw[i] ^= 1 << bit


@pytest.mark.parametrize("path", [("valid",), ("voters", "dpt", "m"), ("photos", 0, "size")])
def test_a_float_in_the_content_is_refused(path: tuple[Any, ...]) -> None:
    """The content map is not checked canonical on its own (the parsed body is re-encoded and
    compared instead): a float where a count belongs must still be refused, at any depth."""
    m = content_of(RESULT)
    where: Any = m
    for step in path[:-1]:
        where = where[step]
    where[path[-1]] = float(where[path[-1]])
    raw = encode_envelope(msgpack.packb(m, use_bin_type=True), bytes(64))
    with pytest.raises(ProtocolError):
        decode_envelope(raw)
