"""Objects made on this device: an officer's signed result (with its photos) and endorsements.

:func:`submit_result` checks the form against the manifest the node holds and refuses to sign
when any hard rule fails (:class:`~estafet.protocol.errors.FormError` lists them by rule name).
Photos are sniffed (JPEG/PNG), size-checked, hashed and stored as blobs BEFORE the result row is
committed, so a stored result always has its photos on this device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import FormError, Violation
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.objects import (
    CertificateBody,
    EndorsementBody,
    Envelope,
    ResultBody,
    decode_envelope,
)
from estafet.protocol.photos import MAX_PHOTO_BYTES, PhotoRef, check_photos, sniff_type

from .accept import accept_one, load_trust
from .errors import ConfigError, RelayError
from .store import Store, StoreDB


@dataclass(frozen=True)
class Submitted:
    id: bytes
    warnings: list[Violation]
    envelope: Envelope


class Identity:
    """What a node knows about itself: its certificate and the issuer's, from the store.
    ``trust``: the running node's trust store (the phone app passes the one its node holds;
    it is touched only on the store's writer thread, where these functions run); without it
    (the CLI, no daemon) one is loaded from the store, about a quarter of the CPU of a phone's
    signature (bench figure 13b)."""

    def __init__(
        self, sdb: StoreDB, root_public: bytes, now: int, trust: TrustStore | None = None
    ) -> None:
        if trust is None:
            trust = TrustStore(root_public)
            load_trust(sdb, trust, now)
        self.trust = trust
        cert_hex = sdb.get_meta("certificate")
        if not cert_hex:
            raise ConfigError("this node is not enrolled yet: run `estafet node enroll`")
        raws = sdb.get_raw([bytes.fromhex(cert_hex)])
        self.cert = decode_envelope(raws[0])
        body = self.cert.body
        assert isinstance(body, CertificateBody)
        self.body = body
        issuer = [
            e
            for e in self.trust.certificates()
            if e.body is not None
            and isinstance(e.body, CertificateBody)
            and e.body.role == "issuer"
        ]
        self.chain = (self.cert.encode(), *(e.encode() for e in issuer[:1]))


def read_photo(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise RelayError(f"{path}: {size} bytes is over the 15 MB photo limit")
        return path.read_bytes()
    except OSError as exc:
        raise RelayError(f"{path}: {exc.strerror}") from exc


def submit_result(
    store: Store,
    key: SigningKey,
    root_public: bytes,
    form_data: Any,
    photos: list[Path],
    now: int,
    *,
    trust: TrustStore | None = None,
) -> Submitted:
    """Check, sign and store a result whose photos are files (``result submit``)."""
    datas = [read_photo(p) for p in photos]
    return submit_result_data(store, key, root_public, form_data, datas, now, trust=trust)


def submit_result_data(
    store: Store,
    key: SigningKey,
    root_public: bytes,
    form_data: Any,
    datas: list[bytes],
    now: int,
    *,
    trust: TrustStore | None = None,
) -> Submitted:
    """Check, sign and store a result whose photos are in memory (the phone app). Blocking:
    call it on the store's writer thread (``trust``: see :class:`Identity`)."""
    sdb = store.sync_db()
    ident = Identity(sdb, root_public, now, trust)
    if ident.trust.manifest is None:
        raise ConfigError("no election manifest held: enroll first")
    form = parse_form(form_data)

    def previous(oid: bytes) -> tuple[str, str, int] | None:
        raws = sdb.get_raw([oid])
        if not raws:
            return None
        body = decode_envelope(raws[0]).body
        if not isinstance(body, ResultBody):
            return None
        return body.form.tps, body.form.election, body.form.revision

    bad, warn = check_form(form, ident.trust.manifest, previous, require_previous=True)
    refs = []
    for i, data in enumerate(datas, 1):
        kind = sniff_type(data[:16]) or "unknown"
        refs.append(PhotoRef(i, hashlib.sha256(data).digest(), len(data), kind))
    bad += check_photos(refs)
    if not ident.body.covers(form.tps) or form.election not in ident.body.elections:
        bad.append(
            Violation("out-of-scope", f"this key may not sign for TPS {form.tps} {form.election}")
        )
    if ident.body.role != "kpps-chair":
        bad.append(Violation("wrong-role", f"a {ident.body.role} key cannot sign results"))
    if bad:
        raise FormError(bad)
    body = ResultBody(form, tuple(refs), tuple(sorted(w.rule for w in warn)))
    env = seal("result", body, key, now, chain=ident.chain)
    for ref, data in zip(refs, datas, strict=True):
        store.blobs.write_whole(ref.sha256, data)
        sdb.add_blob(ref.sha256, ref.size, now)
    out = accept_one(sdb, ident.trust, env.encode(), peer="", origin="local", scope="", now=now)
    if out.status not in ("stored", "duplicate"):
        raise RelayError(f"could not store the signed result: {out.reason}")
    return Submitted(env.id, warn, env)


def endorse(
    store: Store,
    key: SigningKey,
    root_public: bytes,
    result_id: bytes,
    now: int,
    statement: str = "agree",
    *,
    trust: TrustStore | None = None,
) -> Envelope:
    """Endorse (or object to) a held result. Blocking: the store's writer thread."""
    sdb = store.sync_db()
    ident = Identity(sdb, root_public, now, trust)
    raws = sdb.get_raw([result_id])
    if not raws:
        raise RelayError(f"no result {result_id.hex()} held here: sync with the KPPS chair first")
    result = decode_envelope(raws[0])
    if not isinstance(result.body, ResultBody):
        raise RelayError(f"{result_id.hex()} is a {result.kind}, not a result")
    body = EndorsementBody(result.id, result.tps, result.election, statement)
    env = seal("endorsement", body, key, now, chain=ident.chain)
    out = accept_one(sdb, ident.trust, env.encode(), peer="", origin="local", scope="", now=now)
    if out.status not in ("stored", "duplicate"):
        raise RelayError(f"endorsement refused: {out.reason}")
    return env
