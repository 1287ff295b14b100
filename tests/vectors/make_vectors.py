"""Golden test vectors for Estafet's signed objects: one JSON file per kind, plus a key file.

Everything is derived from fixed seeds (``tests.kit.seeded_key``) and the fixed clock
``tests.kit.NOW``; Ed25519 signatures are deterministic, so the output never changes unless the
wire format does. ``tests/protocol/test_objects.py`` rebuilds the objects and compares them with
the checked-in files byte for byte. After a *deliberate* format change, regenerate with::

    python -m tests.vectors.make_vectors        (from the repository root)

and say so in the change: every deployed node must be upgraded together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from estafet.crypto.keyfile import encrypt_key
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.protocol import codec
from estafet.protocol.manifest import Manifest, build_manifest
from estafet.protocol.objects import (
    LOG_GENESIS,
    Envelope,
    ReceiptBody,
    ResultBody,
    RevokedEntry,
    VoidBody,
    decode_envelope,
    log_entry_hash,
    signing_message,
)
from estafet.protocol.plenary import Numbers, make_dhasil
from estafet.protocol.trail import CorrectionBody
from tests.kit import NOW, TPS_A, TPS_B, World, photo_bytes, photo_refs, seeded_key

HERE = Path(__file__).resolve().parent
KEYFILE_PASSPHRASE = "kotak suara 2024"


def small_manifest() -> Manifest:
    """Five TPS of Hampang (a no-signal kecamatan of Kotabaru), with the real ballot numbers."""
    return build_manifest(
        name="Pilkada 2024 - Kabupaten Kotabaru (vector)",
        version=3,
        elections=[
            {"kind": "gubernur", "region": "63", "ballot_numbers": [1, 2]},
            {"kind": "bupati", "region": "6302", "ballot_numbers": [1, 2, 3]},
        ],
        tps_rows=[
            {"code": TPS_A, "desa_code": "6302142001", "number": "1", "dpt": "250"},
            {"code": TPS_B, "desa_code": "6302142001", "number": "2", "dpt": ""},
            {"code": "6302142001003", "desa_code": "6302142001", "number": "3", "dpt": "240"},
            {"code": "6302142002001", "desa_code": "6302142002", "number": "1", "dpt": ""},
            {"code": "6302142009002", "desa_code": "6302142009", "number": "2", "dpt": "198"},
        ],
        regions={
            "630214": "Hampang",
            "6302142001": "Hampang",
            "6302142002": "Cantung Kiri Hulu",
            "6302142009": "Limbungan",
        },
    )


def _jsonable(value: Any) -> Any:
    """Decoded content as JSON: bytes become ``{"hex": ...}`` so they stay distinct from text."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def describe(env: Envelope, signer: SigningKey, signer_label: str, note: str) -> dict[str, Any]:
    message = signing_message(env.kind, env.content)
    return {
        "note": note,
        "kind": env.kind,
        "signer_seed_label": signer_label,
        "signer_public": signer.public.hex(),
        "signer_key_id": env.signer.hex(),
        "created": env.created,
        "content": _jsonable(codec.decode(env.content, codec.MANIFEST_LIMITS)),
        "content_hex": env.content.hex(),
        "signing_prefix_hex": message[: len(message) - len(env.content)].hex(),
        "signature_hex": env.signature.hex(),
        "object_id_hex": env.id.hex(),
        "chain_object_ids_hex": [decode_envelope(raw).id.hex() for raw in env.chain],
        "envelope_hex": env.encode().hex(),
    }


def build() -> dict[str, dict[str, Any]]:
    """Every vector, by file stem. Pure and deterministic."""
    w = World(manifest=small_manifest())
    root_info = {"root_public": w.root.public.hex(), "root_key_id": w.root.id.hex(), "now": NOW}
    chair, chair_cert = w.officer("kpps-chair " + TPS_A)
    witness, witness_cert = w.officer("witness " + TPS_A, role="witness")
    result, _ = w.result(chair, chair_cert)
    endorsement = w.endorse(witness, witness_cert, result)
    revocation = w.revocation(
        1,
        RevokedEntry(serial=99, key=None, reason="phone lost", time=NOW - 3600),
        RevokedEntry(serial=None, key=seeded_key("stolen").id, reason="stolen", time=NOW - 60),
        RevokedEntry(
            serial=None,
            key=seeded_key("compromised").id,
            reason="key copied; results signed since the compromise are void",
            time=NOW - 30,
            since=NOW - 86_400,
        ),
    )
    void = seal(
        "void",
        VoidBody(result.id, result.tps, result.election, "recount: form C.Hasil replaced"),
        w.issuer,
        NOW + 300,
    )
    server_time = NOW + 120
    log_hash = log_entry_hash(LOG_GENESIS, 0, result.id, "accepted", "", server_time)
    receipt_body = ReceiptBody(
        object=result.id,
        object_kind="result",
        tps=result.tps,
        election=result.election,
        status="accepted",
        reason="",
        log_index=0,
        log_prev=LOG_GENESIS,
        log_hash=log_hash,
    )
    receipt = seal("receipt", receipt_body, w.issuer, server_time)
    out = {
        **_trail(w, chair, chair_cert, result),
        "certificate": describe(
            w.issuer_cert, w.root, "root", "the KPU root certifies the central issuer key"
        ),
        "manifest": describe(
            w.manifest_env, w.root, "root", "a small manifest (5 TPS) signed by the root"
        ),
        "revocation": describe(
            revocation,
            w.root,
            "root",
            "revocation list v1: one serial, one key id, one key id with a compromise time "
            "(since): objects it signed from then on are revoked, earlier ones stand",
        ),
        "void": describe(
            void, w.issuer, "issuer", "the KPU issuer voids the result: never counted, kept"
        ),
        "result": describe(
            result,
            chair,
            "kpps-chair " + TPS_A,
            "a bupati result for TPS 6302142001001 with 3 photo hashes and one warning, "
            "carrying its chain "
            "(officer certificate, issuer certificate)",
        ),
        "endorsement": describe(
            endorsement, witness, "witness " + TPS_A, "a witness agrees with the result"
        ),
        "receipt": describe(
            receipt, w.issuer, "issuer", "the issuer's receipt: ingest-log entry 0 for the result"
        ),
    }
    out["receipt"]["log_entry"] = {
        "prev_hex": LOG_GENESIS.hex(),
        "index": 0,
        "object_hex": result.id.hex(),
        "status": "accepted",
        "reason": "",
        "server_time": server_time,
        "photos_complete": False,
        "hash_hex": log_hash.hex(),
    }
    for v in out.values():
        v.update(root_info)
    out["keyfile"] = build_keyfile()
    return out


def _trail(w: World, chair: SigningKey, chair_cert: Envelope, result: Envelope) -> dict[str, Any]:
    """The issue-13 kinds: a witness admitted at the TPS objects; the PPK corrects and recaps."""
    witness = seeded_key("saksi paslon 2 " + TPS_A)
    mandate = photo_refs([photo_bytes("surat mandat")])
    admission = w.admit(chair, chair_cert, witness, pair=2, seat=1, mandate=mandate)
    form_photo = photo_refs([photo_bytes("C.Kejadian Khusus")])
    objection = w.object_to(
        witness, w.admitted_chain(admission, chair_cert), result,
        "suara paslon 2 di lembar 2 terbaca 41, seharusnya 91", form_photo,
    )  # fmt: skip
    ppk, ppk_cert = w.officer("ppk 630214", role="ppk", scope=("630214",))
    assert isinstance(result.body, ResultBody)
    votes = dict(result.body.form.votes)
    votes["2"] += 1
    minutes = photo_refs([photo_bytes("berita acara pleno")])
    correction = w.correct(
        ppk, ppk_cert, result, votes=votes, valid=result.body.form.valid + 1,
        invalid=result.body.form.invalid - 1, photos=minutes,
    )  # fmt: skip
    assert isinstance(correction.body, CorrectionBody)
    form = result.body.form
    numbers = {result.id: Numbers(form.tps, form.election, form.votes, form.valid, form.invalid)}
    body = make_dhasil(
        "630214", "bupati", ("1", "2", "3"), numbers,
        {result.id: (correction.id, correction.body)},
    )  # fmt: skip
    dhasil = seal("dhasil", body, ppk, NOW + 2 * 86400, chain=w.chain(ppk_cert))
    return {
        "admission": describe(
            admission, chair, "kpps-chair " + TPS_A,
            "the chair admits the witness of pair 2 (seat 1) at its TPS for the day, with a "
            "photo of the mandate letter",
        ),
        "objection": describe(
            objection, witness, "saksi paslon 2 " + TPS_A,
            "the admitted witness objects, with a photo of the C.Kejadian Khusus form; its chain "
            "is admission, chair certificate, issuer certificate",
        ),
        "correction": describe(
            correction, ppk, "ppk 630214",
            "the PPK of Hampang corrects the result after a recount (one invalid vote was valid "
            "for pair 2), with a photo of the plenary minutes",
        ),
        "dhasil": describe(
            dhasil, ppk, "ppk 630214",
            "the D.Hasil of Hampang (bupati): one TPS result and its correction, added up",
        ),
    }  # fmt: skip


def build_keyfile() -> dict[str, Any]:
    key = seeded_key("kpps-chair " + TPS_A)
    salt, nonce, n = bytes(range(16)), bytes(range(100, 112)), 2**10
    data = encrypt_key(key, KEYFILE_PASSPHRASE, n=n, salt=salt, nonce=nonce)
    return {
        "note": "an encrypted key file (scrypt n=2**10 to keep tests fast; real files use 2**15)",
        "passphrase": KEYFILE_PASSPHRASE,
        "n": n,
        "salt_hex": salt.hex(),
        "nonce_hex": nonce.hex(),
        "key_id_hex": key.id.hex(),
        "public_hex": key.public.hex(),
        "keyfile_hex": data.hex(),
    }


def render(vector: dict[str, Any]) -> str:
    return json.dumps(vector, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    for stem, vector in build().items():
        path = HERE / f"{stem}.json"
        path.write_text(render(vector), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
