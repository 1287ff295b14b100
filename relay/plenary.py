"""The paper trail made on this device, and the PPK plenary run from the node's own store.

Signing (each checks, signs, stores through :func:`~.accept.accept_one`, so the object is
verified exactly as every other hop will verify it, and then travels like a result):

* :func:`admit`: the KPPS chair admits a witness (or the PTPS) whose phone shows its key;
* :func:`object_to`: a member, witness or PTPS objects to a result, with optional photos;
* :func:`correct`: the PPK corrects one TPS result with the plenary's numbers;
* :func:`sign_dhasil`: the PPK signs the D.Hasil of its kecamatan from what the node holds.

:func:`trail_view` is the per-TPS recap data for the plenary screen (numbers, photos,
endorsements, objections, corrections, ready or in dispute), added to the recap JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore, Verified
from estafet.protocol.errors import FormError
from estafet.protocol.form import parse_form
from estafet.protocol.objects import (
    Body,
    CertificateBody,
    EndorsementBody,
    Envelope,
    ResultBody,
    decode_envelope,
)
from estafet.protocol.photos import PhotoRef, sniff_type
from estafet.protocol.plenary import Numbers, latest_corrections, make_dhasil
from estafet.protocol.tally import resolve_slot
from estafet.protocol.trail import (
    ADMISSION_MAX_SPAN,
    AdmissionBody,
    CorrectionBody,
    DHasilBody,
    ObjectionBody,
)

from .accept import accept_one, load_trust
from .errors import ConfigError, RelayError
from .store import Store, StoreDB


def _trust(sdb: StoreDB, root_public: bytes, now: int, held: TrustStore | None) -> TrustStore:
    """``held``: the running node's trust store (the phone app passes it), used as is; the
    CLI has none and loads one from the store."""
    if held is not None:
        return held
    trust = TrustStore(root_public)
    load_trust(sdb, trust, now)
    return trust


def signer_chain(sdb: StoreDB, trust: TrustStore, key: SigningKey) -> tuple[bytes, ...]:
    """The chain this key's objects carry: its enrolled certificate and the issuer's, or, for a
    witness or PTPS admitted at the TPS, [admission, chair certificate, issuer certificate]."""
    by_subject: dict[bytes, Envelope] = {}
    for raw in sdb.raw_by_kind(["certificate", "admission"]):
        env = decode_envelope(raw)
        body = env.body
        if isinstance(body, CertificateBody | AdmissionBody):
            by_subject.setdefault(key_id(body.subject), env)
    chain: list[bytes] = []
    kid = key.id
    while kid in by_subject and len(chain) < 3:
        env = by_subject[kid]
        chain.append(env.encode())
        kid = env.signer
    if not chain:
        raise ConfigError(
            "this key is neither enrolled nor admitted here: enroll (`estafet node enroll`) or "
            "ask the KPPS chair to admit it, then sync with the chair's phone"
        )
    return tuple(chain)


def photo_refs(datas: Iterable[bytes]) -> tuple[PhotoRef, ...]:
    out = []
    for i, data in enumerate(datas, 1):
        kind = sniff_type(data[:16])
        if kind is None:
            raise RelayError(f"photo {i} is not a JPEG or PNG")
        out.append(PhotoRef(i, hashlib.sha256(data).digest(), len(data), kind))
    return tuple(out)


def _sign_store(
    store: Store, key: SigningKey, root: bytes, kind: str, body: Body, photos: list[bytes],
    now: int, trust: TrustStore | None,
) -> Envelope:  # fmt: skip
    """Sign ``body``, keep its photos as blobs first, then verify and store it like any hop."""
    sdb = store.sync_db()
    trust = _trust(sdb, root, now, trust)
    env = seal(kind, body, key, now, chain=signer_chain(sdb, trust, key))
    for data in photos:
        digest = hashlib.sha256(data).digest()
        store.blobs.write_whole(digest, data)
        sdb.add_blob(digest, len(data), now)
    out = accept_one(sdb, trust, env.encode(), peer="", origin="local", scope="", now=now)
    if out.status not in ("stored", "duplicate"):
        raise RelayError(f"{kind} refused: {out.reason}")
    return env


def _held_result(sdb: StoreDB, result_id: bytes) -> Envelope:
    raws = sdb.get_raw([result_id])
    if not raws:
        raise RelayError(f"no result {result_id.hex()} held here: sync first")
    env = decode_envelope(raws[0])
    if not isinstance(env.body, ResultBody):
        raise RelayError(f"{result_id.hex()} is a {env.kind}, not a result")
    return env


def admit(
    store: Store, key: SigningKey, root: bytes, subject: bytes, *, role: str, pair: int,
    seat: int, elections: tuple[str, ...], label: str, mandate: bytes | None, now: int,
    hours: int = 24, trust: TrustStore | None = None,
) -> Envelope:  # fmt: skip
    """The chair admits ``subject`` (a raw public key) at its own TPS from now for ``hours``."""
    sdb = store.sync_db()
    cert = _own_certificate(sdb, key)
    if cert.role != "kpps-chair" or len(cert.scope) != 1:
        raise RelayError("only a KPPS chair admits witnesses, at its own TPS")
    span = min(hours * 3600, ADMISSION_MAX_SPAN)
    body = AdmissionBody(
        subject, role, cert.scope[0], tuple(sorted(set(elections))), pair, seat, now - 3600,
        now - 3600 + span, label, photo_refs([mandate] if mandate else []),
    )  # fmt: skip
    return _sign_store(store, key, root, "admission", body, [mandate] if mandate else [], now,
                       trust)  # fmt: skip


def _own_certificate(sdb: StoreDB, key: SigningKey) -> CertificateBody:
    for raw in sdb.raw_by_kind(["certificate"]):
        body = decode_envelope(raw).body
        if isinstance(body, CertificateBody) and body.subject == key.public:
            return body
    raise ConfigError("this node is not enrolled yet: run `estafet node enroll`")


def object_to(
    store: Store, key: SigningKey, root: bytes, result_id: bytes, reason: str,
    photos: list[bytes], now: int, *, trust: TrustStore | None = None,
) -> Envelope:  # fmt: skip
    """Object to a held result (a member, witness or the PTPS), with up to three photos."""
    result = _held_result(store.sync_db(), result_id)
    body = ObjectionBody(result.id, result.tps, result.election, reason, photo_refs(photos))
    return _sign_store(store, key, root, "objection", body, photos, now, trust)


def correct(
    store: Store, key: SigningKey, root: bytes, result_id: bytes, numbers: dict[str, Any],
    reason: str, minutes: bytes | None, now: int, *, trust: TrustStore | None = None,
) -> Envelope:  # fmt: skip
    """The PPK's correction of a held result: ``numbers`` are the form fields that change."""
    result = _held_result(store.sync_db(), result_id)
    assert isinstance(result.body, ResultBody)
    form = {**result.body.form.to_json(), **numbers, "revision": 0, "supersedes": None}
    try:
        parsed = parse_form(form)
    except FormError as exc:
        raise RelayError(f"correction numbers: {exc}") from exc
    photos = [minutes] if minutes else []
    body = CorrectionBody(result.id, parsed, reason, photo_refs(photos))
    return _sign_store(store, key, root, "correction", body, photos, now, trust)


def _verified(sdb: StoreDB, trust: TrustStore, kinds: list[str], now: int) -> list[Verified]:
    out = []
    for raw in sdb.raw_by_kind(kinds):
        try:
            v = trust.verify(raw, now, allow_revoked=True)
        except VerifyError:
            continue
        if v.revoked is None:
            out.append(v)
    return out


def counted_results(
    sdb: StoreDB, trust: TrustStore, prefix: str, election: str, now: int
) -> dict[bytes, Numbers]:
    """The results the counting rule counts for ``prefix`` and ``election``, from this store."""
    held = [
        (v.id, v.envelope.body, v.signer.key_id) for v in _verified(sdb, trust, ["result"], now)
    ]
    results = [h for h in held if isinstance(h[1], ResultBody)]
    out: dict[bytes, Numbers] = {}
    by_id = {rid: body for rid, body, _ in results}
    slots: dict[str, list[tuple[bytes, int]]] = {}
    for rid, body, _ in results:
        assert isinstance(body, ResultBody)
        if body.form.election == election and body.form.tps.startswith(prefix):
            slots.setdefault(body.form.tps, []).append((rid, body.form.revision))
    for pairs in slots.values():
        for rid, status in resolve_slot(pairs).items():
            if status == "accepted":
                f = by_id[rid].form  # type: ignore[union-attr]
                out[rid] = Numbers(f.tps, f.election, f.votes, f.valid, f.invalid)
    return out


def standing_corrections(
    sdb: StoreDB, trust: TrustStore, now: int
) -> dict[bytes, tuple[bytes, CorrectionBody]]:
    items = [
        (v.id, v.envelope.created, v.envelope.body)
        for v in _verified(sdb, trust, ["correction"], now)
        if isinstance(v.envelope.body, CorrectionBody)
    ]
    return latest_corrections(items)


def sign_dhasil(
    store: Store, key: SigningKey, root: bytes, election: str, now: int, *,
    trust: TrustStore | None = None,
) -> Envelope:  # fmt: skip
    """The PPK signs the D.Hasil of its kecamatan for ``election`` from the results it holds
    (the counting rule) and the standing corrections."""
    sdb = store.sync_db()
    trust = _trust(sdb, root, now, trust)
    cert = _own_certificate(sdb, key)
    if cert.role != "ppk" or len(cert.scope) != 1 or len(cert.scope[0]) != 6:
        raise RelayError("only a PPK (enrolled for one kecamatan) signs the D.Hasil")
    kec = cert.scope[0]
    manifest = trust.manifest
    e = manifest.election(election) if manifest else None
    if e is None:
        raise RelayError(f"no {election} election in the manifest held here")
    results = counted_results(sdb, trust, kec, election, now)
    body = make_dhasil(kec, election, [str(n) for n in e.ballot_numbers], results,
                       standing_corrections(sdb, trust, now))  # fmt: skip
    return _sign_store(store, key, root, "dhasil", body, [], now, trust)


# --- the plenary's per-TPS view ----------------------------------------------------------------


def trail_view(sdb: StoreDB, trust: TrustStore, prefix: str, now: int) -> dict[str, Any]:
    """Per TPS in ``prefix``: results with numbers, photos, endorsements, objections and
    corrections, marked ``ready`` / ``in-dispute`` / ``conflict``; and the D.Hasil held."""
    manifest = trust.manifest
    if manifest is None:
        return {"tps": [], "dhasil": []}
    have = {bytes(r[0]) for r in sdb.db.execute("SELECT sha256 FROM blobs")}
    found = _verified(
        sdb, trust, ["result", "endorsement", "objection", "correction", "dhasil"], now
    )
    standing = {cid for cid, _b in standing_corrections(sdb, trust, now).values()}
    by_tps: dict[str, dict[str, Any]] = {}
    for v in found:
        tps = v.envelope.tps
        if v.kind == "dhasil" or not tps.startswith(prefix):
            continue
        slot = by_tps.setdefault(tps, {"tps": tps, "results": [], "objections": [],
                                       "corrections": [], "endorsements": []})  # fmt: skip
        slot[v.kind + "s"].append(_item(v, have, standing))
    out = []
    for tps, slot in sorted(by_tps.items()):
        objected = {o["result"] for o in slot["objections"]} | {
            e["result"] for e in slot["endorsements"] if e["statement"] == "object"}  # fmt: skip
        corrected = {c["result"] for c in slot["corrections"]}
        disputed = objected - corrected
        slot["state"] = "in-dispute" if disputed else "ready" if slot["results"] else "missing"
        slot["name"] = manifest.region_name(tps[:10])
        out.append(slot)
    dhasil = [_item(v, have, standing) for v in found if v.kind == "dhasil"
              and v.envelope.body.kecamatan.startswith(prefix[:6])]  # type: ignore[union-attr]  # fmt: skip
    return {"tps": out, "dhasil": dhasil}


def _photos(refs: Iterable[PhotoRef], have: set[bytes]) -> list[dict[str, Any]]:
    return [{"sheet": p.sheet, "sha256": p.sha256.hex(), "present": p.sha256 in have}
            for p in refs]  # fmt: skip


def _item(v: Verified, have: set[bytes], standing: set[bytes]) -> dict[str, Any]:
    b = v.envelope.body
    item: dict[str, Any] = {"id": v.id.hex(), "signer": v.signer.key_id.hex(),
                            "role": v.signer.role, "created": v.envelope.created,
                            "election": v.envelope.election}  # fmt: skip
    if isinstance(b, ResultBody):
        f = b.form
        item.update(revision=f.revision, votes=dict(f.votes), valid=f.valid, invalid=f.invalid,
                    warnings=list(b.warnings), photos=_photos(b.photos, have))  # fmt: skip
    elif isinstance(b, EndorsementBody):
        item.update(result=b.result.hex(), statement=b.statement)
    elif isinstance(b, ObjectionBody):
        item.update(result=b.result.hex(), reason=b.reason, photos=_photos(b.photos, have))
    elif isinstance(b, CorrectionBody):
        item.update(result=b.result.hex(), reason=b.reason, votes=dict(b.form.votes),
                    valid=b.form.valid, invalid=b.form.invalid, standing=v.id in standing,
                    photos=_photos(b.photos, have))  # fmt: skip
    elif isinstance(b, DHasilBody):
        item.update(kecamatan=b.kecamatan, votes=dict(b.votes), valid=b.valid, invalid=b.invalid,
                    results=len(b.results), corrections=len(b.corrections))  # fmt: skip
    return item
