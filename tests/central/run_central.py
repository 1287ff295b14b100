"""Run the central server (``open_central``) as a real process, for the outbox crash test.

    python -m tests.central.run_central --home DIR --now UNIX [--kill-when conflict|photos]

The authority is the test World's (seeded keys, no key files). Prints ``READY <port>`` once
listening; SIGTERM stops it cleanly. With ``--kill-when`` the process SIGKILLs itself right
after the first central.db commit that logs a conflict (or a photos-complete receipt): the
instant after the first database committed and before the node store did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import estafet.central.serve as serve
from estafet.central.db import CentralDB
from estafet.relay.daemon import serve_until_signalled, setup_logging
from tests.central.conftest import world_authority
from tests.kit import World

KILL_WHEN = {
    "conflict": "SELECT 1 FROM log WHERE status = 'conflict'",
    "photos": "SELECT 1 FROM log WHERE photos = 1",
}


def arm(query: str) -> None:
    write = CentralDB.write

    @contextlib.contextmanager
    def killing_write(self: CentralDB) -> Iterator[None]:
        with write(self):
            yield
        if "log" not in self.db.table_names():
            return  # a migration creating the tables
        try:
            hit = self.db.execute(query).fetchone()
        except sqlite3.OperationalError:
            return  # a migration adding the queried column has not run yet
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    CentralDB.write = killing_write  # type: ignore[method-assign]


async def _main(home: Path, now: int) -> None:
    world = World()
    serve.load_authority = lambda h, _pw: world_authority(world, h)  # type: ignore[assignment]
    t0 = time.monotonic()
    node, central = serve.open_central(
        home, "", "127.0.0.1:0", clock=lambda: now + (time.monotonic() - t0)
    )

    async def stop() -> None:
        await node.stop()
        central.close()

    await serve_until_signalled(node.start, stop, lambda: print(f"READY {node.port}", flush=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--now", type=int, required=True)
    ap.add_argument("--kill-when", choices=sorted(KILL_WHEN))
    args = ap.parse_args()
    setup_logging("WARNING", as_json=True)
    if args.kill_when:
        arm(KILL_WHEN[args.kill_when])
    asyncio.run(_main(args.home, args.now))


if __name__ == "__main__":
    main()
