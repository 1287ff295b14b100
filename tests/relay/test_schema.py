"""The store's schema: migrations from every earlier version, STRICT tables, WAL.

Written over ``MIGRATIONS`` so that every future migration is covered without editing this file:
for each version k (0 = an empty file), migrate to k, put one row in every table, migrate to
the latest version, and check the rows survived.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from estafet.relay import store as store_mod
from estafet.relay.schema import LATEST, MIGRATIONS
from estafet.relay.store import Store, migrate

NOW = 1_732_665_600
VERSIONS = [0, *(v for v, _ in MIGRATIONS)]


def _db(path: Path) -> sqlite_utils.Database:
    return sqlite_utils.Database(sqlite3.connect(str(path)))


def _tables(db: sqlite_utils.Database) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name != 'migrations' ORDER BY name"
    )
    return [r[0] for r in rows]


def _schema(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


_SAMPLE = {"INTEGER": 7, "TEXT": "x", "BLOB": b"\x01\x02", "REAL": 1.5, "ANY": "any"}


def _insert_sample(db: sqlite_utils.Database, table: str) -> dict[str, object]:
    """One row of plausible values for every column (by declared type), primary key included."""
    cols = db.execute(f"PRAGMA table_info({table})").fetchall()
    row = {c[1]: _SAMPLE[(c[2] or "ANY").upper()] for c in cols}
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    with db.atomic():
        db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))
    return row


def test_migrate_an_empty_database_then_again_is_a_noop(tmp_path: Path) -> None:
    db = _db(tmp_path / "s.db")
    assert migrate(db, NOW) == LATEST
    expected = {"objects", "photos", "blobs", "receipts", "holders", "peers", "events", "meta"}
    assert expected <= set(_tables(db))
    schema = _schema(db)
    done = db.execute("SELECT version, applied FROM migrations ORDER BY version").fetchall()
    assert [v for v, _ in done] == [v for v, _ in MIGRATIONS]
    assert migrate(db, NOW + 60) == LATEST
    assert _schema(db) == schema
    assert db.execute("SELECT version, applied FROM migrations ORDER BY version").fetchall() == done


@pytest.mark.parametrize("start", VERSIONS)
def test_migrate_from_every_earlier_version_keeps_rows(tmp_path: Path, start: int) -> None:
    db = _db(tmp_path / "s.db")
    assert migrate(db, NOW, upto=start) == start
    rows = {t: _insert_sample(db, t) for t in _tables(db)}
    assert migrate(db, NOW) == LATEST
    for table, row in rows.items():
        cols = ", ".join(row)
        got = db.execute(f"SELECT {cols} FROM {table}").fetchall()
        assert got == [tuple(row.values())], table
    # the end state is the same schema as a fresh database's
    fresh = _db(tmp_path / "fresh.db")
    migrate(fresh, NOW)
    assert _schema(db) == _schema(fresh)


def test_a_failing_migration_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = LATEST + 1
    monkeypatch.setattr(
        store_mod,
        "MIGRATIONS",
        [
            *MIGRATIONS,
            (
                broken,
                "CREATE TABLE half_done (a INTEGER) STRICT; INSERT INTO no_such_table VALUES (1)",
            ),
        ],
    )
    db = _db(tmp_path / "s.db")
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        migrate(db, NOW, upto=broken)
    assert db.execute("SELECT max(version) FROM migrations").fetchone()[0] == LATEST
    assert "half_done" not in _tables(db)  # the DDL went back with the failed step
    assert not db.conn.in_transaction


def test_every_table_is_strict(tmp_path: Path) -> None:
    db = _db(tmp_path / "s.db")
    migrate(db, NOW)
    listed = db.execute("SELECT name, strict FROM pragma_table_list WHERE schema = 'main'")
    strict = {name: bool(flag) for name, flag in listed if not name.startswith("sqlite_")}
    strict.pop("migrations")  # the bookkeeping table predates every migration
    assert strict
    assert all(strict.values()), strict


@pytest.mark.parametrize(
    ("table", "column", "bad"),
    [
        ("objects", "created", "yesterday"),
        ("objects", "id", 12345),
        ("blobs", "size", b"big"),
        ("peers", "failures", "many"),
        ("events", "reason", b"\x00"),
    ],
)
def test_strict_tables_refuse_wrong_types(
    tmp_path: Path, table: str, column: str, bad: object
) -> None:
    db = _db(tmp_path / "s.db")
    migrate(db, NOW)
    row = _insert_sample(db, table)
    db.execute(f"DELETE FROM {table}")
    row[column] = bad
    with pytest.raises(sqlite3.IntegrityError, match="cannot store"):
        _insert_sample_row(db, table, row)


def _insert_sample_row(db: sqlite_utils.Database, table: str, row: dict[str, object]) -> None:
    names = ", ".join(row)
    with db.atomic():
        db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )


def test_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home", NOW)
    try:
        db = store.sync_db().db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        store.close()
    # WAL is a property of the file: a plain connection opened later sees it too
    conn = sqlite3.connect(str(tmp_path / "home" / "store.db"))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT max(version) FROM migrations").fetchone()[0] == LATEST
    finally:
        conn.close()
