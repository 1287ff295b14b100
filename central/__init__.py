"""The KPU central server's core: authority keys, enrollment, ingest with receipts, tally, web.

Codemap::

    errors.py         CentralError and its subclasses
    manifest_file.py  the manifest TOML + CSV files -> Manifest
    authority.py      the authority home: root/issuer keys, issuer cert, manifest, revocations
    schema.py         the tables as portable SQL (numbered migrations) and the two dialects
    db.py             CentralDB: every SQL statement; SQLiteCentralDB (central.db, the default)
    config.py         central.toml: which database a home uses (open_db)
    pg.py             PostgresCentralDB: the same on PostgreSQL, for several workers (psycopg)
    enroll.py         one-time enrollment codes -> device certificates
    ingest.py         Central: verify, store, hash-chained log, receipts
    views.py          status and TPS-page views (read-only)
    metrics.py        Prometheus counters and gauges
    web.py            aiohttp routes: dashboard, TPS page, /api/status, /metrics, /v1/enroll
    outbox.py         CentralSink: receipts from the ingest log into the node store
    serve.py          the central as a node on the /v1/ peer API

The counting rule is :mod:`estafet.protocol.tally`; the HTML is :mod:`estafet.pages.dashboard`.

Invariants: the core (everything but web.py) is synchronous and never reads the clock: ``now``
is an argument. One logical write is one database transaction, serialised with every other
central process's (SQLite ``BEGIN IMMEDIATE``; PostgreSQL an advisory lock).
"""

from .authority import (
    Authority,
    change_passphrase,
    init_central,
    load_authority,
    revoke,
    void,
)
from .enroll import Enrollment, EnrollResult
from .errors import (
    AuthorityError,
    CentralError,
    DatabaseError,
    EnrollError,
    LogError,
    ManifestFileError,
    UnknownTpsError,
)
from .ingest import Central
from .manifest_file import load_manifest_file

__all__ = [
    "Authority",
    "AuthorityError",
    "Central",
    "CentralError",
    "DatabaseError",
    "EnrollError",
    "EnrollResult",
    "Enrollment",
    "LogError",
    "ManifestFileError",
    "UnknownTpsError",
    "change_passphrase",
    "init_central",
    "load_authority",
    "load_manifest_file",
    "revoke",
    "void",
]
