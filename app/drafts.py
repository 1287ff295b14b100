"""Drafts of results being entered, in the node's own SQLite store (tables ``drafts`` and
``draft_photos``, migration 2 of ``relay/schema.py``).

A draft is saved as the officer types and as each photo is taken, so a browser killed while the
camera app is open loses nothing. One draft per election on a device; signing removes it. The
functions take a sqlite-utils ``Database`` and run on the store's writer (or a reader) thread.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DRAFT_JSON = 16_000
SHEETS = (1, 2, 3)


def empty_draft() -> dict[str, Any]:
    return {"fields": {}, "revision": 0, "supersedes": None, "reason": ""}


def load(db: Any, election: str) -> dict[str, Any]:
    row = db.execute("SELECT form, updated FROM drafts WHERE election = ?", [election]).fetchone()
    draft = empty_draft()
    if row is not None:
        draft.update(json.loads(row[0]))
        draft["updated"] = int(row[1])
    photos = db.execute(
        "SELECT sheet, length(data), updated FROM draft_photos WHERE election = ? ORDER BY sheet",
        [election],
    ).fetchall()
    draft["photos"] = [{"sheet": s, "size": n, "updated": u} for s, n, u in photos]
    return draft


def save(db: Any, election: str, draft: dict[str, Any], now: int) -> None:
    doc = json.dumps({k: draft[k] for k in ("fields", "revision", "supersedes", "reason")})
    with db.atomic():
        db.execute(
            "INSERT INTO drafts VALUES (?, ?, ?) ON CONFLICT(election) DO UPDATE"
            " SET form = excluded.form, updated = excluded.updated",
            [election, doc, now],
        )


def save_photo(db: Any, election: str, sheet: int, data: bytes, now: int) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO draft_photos VALUES (?, ?, ?, ?) ON CONFLICT(election, sheet) DO UPDATE"
            " SET data = excluded.data, updated = excluded.updated",
            [election, sheet, data, now],
        )


def photo(db: Any, election: str, sheet: int) -> bytes | None:
    row = db.execute(
        "SELECT data FROM draft_photos WHERE election = ? AND sheet = ?", [election, sheet]
    ).fetchone()
    return bytes(row[0]) if row else None


def photos(db: Any, election: str) -> list[bytes]:
    rows = db.execute(
        "SELECT data FROM draft_photos WHERE election = ? ORDER BY sheet", [election]
    ).fetchall()
    return [bytes(r[0]) for r in rows]


def discard(db: Any, election: str) -> None:
    with db.atomic():
        db.execute("DELETE FROM drafts WHERE election = ?", [election])
        db.execute("DELETE FROM draft_photos WHERE election = ?", [election])
