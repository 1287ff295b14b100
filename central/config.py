"""central.config: which database a central home uses, named in ``<home>/central.toml``.

Absent (the default), the home keeps SQLite ``central.db``; ``database = "postgresql://..."``
(written by ``central init --database``) puts everything in PostgreSQL (:mod:`.pg`, needing the
``estafet[postgresql]`` extra), shared by every central worker of the deployment.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from .db import CentralDB, SQLiteCentralDB
from .errors import DatabaseError

DB_FILE = "central.db"
CONFIG_FILE = "central.toml"


def database_url(home: Path) -> str | None:
    """The database named in ``<home>/central.toml``, or None for the default SQLite file."""
    path = Path(home) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DatabaseError(f"{path}: cannot read: {exc}") from exc
    url = config.get("database", "")
    if not isinstance(url, str) or not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseError(f"{path}: database must be a postgresql:// URL (or absent: SQLite)")
    return url


def write_config(home: Path, url: str) -> None:
    """Name the central database in ``<home>/central.toml`` (``central init --database``)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseError("--database must be a postgresql:// URL (leave it out for SQLite)")
    text = (
        "# the central database (docs/deploy.md); without this file: SQLite central.db\n"
        f"database = {json.dumps(url)}\n"
    )
    (Path(home) / CONFIG_FILE).write_text(text, encoding="utf-8")


def open_db(home: Path) -> CentralDB:
    """The central database of ``home``: PostgreSQL when central.toml names one, else SQLite."""
    url = database_url(home)
    if url is None:
        return SQLiteCentralDB(Path(home) / DB_FILE)
    from .pg import PostgresCentralDB  # psycopg is an optional extra

    return PostgresCentralDB(url)
