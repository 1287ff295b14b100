"""Sneakernet bundles: undelivered objects and their photos as plain files on a USB stick.

Layout of ``<dir>/estafet-bundle/``::

    objects/<id>.obj     one signed envelope per file, exactly the bytes that travel
    blobs/<sha256>       photo blobs
    INDEX.json           what is inside (for people; import trusts only the files' contents)

Import verifies every object (signature, chain, role, scope, rules) and every blob (its hash and
that a held result names it) before storing anything; what it refuses is reported with why.

The stick is hostile (issue 11, item 9). Export opens every folder with ``O_NOFOLLOW`` relative
to its parent's descriptor and writes each file to a fresh temporary name (``O_EXCL |
O_NOFOLLOW``) that is then renamed over the final name, so a symlink planted on the stick can
neither redirect a write (into ``~/.ssh`` or the node's own store) nor be followed. Import opens
every file with ``O_NOFOLLOW | O_NONBLOCK``, accepts only regular files, and reads at most the
size cap (a blob: exactly the size its result names), so ``/dev/zero``, FIFOs and oversize files
are refused with a reason instead of exhausting memory or hanging. Objects are verified in
batches, so memory stays bounded whatever the stick holds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from estafet.crypto.trust import TrustStore

from .accept import accept_batch, load_trust
from .errors import RelayError, StoreFull
from .store import Store, StoreDB

BUNDLE = "estafet-bundle"
MAX_FILE = 32 * 1024 * 1024
IMPORT_BATCH = 64
_DIR = os.O_RDONLY | os.O_DIRECTORY
_NOFOLLOW_DIR = _DIR | os.O_NOFOLLOW
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
    to.mkdir(parents=True, exist_ok=True)
    fds = [os.open(str(to), _DIR)]  # the mount point the officer named may be a symlink
    try:
        base = _open_dir(fds[0], BUNDLE)
        fds.append(base)
        objects = _open_dir(base, "objects")
        fds.append(objects)
        blobs = _open_dir(base, "blobs")
        fds.append(blobs)
        index: dict[str, list[str]] = {"objects": [], "blobs": []}
        ids = _export_ids(sdb)
        for oid, raw in zip(ids, sdb.get_raw(ids), strict=True):
            _write(objects, f"{oid.hex()}.obj", raw)
            index["objects"].append(oid.hex())
            if progress:
                progress(1)
        rows = sdb.db.execute(
            "SELECT DISTINCT p.sha256 FROM photos p JOIN objects o ON o.id = p.result"
            " JOIN blobs b ON b.sha256 = p.sha256 WHERE o.state = 'pending'"
        ).fetchall()
        for (raw_sha,) in rows:
            sha = bytes(raw_sha)
            _write(blobs, sha.hex(), store.blobs.path(sha).read_bytes())
            index["blobs"].append(sha.hex())
            if progress:
                progress(1)
        _write(base, "INDEX.json", json.dumps(index, indent=1).encode())
        for fd in fds[1:]:
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)
    return len(index["objects"]), len(index["blobs"])


def _open_dir(parent: int, name: str) -> int:
    """A descriptor of folder ``name`` inside ``parent`` (made if missing), never via a symlink."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
    try:
        return os.open(name, _NOFOLLOW_DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RelayError(
                f"{name} on the stick is a symlink or not a folder: refusing to write through it"
            ) from exc
        raise


def _write(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``name`` in ``dir_fd`` via a fresh temp file and rename: a symlink planted under
    either name is replaced, never followed."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _read_regular(dir_fd: int, name: str, cap: int) -> bytes | str:
    """The bytes of regular file ``name`` (at most ``cap``), or why it was refused."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink, not a regular file"
        return f"cannot open: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > cap:
            return f"file too large ({st.st_size} bytes, at most {cap})"
        chunks, left = [], cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= cap else f"file grew past {cap} bytes while read"
    finally:
        os.close(fd)


def _list(dir_fd: int, suffix: str = "") -> list[str]:
    return sorted(n for n in os.listdir(dir_fd) if n.endswith(suffix) and not n.startswith("."))


def bundle_size(src: Path) -> int:
    base = src / BUNDLE
    if not base.is_dir():
        raise RelayError(f"{src} holds no {BUNDLE}/ folder")
    blobs = base / "blobs"
    return len(list((base / "objects").glob("*.obj"))) + (
        len(list(blobs.iterdir())) if blobs.is_dir() else 0
    )


def import_bundle(
    store: Store,
    trust: TrustStore,
    src: Path,
    scope: str,
    now: int,
    progress: Progress | None = None,
) -> ImportReport:
    try:
        base = os.open(str(src / BUNDLE), _NOFOLLOW_DIR)
    except OSError as exc:
        raise RelayError(f"{src} holds no {BUNDLE}/ folder (or it is a symlink)") from exc
    try:
        try:
            objects = os.open("objects", _NOFOLLOW_DIR, dir_fd=base)
        except OSError as exc:
            raise RelayError(f"{src} holds no {BUNDLE}/objects folder") from exc
        try:
            sdb = store.sync_db()
            load_trust(sdb, trust, now)
            report = ImportReport()
            names = _list(objects, ".obj")
            peer = f"bundle:{str(src)[:40]}"
            for i in range(0, len(names), IMPORT_BATCH):  # bounded memory: a batch at a time
                got = _read_batch(objects, names[i : i + IMPORT_BATCH], report)
                _accept(sdb, trust, got, peer, scope, now, report, progress)
            # an object whose signer's certificate was in a later batch: once more, now known
            later = [n for n, why in report.rejected if "unknown-signer" in why][:IMPORT_BATCH]
            if later:
                report.rejected = [r for r in report.rejected if r[0] not in set(later)]
                _accept(sdb, trust, _read_batch(objects, later, report), peer, scope, now,
                        report, None)  # fmt: skip
        finally:
            os.close(objects)
        _import_blobs(store, sdb, base, now, report, progress)
        return report
    finally:
        os.close(base)


def _read_batch(dir_fd: int, batch: list[str], report: ImportReport) -> list[tuple[str, bytes]]:
    out = []
    for name in batch:
        got = _read_regular(dir_fd, name, MAX_FILE)
        if isinstance(got, str):
            report.rejected.append((name, got))
        else:
            out.append((name, got))
    return out


def _accept(
    sdb: StoreDB,
    trust: TrustStore,
    files: list[tuple[str, bytes]],
    peer: str,
    scope: str,
    now: int,
    report: ImportReport,
    progress: Progress | None,
) -> None:
    raws = [raw for _, raw in files]
    outcomes = accept_batch(sdb, trust, raws, peer=peer, origin="relayed", scope=scope, now=now)
    for (name, _), o in zip(files, outcomes, strict=True):
        if o.status == "stored":
            report.stored += 1
        elif o.status == "duplicate":
            report.duplicate += 1
        else:
            report.rejected.append((name, f"{o.status}: {o.reason}"))
        if progress:
            progress(1)


def _import_blobs(
    store: Store,
    sdb: StoreDB,
    base: int,
    now: int,
    report: ImportReport,
    progress: Progress | None,
) -> None:
    try:
        blobs = os.open("blobs", _NOFOLLOW_DIR, dir_fd=base)
    except OSError:
        return
    try:
        for name in _list(blobs):
            _import_blob(store, sdb, blobs, name, now, report)
            if progress:
                progress(1)
    finally:
        os.close(blobs)


def _import_blob(
    store: Store, sdb: StoreDB, dir_fd: int, name: str, now: int, report: ImportReport
) -> None:
    try:
        sha = bytes.fromhex(name)
    except ValueError:
        report.rejected.append((name, "not a blob name"))
        return
    ref = sdb.photo(sha)
    if ref is None:
        report.rejected.append((name, "no held result names this photo"))
        return
    if sdb.has_blob(sha):
        return
    data = _read_regular(dir_fd, name, min(ref[0], MAX_FILE))
    if isinstance(data, str):
        report.rejected.append((name, data))
        return
    if hashlib.sha256(data).digest() != sha or len(data) != ref[0]:
        report.rejected.append((name, "photo bytes do not match their hash"))
        return
    try:
        sdb.make_room(len(data))
    except StoreFull as exc:
        report.rejected.append((name, str(exc)))
        return
    store.blobs.write_whole(sha, data)
    sdb.add_blob(sha, len(data), now)
    report.blobs += 1
