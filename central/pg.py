"""central.pg: the PostgreSQL backend of :class:`~.db.CentralDB`, for a national central server.

Driver: psycopg 3 (the ``estafet[postgresql]`` extra). It is synchronous like the rest of the
central core (the web layer already runs database calls on one thread of its own), so the same
domain methods serve both backends; asyncpg would have needed a second, async copy of them.

Several central processes (one per core, or per machine) share one database. Every
:meth:`PostgresCentralDB.write` first takes ``pg_advisory_xact_lock(CHAIN_LOCK)``: the writes of
all processes are serialised in the database (the lock is released by the COMMIT or ROLLBACK,
so a killed process never leaves it held), the hash-chained log has one head and never forks,
and the counting rule of each write sees every result committed before it. Verifying an object
(the costly signature checks) happens before ``write()``, outside the lock, in parallel.

Durability: ``COMMIT`` returns once the WAL is flushed, and only then is a receipt handed out.
A server configured with ``fsync = off`` or ``synchronous_commit = off`` could lose receipts it
already gave, so it is refused at open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from .db import CentralDB, Params, Row
from .errors import DatabaseError
from .schema import POSTGRES

CHAIN_LOCK = 0x4573_7461_6665_7401
"""The advisory lock key that serialises every central write (``Estafet`` + 1)."""
CONNECT_TIMEOUT = 10
STATEMENT_TIMEOUT_MS = 60_000
"""No statement may hang a worker: a stuck lock or query fails after a minute."""


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresCentralDB(CentralDB):
    """All central tables in one PostgreSQL database, shared by every central process."""

    dialect = POSTGRES

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.where = redact(url)
        self.conn = self._connect()
        self._migrate()

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
            settings = {
                name: conn.execute(f"SHOW {name}").fetchone()
                for name in ("fsync", "synchronous_commit")
            }
        except psycopg.Error as exc:
            raise DatabaseError(f"{self.where}: cannot open: {exc}") from exc
        off = [name for name, row in settings.items() if row and next(iter(row.values())) == "off"]
        if off:
            conn.close()
            raise DatabaseError(
                f"{self.where}: {' and '.join(off)} is off: a crash could lose receipts already "
                "handed out; turn it on (docs/deploy.md)"
            )
        return conn

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    def _reconnect_if_lost(self) -> None:
        """A restarted or failed-over server: reconnect before the next statement."""
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()

    @contextmanager
    def write(self) -> Iterator[None]:
        """One logical write, serialised with every process's by the chain lock."""
        with self.lock:
            if self.in_transaction():
                raise DatabaseError("write() does not nest")
            self._reconnect_if_lost()
            try:
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
                    yield
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.where}: {exc}") from exc

    def _run(self, sql: str, params: Params) -> tuple[int, list[Row] | None]:
        with self.lock:
            if not self.in_transaction():
                self._reconnect_if_lost()
            try:
                cur = self.conn.execute(sql, params or None)
                rows = cur.fetchall() if cur.description is not None else None
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.where}: {exc}") from exc
            return cur.rowcount, rows
