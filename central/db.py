"""central.db: every SQL statement of the central server, behind one narrow class.

:class:`CentralDB` is the storage seam: the rest of ``central/`` speaks to it in domain
terms (objects, log entries, receipts, results, codes), so a PostgreSQL implementation could
replace it. SQLite specifics: WAL, ``synchronous=FULL`` (a receipt once handed out must survive
a power cut, or the hash-chained log would fork), STRICT tables, numbered migrations recorded in
the ``migrations`` table, each applied in its own transaction.

Transactions: the connection runs in autocommit mode and :meth:`CentralDB.write` opens
``BEGIN IMMEDIATE`` / ``COMMIT`` around one logical write, rolling back on any exception;
sqlite-utils calls inside it nest as savepoints (``db.atomic()``). Writes outside ``write()`` are
a bug (:meth:`_must_write` checks). ``lock`` serialises every use of the one connection, so
callers on different threads are safe; the web layer still runs all calls on one thread.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import DatabaseError

Row = dict[str, Any]


def _m1_schema(db: sqlite_utils.Database) -> None:
    t = db.table
    t("settings").create({"key": str, "value": bytes}, pk="key", not_null={"value"}, strict=True)
    t("counters").create({"name": str, "value": int}, pk="name", not_null={"value"}, strict=True)
    _m1_objects(db)
    _m1_enrollment(db)


def _m1_objects(db: sqlite_utils.Database) -> None:
    """Objects as received, the log, receipts, and the results/endorsements/blobs indexes."""
    t = db.table
    t("objects").create(
        {
            "id": bytes,
            "kind": str,
            "tps": str,
            "election": str,
            "size": int,
            "raw": bytes,
            "received": int,
            "verified": int,
            "status": str,
            "reason": str,
        },
        pk="id",
        not_null={
            "kind",
            "tps",
            "election",
            "size",
            "raw",
            "received",
            "verified",
            "status",
            "reason",
        },
        strict=True,
    )
    t("objects").create_index(["tps"])
    t("rejected_copies").create(
        {"raw_sha": bytes, "id": bytes, "raw": bytes, "received": int, "reason": str},
        pk="raw_sha",
        not_null={"id", "raw", "received", "reason"},
        strict=True,
    )
    t("log").create(
        {
            "idx": int,
            "object": bytes,
            "status": str,
            "reason": str,
            "server_time": int,
            "prev": bytes,
            "hash": bytes,
        },
        pk="idx",
        not_null={"object", "status", "reason", "server_time", "prev", "hash"},
        strict=True,
    )
    t("receipts").create(
        {"id": bytes, "object": bytes, "log_idx": int, "raw": bytes},
        pk="id",
        not_null={"object", "log_idx", "raw"},
        strict=True,
    )
    t("receipts").create_index(["log_idx"], unique=True)
    t("receipts").create_index(["object", "log_idx"])
    t("results").create(
        {
            "id": bytes,
            "tps": str,
            "election": str,
            "revision": int,
            "supersedes": bytes,
            "signer": bytes,
            "signer_serial": int,
            "issuer": bytes,
            "signer_label": str,
            "received": int,
            "votes": str,
            "valid": int,
            "invalid": int,
            "warnings": str,
        },
        pk="id",
        not_null={
            "tps",
            "election",
            "revision",
            "signer",
            "signer_serial",
            "issuer",
            "signer_label",
            "received",
            "votes",
            "valid",
            "invalid",
            "warnings",
        },
        strict=True,
    )
    t("results").create_index(["tps", "election"])
    t("photos").create(
        {"result": bytes, "sheet": int, "sha256": bytes, "size": int, "type": str},
        pk=("result", "sheet"),
        not_null={"sha256", "size", "type"},
        strict=True,
    )
    t("photos").create_index(["sha256"])
    t("endorsements").create(
        {
            "id": bytes,
            "result": bytes,
            "tps": str,
            "election": str,
            "signer": bytes,
            "signer_serial": int,
            "issuer": bytes,
            "role": str,
            "statement": str,
            "received": int,
        },
        pk="id",
        not_null={
            "result",
            "tps",
            "election",
            "signer",
            "signer_serial",
            "issuer",
            "role",
            "statement",
            "received",
        },
        strict=True,
    )
    t("endorsements").create_index(["result"])
    t("blobs").create({"sha256": bytes}, pk="sha256", strict=True)


def _m1_enrollment(db: sqlite_utils.Database) -> None:
    """Enrollment codes (hashes only), failed attempts, certificates issued."""
    t = db.table
    t("enroll_codes").create(
        {
            "hash": bytes,
            "role": str,
            "tps": str,
            "scope": str,
            "created": int,
            "expires_at": int,
            "used_at": int,
            "used_key": bytes,
            "serial": int,
        },
        pk="hash",
        not_null={"role", "tps", "scope", "created", "expires_at"},
        strict=True,
    )
    t("enroll_failures").create(
        {"id": int, "client": str, "time": int, "reason": str},
        pk="id",
        not_null={"client", "time", "reason"},
        strict=True,
    )
    t("enroll_failures").create_index(["client", "time"])
    t("enroll_failures").create_index(["time"])
    t("issued_certs").create(
        {
            "serial": int,
            "key_id": bytes,
            "role": str,
            "scope": str,
            "not_before": int,
            "not_after": int,
            "issued": int,
            "raw": bytes,
        },
        pk="serial",
        not_null={"key_id", "role", "scope", "not_before", "not_after", "issued", "raw"},
        strict=True,
    )
    t("issued_certs").create_index(["key_id"])


_RESULTS_SELECT = (
    "SELECT r.*, o.status, o.reason, group_concat(hex(p.sha256)) AS photo_hex "
    "FROM results r JOIN objects o ON o.id = r.id LEFT JOIN photos p ON p.result = r.id"
)
_RESULTS_ORDER = "GROUP BY r.id ORDER BY r.tps, r.election, r.revision, r.received"
_ENDORSEMENTS_SELECT = (
    "SELECT e.*, o.status, o.reason FROM endorsements e JOIN objects o ON o.id = e.id"
)


def _m2_enroll_limits(db: sqlite_utils.Database) -> None:
    """Failures keyed by client block and by code (issue 11: no global lock-out switch)."""
    db.table("enroll_failures").add_column("code", bytes)
    db.table("enroll_failures").create_index(["code", "time"])
    db.table("voids").create(
        {"id": bytes, "result": bytes, "reason": str, "received": int},
        pk="id",
        not_null={"result", "reason", "received"},
        strict=True,
    )
    db.table("voids").create_index(["result"])


def _m3_trail(db: sqlite_utils.Database) -> None:
    """Issue 13: admissions, objections, corrections and D.Hasil, one row each. ``data`` is the
    parsed body as JSON for display (the raw signed bytes stay in ``objects``); ``seat`` is the
    admission's witness seat, unique, so a third witness of a pair cannot take a seat."""
    db.table("trail").create(
        {
            "id": bytes,
            "kind": str,
            "tps": str,
            "kecamatan": str,
            "election": str,
            "result": bytes,
            "signer": bytes,
            "role": str,
            "created": int,
            "seat": str,
            "data": str,
            "received": int,
        },
        pk="id",
        not_null={"kind", "tps", "kecamatan", "election", "signer", "role", "created", "data",
                  "received"},
        strict=True,
    )  # fmt: skip
    db.table("trail").create_index(["tps"])
    db.table("trail").create_index(["kind", "kecamatan"])
    db.table("trail").create_index(["seat"], unique=True)
    # the typed photos-complete mark (was matched in the reason text): in every log entry (the
    # receipt carries it and the entry hash commits to it) and on the object
    db.table("log").add_column("photos", int, not_null_default=0)
    db.table("objects").add_column("photos", int, not_null_default=0)


MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], None]]] = [
    (1, "initial schema", _m1_schema),
    (2, "enrollment failures per code; voids", _m2_enroll_limits),
    (3, "the paper trail; typed photos-complete in the log", _m3_trail),
]
"""Numbered schema changes. Append only; never edit one that shipped."""


class CentralDB:
    """All SQL of the central server. Open with a path; ``close()`` when done."""

    def __init__(self, path: Path) -> None:
        try:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot open: {exc}") from exc
        self.path = Path(path)
        self.lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # --- transactions -----------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[None]:
        """One logical write: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""
        with self.lock:
            if self.db.conn.in_transaction:
                raise DatabaseError("write() does not nest")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _must_write(self) -> None:
        if not self.db.conn.in_transaction:
            raise DatabaseError("a write outside CentralDB.write()")

    def _x(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Cursor:
        self._must_write()
        return self.db.execute(sql, params)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        rows = list(self.db.query(sql, params))
        return rows[0] if rows else None

    def _migrate(self) -> None:
        with self.lock:
            if "migrations" not in self.db.table_names():
                with self.write():
                    self.db.table("migrations").create(
                        {"version": int, "name": str, "applied": int}, pk="version", strict=True
                    )
            done = {r["version"] for r in self.db.query("SELECT version FROM migrations")}
            known = {v for v, _, _ in MIGRATIONS}
            if done - known:
                raise DatabaseError(f"{self.path} has schema {max(done)}: from a newer Estafet")
            for version, name, fn in MIGRATIONS:
                if version in done:
                    continue
                with self.write():
                    fn(self.db)
                    self._x(
                        "INSERT INTO migrations (version, name, applied) "
                        "VALUES (?, ?, strftime('%s','now'))",
                        (version, name),
                    )

    # --- settings and counters ----------------------------------------------------------------
    def setting(self, key: str, make: Callable[[], bytes]) -> bytes:
        """The value of ``key``, created with ``make()`` the first time."""
        with self.lock:
            row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
            if row is not None:
                return bytes(row["value"])
            with self.write():
                self._x("INSERT INTO settings (key, value) VALUES (?, ?)", (key, make()))
            return self.setting(key, make)

    def next_counter(self, name: str, start: int) -> int:
        """Increment and return a counter (first value ``start``). Call inside write()."""
        self._x(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name, start),
        )
        row = self._one("SELECT value FROM counters WHERE name = ?", (name,))
        assert row is not None
        return int(row["value"])

    # --- objects --------------------------------------------------------------------------------
    def object_state(self, oid: bytes) -> Row | None:
        return self._one(
            "SELECT kind, verified, status, reason, raw FROM objects WHERE id = ?", (oid,)
        )

    def put_object(self, row: Row) -> None:
        """Insert an object, or replace the copy of a rejected one (kept in rejected_copies)."""
        old = self._one("SELECT raw, received, reason FROM objects WHERE id = ?", (row["id"],))
        if old is not None:
            self._x(
                "INSERT OR IGNORE INTO rejected_copies (raw_sha, id, raw, received, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    hashlib.sha256(old["raw"]).digest(),
                    row["id"],
                    old["raw"],
                    old["received"],
                    old["reason"],
                ),
            )
        self._x(
            "INSERT OR REPLACE INTO objects (id, kind, tps, election, size, raw, received, "
            "verified, status, reason) VALUES (:id, :kind, :tps, :election, :size, :raw, "
            ":received, :verified, 'pending', '')",
            row,
        )

    def set_status(self, oid: bytes, status: str, reason: str, photos: bool = False) -> None:
        self._x(
            "UPDATE objects SET status = ?, reason = ?, photos = ? WHERE id = ?",
            (status, reason, int(photos), oid),
        )

    def accepted_raw(self, kind: str) -> list[bytes]:
        rows = self.db.query(
            "SELECT raw FROM objects WHERE kind = ? AND status = 'accepted' ORDER BY received",
            (kind,),
        )
        return [bytes(r["raw"]) for r in rows]

    def object_counts(self) -> list[Row]:
        return list(
            self.db.query(
                "SELECT kind, status, count(*) AS n, sum(size) AS bytes FROM objects "
                "GROUP BY kind, status ORDER BY kind, status"
            )
        )

    def rejected_for_tps(self, tps: str) -> list[Row]:
        return list(
            self.db.query(
                "SELECT id, kind, election, received, reason FROM objects "
                "WHERE tps = ? AND status = 'rejected' ORDER BY received",
                (tps,),
            )
        )

    # --- log and receipts --------------------------------------------------------------------
    def log_head(self) -> tuple[int, bytes | None]:
        """(length, hash of the last entry or None when empty)."""
        row = self._one("SELECT idx, hash FROM log ORDER BY idx DESC LIMIT 1")
        return (0, None) if row is None else (int(row["idx"]) + 1, bytes(row["hash"]))

    def append_log(self, entry: Row, receipt_id: bytes, receipt: bytes) -> None:
        self._x(
            "INSERT INTO log (idx, object, status, reason, server_time, prev, hash, photos) "
            "VALUES (:idx, :object, :status, :reason, :server_time, :prev, :hash, :photos)",
            entry,
        )
        self._x(
            "INSERT INTO receipts (id, object, log_idx, raw) VALUES (?, ?, ?, ?)",
            (receipt_id, entry["object"], entry["idx"], receipt),
        )

    def iter_log(self, batch: int = 1000) -> Iterator[Row]:
        """Every log entry in order, with the receipt issued for it (``receipt`` raw bytes)."""
        last = -1
        while True:
            rows = list(
                self.db.query(
                    "SELECT l.*, r.raw AS receipt FROM log l LEFT JOIN receipts r "
                    "ON r.log_idx = l.idx WHERE l.idx > ? ORDER BY l.idx LIMIT ?",
                    (last, batch),
                )
            )
            if not rows:
                return
            yield from rows
            last = rows[-1]["idx"]

    def receipts_after(self, index: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT log_idx, raw FROM receipts WHERE log_idx > ? ORDER BY log_idx LIMIT ?",
            (index, limit),
        ).fetchall()
        return [(int(i), bytes(raw)) for i, raw in rows]

    def latest_receipt(self, oid: bytes) -> bytes | None:
        row = self._one(
            "SELECT raw FROM receipts WHERE object = ? ORDER BY log_idx DESC LIMIT 1", (oid,)
        )
        return None if row is None else bytes(row["raw"])

    # --- results, photos, endorsements, blobs -------------------------------------------------
    def put_result(self, row: Row, photos: list[Row]) -> None:
        row = {**row, "votes": json.dumps(row["votes"]), "warnings": json.dumps(row["warnings"])}
        self._x(
            "INSERT OR REPLACE INTO results (id, tps, election, revision, supersedes, signer, "
            "signer_serial, issuer, signer_label, received, votes, valid, invalid, warnings) "
            "VALUES (:id, :tps, :election, :revision, :supersedes, :signer, :signer_serial, "
            ":issuer, :signer_label, :received, :votes, :valid, :invalid, :warnings)",
            row,
        )
        self.put_photos(photos)

    def put_photos(self, photos: list[Row]) -> None:
        """Photo commitments of one object (a result, or a trail object's optional photos:
        the ``result`` column holds the naming object's id)."""
        for p in photos:
            self._x(
                "INSERT OR REPLACE INTO photos (result, sheet, sha256, size, type) "
                "VALUES (:result, :sheet, :sha256, :size, :type)",
                p,
            )

    def supersedes_of(self, rid: bytes) -> bytes | None:
        row = self._one("SELECT supersedes FROM results WHERE id = ?", (rid,))
        return None if row is None or row["supersedes"] is None else bytes(row["supersedes"])

    def result_key(self, rid: bytes) -> Row | None:
        return self._one("SELECT tps, election, revision FROM results WHERE id = ?", (rid,))

    def result_numbers(self, rid: bytes) -> Row | None:
        """One result with its status, votes, valid and invalid (None when not held)."""
        rows = self._results("r.id = ?", (rid,))
        return rows[0] if rows else None

    def _results(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        """Results joined with their status; ``where`` is one of this class's constant clauses."""
        sql = f"{_RESULTS_SELECT} WHERE {where} {_RESULTS_ORDER}"
        rows = list(self.db.query(sql, params))
        for r in rows:
            r["votes"] = json.loads(r["votes"])
            r["warnings"] = json.loads(r["warnings"])
            hexes = r.pop("photo_hex") or ""
            r["photos"] = [bytes.fromhex(h) for h in hexes.split(",") if h]
        return rows

    def slot(self, tps: str, election: str) -> list[Row]:
        """Results of one TPS and election that take part in the counting rule: not rejected,
        not voided, and not held for a superseded result that has not arrived."""
        return self._results(
            "r.tps = ? AND r.election = ? AND o.status NOT IN ('rejected', 'voided') AND "
            "(o.status != 'held' OR r.supersedes IN (SELECT id FROM results))",
            (tps, election),
        )

    def live_results(self) -> list[Row]:
        """Every result not rejected or voided: accepted, conflict, superseded or held."""
        return self._results("o.status NOT IN ('rejected', 'voided')", ())

    def held_naming(self, rid: bytes) -> list[Row]:
        """Held revisions whose ``supersedes`` is ``rid``."""
        return self._results("o.status = 'held' AND r.supersedes = ?", (rid,))

    def put_void(self, row: Row) -> None:
        self._x(
            "INSERT OR IGNORE INTO voids (id, result, reason, received) "
            "VALUES (:id, :result, :reason, :received)",
            row,
        )

    def void_for(self, rid: bytes) -> Row | None:
        return self._one(
            "SELECT v.id, v.reason FROM voids v JOIN objects o ON o.id = v.id "
            "WHERE v.result = ? AND o.status = 'accepted' ORDER BY v.received LIMIT 1",
            (rid,),
        )

    def results_with(self, status: str, reason: str | None = None) -> list[Row]:
        if reason is None:
            return self._results("o.status = ?", (status,))
        return self._results("o.status = ? AND o.reason = ?", (status, reason))

    def results_for_tps(self, tps: str) -> list[Row]:
        return self._results("r.tps = ?", (tps,))

    def photos_of(self, rid: bytes) -> list[Row]:
        return list(
            self.db.query(
                "SELECT p.sheet, p.sha256, p.size, p.type, b.sha256 IS NOT NULL AS present "
                "FROM photos p LEFT JOIN blobs b ON b.sha256 = p.sha256 "
                "WHERE p.result = ? ORDER BY p.sheet",
                (rid,),
            )
        )

    def trust_marker(self) -> tuple[int, int]:
        """Changes whenever a manifest or revocation list is accepted (by any process)."""
        row = self._one(
            "SELECT count(*) AS n, coalesce(max(received), 0) AS t FROM objects"
            " WHERE kind IN ('manifest', 'revocation') AND status = 'accepted'"
        )
        return (0, 0) if row is None else (int(row["n"]), int(row["t"]))

    def results_naming(self, sha256: bytes) -> list[Row]:
        return list(
            self.db.query(
                "SELECT o.id, o.kind, o.tps, o.election, o.status, o.reason, o.photos"
                " FROM photos p JOIN objects o ON o.id = p.result WHERE p.sha256 = ?",
                (sha256,),
            )
        )

    def present_photo_blobs(self) -> set[bytes]:
        rows = self.db.query(
            "SELECT DISTINCT p.sha256 FROM photos p JOIN blobs b ON b.sha256 = p.sha256"
        )
        return {bytes(r["sha256"]) for r in rows}

    def add_blob(self, sha256: bytes) -> None:
        self._x("INSERT OR IGNORE INTO blobs (sha256) VALUES (?)", (sha256,))

    def blob_count(self) -> int:
        row = self._one("SELECT count(*) AS n FROM blobs")
        return 0 if row is None else int(row["n"])

    def put_endorsement(self, row: Row) -> None:
        self._x(
            "INSERT OR REPLACE INTO endorsements (id, result, tps, election, signer, "
            "signer_serial, issuer, role, statement, received) VALUES (:id, :result, :tps, "
            ":election, :signer, :signer_serial, :issuer, :role, :statement, :received)",
            row,
        )

    def _endorsements(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        sql = f"{_ENDORSEMENTS_SELECT} WHERE {where} ORDER BY e.received, e.id"
        return list(self.db.query(sql, params))

    def endorsements_for_tps(self, tps: str) -> list[Row]:
        return self._endorsements("e.tps = ?", (tps,))

    def accepted_endorsements(self) -> list[Row]:
        return self._endorsements("o.status = 'accepted'", ())

    def endorsement_counts(self) -> dict[bytes, int]:
        """Distinct signers of accepted ``agree`` endorsements per result whose TPS and election
        match the result's; the result's own signer never counts (issue 11, item 9: one witness
        signing 20 times counted 20, and a chair could endorse itself)."""
        rows = self.db.query(
            "SELECT e.result, count(DISTINCT e.signer) AS n FROM endorsements e "
            "JOIN objects o ON o.id = e.id JOIN results r ON r.id = e.result "
            "WHERE o.status = 'accepted' AND e.tps = r.tps AND e.election = r.election "
            "AND e.statement = 'agree' AND e.signer != r.signer GROUP BY e.result"
        )
        return {bytes(r["result"]): int(r["n"]) for r in rows}

    # --- the paper trail (issue 13) -------------------------------------------------------------
    def put_trail(self, row: Row) -> None:
        """One admission, objection, correction or D.Hasil (``data`` a JSON-able dict)."""
        self._x(
            "INSERT OR IGNORE INTO trail (id, kind, tps, kecamatan, election, result, signer, "
            "role, created, seat, data, received) VALUES (:id, :kind, :tps, :kecamatan, "
            ":election, :result, :signer, :role, :created, :seat, :data, :received)",
            {**row, "data": json.dumps(row["data"], sort_keys=True)},
        )

    def seat_holder(self, seat: str) -> bytes | None:
        row = self._one("SELECT id FROM trail WHERE seat = ?", (seat,))
        return None if row is None else bytes(row["id"])

    def trail(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        """Trail rows (with their object status and reason) matching ``where``, oldest first."""
        rows = self.db.query(
            "SELECT t.*, o.status, o.reason FROM trail t JOIN objects o ON o.id = t.id "
            f"WHERE {where} ORDER BY t.created, t.id",
            params,
        )
        return [{**r, "data": json.loads(r["data"])} for r in rows]

    def trail_for_tps(self, tps: str) -> list[Row]:
        return self.trail("t.tps = ?", (tps,))

    def trail_of_kind(self, kind: str) -> list[Row]:
        return self.trail("t.kind = ? AND o.status = 'accepted'", (kind,))

    # --- enrollment ---------------------------------------------------------------------------
    def put_codes(self, rows: list[Row]) -> None:
        self._must_write()
        self.db.table("enroll_codes").insert_all(rows)

    def code(self, code_hash: bytes) -> Row | None:
        return self._one("SELECT * FROM enroll_codes WHERE hash = ?", (code_hash,))

    def use_code(self, code_hash: bytes, now: int, cert: Row) -> bool:
        """Mark a code used and record the certificate issued; False if already used."""
        cur = self._x(
            "UPDATE enroll_codes SET used_at = ?, used_key = ?, serial = ? "
            "WHERE hash = ? AND used_at IS NULL",
            (now, cert["key_id"], cert["serial"], code_hash),
        )
        if cur.rowcount != 1:
            return False
        self._x(
            "INSERT INTO issued_certs (serial, key_id, role, scope, not_before, not_after, "
            "issued, raw) VALUES (:serial, :key_id, :role, :scope, :not_before, :not_after, "
            ":issued, :raw)",
            cert,
        )
        return True

    def add_failure(self, client: str, now: int, reason: str, code: bytes | None = None) -> None:
        self._x(
            "INSERT INTO enroll_failures (client, time, reason, code) VALUES (?, ?, ?, ?)",
            (client, now, reason, code),
        )

    def failures_since(
        self, since: int, *, client: str | None = None, code: bytes | None = None
    ) -> int:
        """Failures after ``since`` from one client block, or against one code."""
        arg: str | bytes
        if client is not None:
            where, arg = "client = ?", client
        elif code is not None:
            where, arg = "code = ?", code
        else:
            raise ValueError("failures are counted per client block or per code, never globally")
        row = self._one(
            f"SELECT count(*) AS n FROM enroll_failures WHERE {where} AND time > ?",
            (arg, since),
        )
        return 0 if row is None else int(row["n"])

    def issued_cert(self, serial: int) -> bytes | None:
        row = self._one("SELECT raw FROM issued_certs WHERE serial = ?", (serial,))
        return None if row is None else bytes(row["raw"])

    def prune_failures(self, before: int) -> None:
        self._x("DELETE FROM enroll_failures WHERE time <= ?", (before,))

    def issued_label(self, key_id: bytes) -> Row | None:
        return self._one(
            "SELECT serial, role, scope FROM issued_certs WHERE key_id = ? ORDER BY serial DESC",
            (key_id,),
        )
