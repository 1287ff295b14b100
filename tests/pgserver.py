"""A real, throw-away PostgreSQL server for tests and benches: initdb + pg_ctl in a temporary
directory, on a free loopback port, as an unprivileged user when run as root (CI), removed
afterwards. Each test asks :meth:`PgServer.fresh` for a database of its own.

``ESTAFET_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) turns "PostgreSQL is not available" from a
skip into a failure, so CI can never go green without the PostgreSQL half.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

REQUIRE = "ESTAFET_REQUIRE_POSTGRES"
USER = "estafet"


class PgUnavailable(Exception):
    """No PostgreSQL binaries or driver here (a skip, unless ESTAFET_REQUIRE_POSTGRES=1)."""


def pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not versions:
        raise PgUnavailable("PostgreSQL server binaries not found (Debian: apt install postgresql)")
    return Path(versions[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary directory; ``stop()`` removes it."""

    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise PgUnavailable(
                "psycopg is not installed (pip install 'estafet[postgresql]')"
            ) from exc
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="estafet-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as nobody
            shutil.chown(self.root, "nobody")
            self._as = ["runuser", "-u", "nobody", "--"]
        self._pg("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                 "--no-sync")  # fmt: skip
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                 "-w", "-t", "60", "start")  # fmt: skip

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PgUnavailable(f"{tool} failed: {done.stderr.strip()[-2000:]} {tail}")

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def fresh(self) -> str:
        """The URL of a new, empty database."""
        name = f"t{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
