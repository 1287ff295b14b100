"""The node store's SQLite schema as numbered migrations.

Each migration is applied in its own transaction together with its row in ``migrations``, so a
crash leaves the database at one numbered version or the next, never between. Never edit a
published migration: add a new one. ``tests/relay/test_schema.py`` migrates from every earlier
version.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE objects (
            id BLOB PRIMARY KEY,
            kind TEXT NOT NULL,
            region TEXT NOT NULL,
            tps TEXT NOT NULL,
            election TEXT NOT NULL,
            created INTEGER NOT NULL,
            raw BLOB NOT NULL,
            size INTEGER NOT NULL,
            origin TEXT NOT NULL,
            received INTEGER NOT NULL,
            state TEXT,
            reason TEXT,
            receipt BLOB,
            receipt_index INTEGER,
            last_push INTEGER,
            revoked INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        CREATE INDEX objects_region ON objects(region);
        CREATE INDEX objects_state ON objects(state);
        CREATE TABLE photos (
            result BLOB NOT NULL,
            sheet INTEGER NOT NULL,
            sha256 BLOB NOT NULL,
            size INTEGER NOT NULL,
            PRIMARY KEY (result, sheet)
        ) STRICT;
        CREATE INDEX photos_sha ON photos(sha256);
        CREATE TABLE blobs (
            sha256 BLOB PRIMARY KEY,
            size INTEGER NOT NULL,
            stored INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE receipts (
            object BLOB NOT NULL,
            receipt BLOB NOT NULL,
            log_index INTEGER NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (object, receipt)
        ) STRICT;
        CREATE TABLE holders (
            object BLOB NOT NULL,
            peer TEXT NOT NULL,
            PRIMARY KEY (object, peer)
        ) STRICT;
        CREATE TABLE peers (
            id TEXT PRIMARY KEY,
            addr TEXT NOT NULL,
            source TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT '',
            scope TEXT NOT NULL DEFAULT '',
            last_seen INTEGER NOT NULL DEFAULT 0,
            last_ok INTEGER NOT NULL DEFAULT 0,
            central_ok INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            backoff_until INTEGER NOT NULL DEFAULT 0,
            penalties INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT ''
        ) STRICT;
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            level TEXT NOT NULL,
            peer TEXT NOT NULL,
            object BLOB,
            reason TEXT NOT NULL
        ) STRICT;
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        """,
    ),
    (
        2,
        """
        CREATE TABLE drafts (
            election TEXT PRIMARY KEY,
            form TEXT NOT NULL,
            updated INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE draft_photos (
            election TEXT NOT NULL,
            sheet INTEGER NOT NULL,
            data BLOB NOT NULL,
            updated INTEGER NOT NULL,
            PRIMARY KEY (election, sheet)
        ) STRICT;
        """,
    ),
    (
        3,
        """
        ALTER TABLE receipts ADD COLUMN photos_complete INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE objects ADD COLUMN photos_complete INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]
LATEST = MIGRATIONS[-1][0]
