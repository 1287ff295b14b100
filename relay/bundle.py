"""Sneakernet bundles: undelivered objects and their photos as plain files on a USB stick.

Layout of ``<dir>/estafet-bundle/``::

    objects/<id>.obj     one signed envelope per file, exactly the bytes that travel
    blobs/<sha256>       photo blobs
    INDEX.json           what is inside (for people; import trusts only the files' contents)

Import verifies every object (signature, chain, role, scope, rules) and every blob (its hash and
that a held result names it) before storing anything; what it refuses is reported with why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from estafet.crypto.trust import TrustStore

from .accept import accept_batch, load_trust
from .errors import RelayError, StoreFull
from .store import Store, StoreDB

BUNDLE = "estafet-bundle"
MAX_FILE = 32 * 1024 * 1024
Progress = Callable[[int], None]


@dataclass
class ImportReport:
    stored: int = 0
    duplicate: int = 0
    blobs: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _export_ids(sdb: StoreDB) -> list[bytes]:
    rows = sdb.db.execute(
        "SELECT id FROM objects WHERE state = 'pending' OR kind IN"
        " ('certificate', 'manifest', 'revocation', 'receipt') ORDER BY created"
    )
    return [bytes(r[0]) for r in rows]


def export_bundle(store: Store, to: Path, progress: Progress | None = None) -> tuple[int, int]:
    """Write undelivered objects, trust objects, receipts and pending photos. Returns counts."""
    sdb = store.sync_db()
    base = to / BUNDLE
    (base / "objects").mkdir(parents=True, exist_ok=True)
    (base / "blobs").mkdir(exist_ok=True)
    ids = _export_ids(sdb)
    index: dict[str, list[str]] = {"objects": [], "blobs": []}
    for oid, raw in zip(ids, sdb.get_raw(ids), strict=True):
        _write(base / "objects" / f"{oid.hex()}.obj", raw)
        index["objects"].append(oid.hex())
        if progress:
            progress(1)
    rows = sdb.db.execute(
        "SELECT DISTINCT p.sha256 FROM photos p JOIN objects o ON o.id = p.result"
        " JOIN blobs b ON b.sha256 = p.sha256 WHERE o.state = 'pending'"
    ).fetchall()
    for (raw_sha,) in rows:
        sha = bytes(raw_sha)
        _write(base / "blobs" / sha.hex(), store.blobs.path(sha).read_bytes())
        index["blobs"].append(sha.hex())
        if progress:
            progress(1)
    _write(base / "INDEX.json", json.dumps(index, indent=1).encode())
    return len(index["objects"]), len(index["blobs"])


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def bundle_size(src: Path) -> int:
    base = src / BUNDLE
    if not base.is_dir():
        raise RelayError(f"{src} holds no {BUNDLE}/ folder")
    return len(list((base / "objects").glob("*.obj"))) + len(list((base / "blobs").iterdir()))


def import_bundle(
    store: Store,
    trust: TrustStore,
    src: Path,
    scope: str,
    now: int,
    progress: Progress | None = None,
) -> ImportReport:
    base = src / BUNDLE
    if not (base / "objects").is_dir():
        raise RelayError(f"{src} holds no {BUNDLE}/objects folder")
    sdb = store.sync_db()
    load_trust(sdb, trust, now)
    report = ImportReport()
    raws, names = [], []
    for f in sorted((base / "objects").glob("*.obj")):
        if f.stat().st_size > MAX_FILE:
            report.rejected.append((f.name, "file too large"))
            continue
        raws.append(f.read_bytes())
        names.append(f.name)
    outcomes = accept_batch(
        sdb, trust, raws, peer="bundle:" + str(src)[:40], origin="relayed", scope=scope, now=now
    )
    for name, o in zip(names, outcomes, strict=True):
        if o.status == "stored":
            report.stored += 1
        elif o.status == "duplicate":
            report.duplicate += 1
        else:
            report.rejected.append((name, f"{o.status}: {o.reason}"))
        if progress:
            progress(1)
    blob_dir = base / "blobs"
    for f in sorted(blob_dir.iterdir()) if blob_dir.is_dir() else []:
        _import_blob(store, sdb, f, now, report)
        if progress:
            progress(1)
    return report


def _import_blob(store: Store, sdb: StoreDB, f: Path, now: int, report: ImportReport) -> None:
    try:
        sha = bytes.fromhex(f.name)
    except ValueError:
        report.rejected.append((f.name, "not a blob name"))
        return
    ref = sdb.photo(sha)
    if ref is None:
        report.rejected.append((f.name, "no held result names this photo"))
        return
    if sdb.has_blob(sha):
        return
    data = f.read_bytes() if f.stat().st_size <= MAX_FILE else b""
    if hashlib.sha256(data).digest() != sha or len(data) != ref[0]:
        report.rejected.append((f.name, "photo bytes do not match their hash"))
        return
    try:
        sdb.make_room(len(data))
    except StoreFull as exc:
        report.rejected.append((f.name, str(exc)))
        return
    store.blobs.write_whole(sha, data)
    sdb.add_blob(sha, len(data), now)
    report.blobs += 1
