"""The node's durable store: signed objects, photo blobs, receipts, peers, in SQLite + files.

Theory of operation
-------------------
:class:`StoreDB` holds all SQL and runs on one connection; :class:`Store` is the asyncio facade:
every write runs on a single writer thread (one writer, in the order asked), reads run on a small
pool of reader threads with their own connections (WAL lets them proceed during writes), so the
event loop never waits on SQLite. Photo file work (appends, fsyncs, renames) runs on one more
thread of its own (:meth:`Store.blob_io`), so a photo's fsync never waits behind a commit.

Invariants:

* Only verified objects are stored (:meth:`StoreDB.put` takes a ``Verified``, which only
  :mod:`estafet.crypto.trust` can make). Storing the same object twice is a no-op.
* A blob row exists only after its file was fsynced, hash-checked and renamed into place
  (:mod:`.blobs`); a crash between rename and commit leaves an orphan file that :meth:`Store.open`
  adopts or deletes.
* Eviction under quota removes only photo blobs of results that hold a verified receipt and were
  not made on this device. Objects themselves are never evicted.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from estafet.crypto.errors import COPY_DEPENDENT
from estafet.crypto.trust import Verified
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import (
    CertificateBody,
    EndorsementBody,
    ReceiptBody,
    ResultBody,
    VoidBody,
    decode_envelope,
)
from estafet.protocol.trail import (
    AdmissionBody,
    CorrectionBody,
    DHasilBody,
    ObjectionBody,
    object_photos,
)

from .blobs import BlobDir
from .errors import StoreError, StoreFull
from .schema import LATEST, MIGRATIONS

T = TypeVar("T")
DEFAULT_QUOTA = 1024 * 1024 * 1024  # 1 GiB: a whole kecamatan of photos with room to spare
DISK_RESERVE = 4 * 1024 * 1024
"""Disk space photos never take, whatever the quota: on a full disk the database (and its
write-ahead log) must still take small objects (results, receipts) while photos wait."""
DELIVERY_KINDS = ("result", "endorsement", "admission", "objection", "correction", "dhasil")
PHOTOS_NEEDED = "(o.state IS NOT 'rejected' AND o.photos_complete = 0)"
"""SQL over ``objects o``: this result's photos must still travel towards the centre (no
receipt from the central server says they all arrived there)."""
STATE_FOR_STATUS = {
    "accepted": "delivered",
    "superseded": "delivered",
    "conflict": "conflict",
    "rejected": "rejected",
    "voided": "rejected",  # the KPU voided it: never counted (kept at the centre as evidence)
    "held": "delivered",  # the centre holds it until the result it supersedes arrives
}


def object_region(v: Verified) -> str:
    """The region an object belongs to, for scoping sync sessions ('' = everywhere)."""
    body = v.envelope.body
    if isinstance(body, ResultBody | EndorsementBody | ReceiptBody | VoidBody):
        return v.envelope.tps
    if isinstance(body, DHasilBody):
        return body.kecamatan
    if v.envelope.tps:  # admissions, objections, corrections
        return v.envelope.tps
    if isinstance(body, CertificateBody) and body.role != "issuer" and body.scope:
        return body.scope[0]
    return ""


def receipt_refusal(v: Verified) -> str:
    """Why a verified receipt must not be kept or travel ('' when it may), issue 11 item 1: a
    receipt naming no kind or no TPS would belong to every region and reconcile to every phone,
    and a ``rejected`` receipt whose reason is a fault of one copy (``COPY_DEPENDENT``, as an
    older central signed them) must never mark a result whose own copy here verified."""
    body = v.envelope.body
    if not isinstance(body, ReceiptBody):
        return ""
    if not body.object_kind or not body.tps:
        return "a receipt naming no kind or TPS stays at the centre"
    if body.status == "rejected" and body.reason.split(":", 1)[0] in COPY_DEPENDENT:
        return f"a rejection of one copy ({body.reason[:40]}) says nothing of the object"
    return ""


def in_scope(region: str, scope: str) -> bool:
    """Objects on the path between a scope and the root travel: a TPS phone (scope = its TPS)
    gets global objects and its own, a kabupaten gateway gets everything below it."""
    return region.startswith(scope) or scope.startswith(region)


def session_scope(a: str, b: str) -> str | None:
    """The scope of a sync session between nodes serving ``a`` and ``b`` (None: disjoint)."""
    if a.startswith(b):
        return a
    if b.startswith(a):
        return b
    return None


def receipt_summary(raw: bytes | None) -> dict[str, Any] | None:
    """A receipt as people and JSON readers see it (None for none, or unreadable bytes)."""
    if raw is None:
        return None
    try:
        env = decode_envelope(raw)
    except ProtocolError:
        return None
    body = env.body
    if not isinstance(body, ReceiptBody):
        return None
    return {
        "id": env.id.hex(),
        "status": body.status,
        "reason": body.reason,
        "photos_complete": body.photos_complete,
        "log_index": body.log_index,
        "log_hash": body.log_hash.hex(),
        "server_time": env.created,
    }


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of storing one object."""

    new: bool
    id: bytes


def _connect(path: Path) -> sqlite_utils.Database:
    import sqlite3

    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def migrate(db: sqlite_utils.Database, now: int, upto: int = LATEST) -> int:
    """Bring the schema to version ``upto``; each step commits with its own record."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied INTEGER)"
    )
    done = {r[0] for r in db.execute("SELECT version FROM migrations").fetchall()}
    for version, sql in MIGRATIONS:
        if version in done or version > upto:
            continue
        with db.atomic():
            for stmt in sql.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT INTO migrations VALUES (?, ?)", [version, now])
    row = db.execute("SELECT max(version) FROM migrations").fetchone()
    return int(row[0] or 0)


class StoreDB:
    """All of the store's SQL, on one connection. Blocking; see :class:`Store`."""

    def __init__(self, db: sqlite_utils.Database, blobs: BlobDir, quota: int) -> None:
        self.db = db
        self.blobs = blobs
        self.quota = quota
        self.version = 0  # bumped on every object or blob stored (the recap caches by it)

    # --- objects --------------------------------------------------------------------
    def put(self, v: Verified, origin: str, peer: str | None, now: int) -> Stored:
        env = v.envelope
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM objects WHERE id = ?", [env.id]).fetchone():
                if peer:
                    self._holder(env.id, peer)
                return Stored(False, env.id)
            raw = env.encode()
            state = "pending" if env.kind in DELIVERY_KINDS else None
            self.db.execute(
                "INSERT INTO objects (id, kind, region, tps, election, created, raw, size, origin,"
                " received, state, revoked) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    env.id,
                    env.kind,
                    object_region(v),
                    env.tps,
                    env.election,
                    env.created,
                    raw,
                    len(raw),
                    origin,
                    now,
                    state,
                    int(v.revoked is not None),
                ],
            )
            if peer:
                self._holder(env.id, peer)
            body = env.body
            if isinstance(body, ResultBody | AdmissionBody | ObjectionBody | CorrectionBody):
                photos = body.photos if isinstance(body, ResultBody) else object_photos(body)
                for p in photos:
                    self.db.execute(
                        "INSERT OR IGNORE INTO photos VALUES (?,?,?,?)",
                        [env.id, p.sheet, p.sha256, p.size],
                    )
            if isinstance(body, ReceiptBody):
                self.db.execute(
                    "INSERT OR IGNORE INTO receipts VALUES (?,?,?,?,?,?)",
                    [
                        body.object,
                        env.id,
                        body.log_index,
                        body.status,
                        body.reason,
                        int(body.photos_complete),
                    ],
                )
                self._apply_receipts(body.object)
            elif state is not None:
                self._apply_receipts(env.id)
        self.version += 1
        return Stored(True, env.id)

    def _holder(self, object_id: bytes, peer: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO holders VALUES (?, ?)", [object_id, peer])

    def _apply_receipts(self, object_id: bytes) -> None:
        row = self.db.execute(
            "SELECT receipt, log_index, status, reason, photos_complete FROM receipts"
            " WHERE object = ? ORDER BY log_index DESC LIMIT 1",
            [object_id],
        ).fetchone()
        if row is None:
            return
        receipt, index, status, reason, photos = row
        self.db.execute(
            "UPDATE objects SET state = ?, reason = ?, receipt = ?, receipt_index = ?,"
            " photos_complete = ? WHERE id = ? AND state IS NOT NULL"
            " AND (receipt_index IS NULL OR receipt_index <= ?)",
            [STATE_FOR_STATUS[status], reason, receipt, index, photos, object_id, index],
        )

    def has(self, ids: Iterable[bytes]) -> set[bytes]:
        ids = list(ids)
        out: set[bytes] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = ",".join("?" * len(chunk))
            out.update(
                r[0] for r in self.db.execute(f"SELECT id FROM objects WHERE id IN ({q})", chunk)
            )
        return out

    def get_raw(self, ids: Iterable[bytes]) -> list[bytes]:
        out = []
        for i in ids:
            row = self.db.execute("SELECT raw FROM objects WHERE id = ?", [i]).fetchone()
            if row:
                out.append(bytes(row[0]))
        return out

    def raw_by_kind(self, kinds: Iterable[str]) -> list[bytes]:
        kinds = list(kinds)
        q = ",".join("?" * len(kinds))
        rows = self.db.execute(
            f"SELECT raw FROM objects WHERE kind IN ({q}) ORDER BY created",
            kinds,
        )
        return [bytes(r[0]) for r in rows]

    def items(self, scope: str) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT created, id FROM objects WHERE region LIKE ? || '%' OR ? LIKE region || '%'"
            " ORDER BY created, id",
            [scope, scope],
        )
        return [(int(c), bytes(i)) for c, i in rows]

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, kind, tps, election, created, origin, state, reason, receipt, revoked,"
            " photos_complete FROM objects"
        )
        args: list[Any] = []
        if kind:
            sql += " WHERE kind = ?"
            args.append(kind)
        cur = self.db.execute(sql + " ORDER BY created, id", args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def receipt_raw(self, object_id: bytes) -> bytes | None:
        row = self.db.execute(
            "SELECT o.raw FROM receipts r JOIN objects o ON o.id = r.receipt WHERE r.object = ?"
            " ORDER BY r.log_index DESC LIMIT 1",
            [object_id],
        ).fetchone()
        return bytes(row[0]) if row else None

    def with_state(self, ids: Iterable[bytes], state: str) -> set[bytes]:
        """Those of ``ids`` whose delivery state is ``state``."""
        out: set[bytes] = set()
        for i in ids:
            row = self.db.execute("SELECT state FROM objects WHERE id = ?", [i]).fetchone()
            if row and row[0] == state:
                out.add(i)
        return out

    def pending_ids(self) -> list[bytes]:
        rows = self.db.execute("SELECT id FROM objects WHERE state = 'pending' ORDER BY created")
        return [bytes(r[0]) for r in rows]

    def mark_pushed(self, ids: Iterable[bytes], now: int) -> None:
        with self.db.atomic():
            for i in ids:
                self.db.execute("UPDATE objects SET last_push = ? WHERE id = ?", [now, i])

    def add_holders(self, ids: Iterable[bytes], peer: str) -> None:
        with self.db.atomic():
            for i in ids:
                if self.db.execute("SELECT 1 FROM objects WHERE id = ?", [i]).fetchone():
                    self._holder(i, peer)

    # --- photos and blobs -------------------------------------------------------------
    def photo(self, sha256: bytes, central: bool = False) -> tuple[int, bool] | None:
        """(size, wanted) for a blob a held result names, else None. A photo is wanted until
        the central server's receipt says its result's photos are complete (the central
        server itself wants every photo of every result it holds)."""
        row = self.db.execute(
            f"SELECT p.size, max({'1' if central else PHOTOS_NEEDED})"
            " FROM photos p JOIN objects o ON o.id = p.result WHERE p.sha256 = ?",
            [sha256],
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), bool(row[1])

    def has_blob(self, sha256: bytes) -> bool:
        return (
            self.db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", [sha256]).fetchone() is not None
        )

    def offer_photos(self, limit: int = 1024) -> list[bytes]:
        """Blobs we hold whose results still need their photos carried to the centre."""
        rows = self.db.execute(
            "SELECT DISTINCT p.sha256 FROM photos p JOIN objects o ON o.id = p.result"
            f" JOIN blobs b ON b.sha256 = p.sha256 WHERE {PHOTOS_NEEDED} LIMIT ?",
            [limit],
        )
        return [bytes(r[0]) for r in rows]

    def missing_photos(self, limit: int = 100) -> list[tuple[bytes, int]]:
        """Photos still needed (see ``photo``) that we do not hold, oldest result first."""
        rows = self.db.execute(
            "SELECT DISTINCT p.sha256, p.size FROM photos p JOIN objects o ON o.id = p.result"
            f" WHERE {PHOTOS_NEEDED} AND p.sha256 NOT IN (SELECT sha256 FROM blobs)"
            " ORDER BY o.created LIMIT ?",
            [limit],
        )
        return [(bytes(s), int(n)) for s, n in rows]

    def photos_of(self, result_id: bytes) -> list[tuple[int, bytes, int, bool]]:
        rows = self.db.execute(
            "SELECT p.sheet, p.sha256, p.size, b.sha256 IS NOT NULL FROM photos p"
            " LEFT JOIN blobs b ON b.sha256 = p.sha256 WHERE p.result = ? ORDER BY p.sheet",
            [result_id],
        )
        return [(int(a), bytes(b), int(c), bool(d)) for a, b, c, d in rows]

    def add_blob(self, sha256: bytes, size: int, now: int) -> None:
        self.add_blobs([(sha256, size)], now)

    def add_blobs(self, blobs: Iterable[tuple[bytes, int]], now: int) -> None:
        """Rows for blobs whose files are in place (fsynced, hash-checked, renamed): one
        transaction, one fsync, for a group of arrivals."""
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)",
                [(sha, size, now) for sha, size in blobs],
            )
        self.version += 1

    def usage(self) -> int:
        objs = self.db.execute("SELECT coalesce(sum(size), 0) FROM objects").fetchone()[0]
        blobs = self.db.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0]
        return int(objs) + int(blobs)

    def make_room(self, size: int) -> None:
        """Evict receipted relayed photos until ``size`` more bytes fit, else raise StoreFull.
        Both limits count: the quota, and the disk itself less ``DISK_RESERVE``."""
        free = min(self.quota - self.usage(), self._disk_free())
        if free >= size:
            return
        rows = self.db.execute(
            "SELECT DISTINCT b.sha256, b.size FROM blobs b JOIN photos p ON p.sha256 = b.sha256"
            " JOIN objects o ON o.id = p.result"
            f" WHERE NOT {PHOTOS_NEEDED} AND o.origin != 'local'"
            " AND b.sha256 NOT IN (SELECT p2.sha256 FROM photos p2 JOIN objects o"
            f"   ON o.id = p2.result WHERE {PHOTOS_NEEDED} OR o.origin = 'local')"
            " ORDER BY b.stored"
        ).fetchall()
        for sha, n in rows:
            if free >= size:
                break
            with self.db.atomic():
                self.db.execute("DELETE FROM blobs WHERE sha256 = ?", [sha])
            self.blobs.delete(bytes(sha))
            free += int(n)
        if free < size:
            raise StoreFull(f"store full: {size} bytes wanted, {max(free, 0)} free of {self.quota}")

    def _disk_free(self) -> int:
        try:
            return shutil.disk_usage(self.blobs.root).free - DISK_RESERVE
        except OSError:
            return self.quota

    # --- peers and events -------------------------------------------------------------
    def upsert_peer(self, peer_id: str, addr: str, source: str, now: int, **info: Any) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO peers (id, addr, source, last_seen) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET addr = excluded.addr,"
                " last_seen = excluded.last_seen",
                [peer_id, addr, source, now],
            )
            for key in (
                "role",
                "scope",
                "central_ok",
                "last_ok",
                "failures",
                "backoff_until",
                "penalties",
                "last_error",
            ):
                if key in info:
                    self.db.execute(
                        f"UPDATE peers SET {key} = ? WHERE id = ?",
                        [info[key], peer_id],
                    )

    def peers(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM peers ORDER BY last_seen DESC")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def event(self, now: int, level: str, peer: str, reason: str, obj: bytes | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO events (at, level, peer, object, reason) VALUES (?,?,?,?,?)",
                [now, level, peer, obj, reason[:500]],
            )
            self.db.execute("DELETE FROM events WHERE seq <= (SELECT max(seq) - 5000 FROM events)")

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO meta VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "delivered": 0, "conflict": 0, "rejected": 0}
        for state, n in self.db.execute(
            "SELECT state, count(*) FROM objects WHERE state IS NOT NULL GROUP BY state"
        ):
            out[str(state)] = int(n)
        out["objects"] = int(self.db.execute("SELECT count(*) FROM objects").fetchone()[0])
        out["blobs"] = int(self.db.execute("SELECT count(*) FROM blobs").fetchone()[0])
        return out

    def check(self) -> list[str]:
        """Consistency problems (used by tests and ``node status --check``)."""
        problems = []
        row = self.db.execute("PRAGMA integrity_check").fetchone()
        if row[0] != "ok":
            problems.append(f"sqlite: {row[0]}")
        for (sha,) in self.db.execute("SELECT sha256 FROM blobs"):
            if not self.blobs.has(bytes(sha)):
                problems.append(f"blob row without file: {bytes(sha).hex()}")
        return problems


class Store:
    """Asyncio facade over :class:`StoreDB`: one writer thread, a pool of reader threads."""

    def __init__(self, path: Path, blob_dir: Path, quota: int = DEFAULT_QUOTA) -> None:
        self.path = path
        self.blobs = BlobDir(blob_dir)
        self.quota = quota
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-w")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="store-r")
        self._blob_thread = ThreadPoolExecutor(1, thread_name_prefix="store-blob")
        self._write_db = StoreDB(_connect(path), self.blobs, quota)
        self._all: list[sqlite_utils.Database] = [self._write_db.db]
        self._lock = threading.Lock()

    @classmethod
    def open(cls, home: Path, now: int, quota: int = DEFAULT_QUOTA) -> Store:
        """Open (creating or migrating) the store in ``home``; blocking, call at start-up."""
        home.mkdir(parents=True, exist_ok=True)
        store = cls(home / "store.db", home / "blobs", quota)
        db = store._write_db.db
        db.enable_wal()
        migrate(db, now)
        store._adopt_orphans(now)
        return store

    def _adopt_orphans(self, now: int) -> None:
        sdb = self._write_db
        known = {bytes(r[0]) for r in sdb.db.execute("SELECT sha256 FROM blobs")}
        for f in self.blobs.orphans(known):
            try:
                sha = bytes.fromhex(f.name)
            except ValueError:
                f.unlink(missing_ok=True)
                continue
            ref = sdb.photo(sha)
            if ref is None:
                f.unlink(missing_ok=True)
                continue
            f.rename(self.blobs.partial_path(sha))
            try:
                self.blobs.finish(sha, ref[0])
                sdb.add_blob(sha, ref[0], now)
            except StoreError:
                continue
        self._finish_partials(now)

    def _finish_partials(self, now: int) -> None:
        """A crash after a transfer's last byte but before its rename leaves a full-size partial
        file; resuming from its size would ask for nothing, so finish (or drop) it here."""
        sdb = self._write_db
        for part in list(self.blobs.partial_dir.iterdir()):
            try:
                sha = bytes.fromhex(part.name.removesuffix(".part"))
            except ValueError:
                part.unlink(missing_ok=True)
                continue
            ref = sdb.photo(sha)
            size = part.stat().st_size
            if ref is None or sdb.has_blob(sha) or size > ref[0]:
                part.unlink(missing_ok=True)
            elif size == ref[0]:
                try:
                    self.blobs.finish(sha, size)  # deletes the partial when it does not match
                    sdb.add_blob(sha, size, now)
                except StoreError:
                    continue

    def sync_db(self) -> StoreDB:
        """The writer-side StoreDB for blocking callers that own the store (CLI, tests)."""
        return self._write_db

    def _reader(self) -> StoreDB:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = _connect(self.path)
            with self._lock:
                self._all.append(conn)
            db = StoreDB(conn, self.blobs, self.quota)
            self._local.db = db
        return db

    async def write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(storedb, *args, **kw)`` on the writer thread."""
        return await self.write_future(fn, *args, **kw)

    def write_future(self, fn: Callable[..., T], *args: Any, **kw: Any) -> asyncio.Future[T]:
        """:meth:`write`, as a future that completes even when its awaiter is cancelled."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._writer, lambda: fn(self._write_db, *args, **kw))

    async def read(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(storedb, *args, **kw)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader(), *args, **kw))

    async def blob_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking blob file work, off the event loop, on the store's one blob thread: every
        photo file operation runs there, one at a time, in the order asked."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._blob_thread, lambda: fn(*args))

    def close(self) -> None:
        self._blob_thread.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._all:
                db.conn.close()
            self._all.clear()
