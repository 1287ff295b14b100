"""Test kit: a small KPU PKI, the Kotabaru manifest, and signed results, built in memory.

Used by tests at every layer so they share one realistic world. Deterministic when given seeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estafet.central.manifest_file import load_manifest_file
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import certify, seal
from estafet.crypto.trust import TrustStore
from estafet.demo.forms import example_form
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import (
    EndorsementBody,
    Envelope,
    ManifestBody,
    ResultBody,
    RevocationBody,
    RevokedEntry,
)
from estafet.protocol.photos import PhotoRef
from estafet.protocol.trail import AdmissionBody, CorrectionBody, ObjectionBody

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kotabaru"
_PACKAGED = Path(__file__).resolve().parents[1] / "demo" / "data" / "kotabaru"
# the shared fixtures beside the checkout; the copy shipped with the package (for the demo) if
# this checkout stands alone
FIXTURES = _SHARED if (_SHARED / "elections.toml").exists() else _PACKAGED
NOW = 1_732_665_600  # 2024-11-27 00:00 UTC, Pilkada day
DAY = 86_400
TPS_A = "6302142001001"  # Hampang, a no-signal kecamatan
TPS_B = "6302142001002"


def kotabaru_manifest(version: int = 1) -> Manifest:
    return load_manifest_file(FIXTURES / "elections.toml", version)


def seeded_key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"estafet-test/" + label.encode()).digest())


def photo_bytes(tag: str, size: int = 2000, kind: str = "jpeg") -> bytes:
    head = b"\xff\xd8\xff\xe0" if kind == "jpeg" else b"\x89PNG\r\n\x1a\n"
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + body)[:size]


def photo_files(tmp: Path, tag: str, size: int = 2000) -> list[Path]:
    """Three photo files ``<tag>-1.jpg`` .. ``<tag>-3.jpg`` in ``tmp`` (for submit_result)."""
    out = []
    for i in (1, 2, 3):
        p = tmp / f"{tag}-{i}.jpg"
        p.write_bytes(photo_bytes(f"{tag}-{i}", size))
        out.append(p)
    return out


def photo_refs(photos: list[bytes]) -> tuple[PhotoRef, ...]:
    out = []
    for i, data in enumerate(photos, 1):
        kind = "png" if data.startswith(b"\x89PNG") else "jpeg"
        out.append(PhotoRef(i, hashlib.sha256(data).digest(), len(data), kind))
    return tuple(out)


def form_json(election: str = "bupati", tps: str = TPS_A, **over: Any) -> dict[str, Any]:
    """A valid form (see :func:`estafet.demo.forms.example_form`)."""
    return example_form(election, tps, **over)


@dataclass
class World:
    """Root, issuer, manifest and a factory for enrolled officers."""

    root: SigningKey = field(default_factory=lambda: seeded_key("root"))
    issuer: SigningKey = field(default_factory=lambda: seeded_key("issuer"))
    manifest: Manifest = field(default_factory=kotabaru_manifest)
    now: int = NOW
    serial: int = 1
    issuer_cert: Envelope = field(init=False)
    manifest_env: Envelope = field(init=False)

    def __post_init__(self) -> None:
        self.issuer_cert = certify(
            self.root,
            subject=self.issuer.public,
            role="issuer",
            scope=("6302",),
            elections=("gubernur", "bupati"),
            serial=self.next_serial(),
            not_before=self.now - 30 * DAY,
            not_after=self.now + 365 * DAY,
            label="central issuer",
        )
        self.manifest_env = seal("manifest", ManifestBody(self.manifest), self.root, self.now - DAY)

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def trust(self) -> TrustStore:
        ts = TrustStore(self.root.public)
        ts.learn(ts.verify(self.issuer_cert, self.now))
        ts.learn(ts.verify(self.manifest_env, self.now))
        return ts

    def officer(
        self,
        label: str,
        role: str = "kpps-chair",
        scope: tuple[str, ...] = (TPS_A,),
        elections: tuple[str, ...] = ("gubernur", "bupati"),
        not_before: int | None = None,
        not_after: int | None = None,
    ) -> tuple[SigningKey, Envelope]:
        key = seeded_key(label)
        cert = certify(
            self.issuer,
            subject=key.public,
            role=role,
            scope=scope,
            elections=elections,
            serial=self.next_serial(),
            not_before=self.now - DAY if not_before is None else not_before,
            not_after=self.now + 14 * DAY if not_after is None else not_after,
            label=label,
        )
        return key, cert

    def chain(self, cert: Envelope) -> tuple[bytes, ...]:
        return (cert.encode(), self.issuer_cert.encode())

    def result(
        self,
        key: SigningKey,
        cert: Envelope,
        photos: list[bytes] | None = None,
        created: int | None = None,
        **form_over: Any,
    ) -> tuple[Envelope, list[bytes]]:
        form = parse_form(form_json(**form_over))
        photos = photos or [photo_bytes(f"{form.tps}-{form.election}-{i}") for i in (1, 2, 3)]
        _, warn = check_form(form, self.manifest)
        body = ResultBody(form, photo_refs(photos), tuple(sorted(w.rule for w in warn)))
        env = seal("result", body, key, created or self.now, chain=self.chain(cert))
        return env, photos

    def endorse(self, key: SigningKey, cert: Envelope, result: Envelope) -> Envelope:
        body = EndorsementBody(result.id, result.tps, result.election, "agree")
        return seal("endorsement", body, key, self.now + 60, chain=self.chain(cert))

    def admit(
        self,
        chair: SigningKey,
        chair_cert: Envelope,
        subject: SigningKey,
        *,
        role: str = "witness",
        tps: str = TPS_A,
        elections: tuple[str, ...] = ("bupati",),
        pair: int = 1,
        seat: int = 1,
        created: int | None = None,
        span: int = 24 * 3600,
        mandate: tuple[PhotoRef, ...] = (),
    ) -> Envelope:
        """The chair admits ``subject`` at the TPS for the day starting at ``self.now``."""
        body = AdmissionBody(
            subject.public, role, tps, elections, pair, seat, self.now, self.now + span,
            f"{role} pair {pair} seat {seat}", mandate,
        )  # fmt: skip
        when = self.now + 3600 if created is None else created
        return seal("admission", body, chair, when, chain=self.chain(chair_cert))

    def admitted_chain(self, admission: Envelope, chair_cert: Envelope) -> tuple[bytes, ...]:
        return (admission.encode(), chair_cert.encode(), self.issuer_cert.encode())

    def object_to(
        self,
        key: SigningKey,
        chain: tuple[bytes, ...],
        result: Envelope,
        reason: str = "saksi paslon 1: suara tidak sah dihitung sah",
        photos: tuple[PhotoRef, ...] = (),
        created: int | None = None,
    ) -> Envelope:
        body = ObjectionBody(result.id, result.tps, result.election, reason, photos)
        return seal("objection", body, key, created or self.now + 120, chain=chain)

    def correct(
        self,
        ppk: SigningKey,
        ppk_cert: Envelope,
        result: Envelope,
        created: int | None = None,
        reason: str = "hitung ulang di pleno PPK",
        photos: tuple[PhotoRef, ...] = (),
        **form_over: Any,
    ) -> Envelope:
        assert isinstance(result.body, ResultBody)
        base = result.body.form.to_json()
        base.update(revision=0, supersedes=None, **form_over)
        body = CorrectionBody(result.id, parse_form(base), reason, photos)
        return seal("correction", body, ppk, created or self.now + DAY, chain=self.chain(ppk_cert))

    def revocation(self, version: int, *entries: RevokedEntry) -> Envelope:
        return seal("revocation", RevocationBody(version, entries), self.root, self.now)


def damage_table(db: Path, table: str) -> None:
    """Overwrite the root pages of ``table`` (and its indexes) in SQLite file ``db`` with junk:
    the schema still opens, reading the table fails with "database disk image is malformed"."""
    import sqlite3

    probe = sqlite3.connect(db)
    try:
        sql = "SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 1"
        roots = [r for (r,) in probe.execute(sql, (table,))]
        page = probe.execute("PRAGMA page_size").fetchone()[0]
    finally:
        probe.close()
    data = bytearray(db.read_bytes())
    for root in roots:
        data[(root - 1) * page : root * page] = b"\xa5" * page
    db.write_bytes(bytes(data))
