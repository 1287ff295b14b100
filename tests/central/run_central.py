"""Run the central server (``open_central``) as a real process, for the outbox crash test.

    python -m tests.central.run_central --home DIR --now UNIX [--kill-when conflict|photos]
        [--kill-at-entry N]

The authority is the test World's (seeded keys, no key files). Prints ``READY <port>`` once
listening; SIGTERM stops it cleanly. With ``--kill-when`` the process SIGKILLs itself right
after the first central.db commit that logs a conflict (or a photos-complete receipt): the
instant after the first database committed and before the node store did. With
``--kill-at-entry N`` it SIGKILLs itself as it appends the N-th log entry of its life (counting
from 1), before that entry's transaction commits: in the middle of a pushed batch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import estafet.central.serve as serve
from estafet.central.db import CentralDB, SQLiteCentralDB
from estafet.central.schema import MIGRATIONS
from estafet.relay.daemon import serve_until_signalled, setup_logging
from tests.central.conftest import world_authority
from tests.kit import World

KILL_WHEN = {
    "conflict": "SELECT 1 FROM log WHERE status = 'conflict'",
    "photos": "SELECT 1 FROM log WHERE photos = 1",
}


def arm(query: str) -> None:
    """SIGKILL this process right after the first committed write that makes ``query`` true,
    on whichever backend the home names."""
    for cls in _backends():
        _arm(cls, query)


def _arm(cls: type[CentralDB], query: str) -> None:
    write = cls.write

    @contextlib.contextmanager
    def killing_write(self: CentralDB) -> Iterator[None]:
        with write(self):
            yield
        if self.schema_version() < MIGRATIONS[-1][0]:
            return  # a migration creating the tables (or the queried column)
        if self.query(query):
            os.kill(os.getpid(), signal.SIGKILL)

    cls.write = killing_write  # type: ignore[method-assign]


def arm_entry(n: int) -> None:
    """SIGKILL this process when it appends its ``n``-th log entry, uncommitted."""
    for cls in _backends():
        _arm_entry(cls, n)


def _backends() -> tuple[type[CentralDB], ...]:
    from estafet.central.pg import PostgresCentralDB

    return (SQLiteCentralDB, PostgresCentralDB)


def _arm_entry(cls: type[CentralDB], n: int) -> None:
    append = cls.append_log
    seen = [0]

    def killing_append(self: CentralDB, entry: dict[str, object], rid: bytes, raw: bytes) -> None:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        append(self, entry, rid, raw)

    cls.append_log = killing_append  # type: ignore[method-assign]


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
    ap.add_argument("--kill-at-entry", type=int, default=0)
    args = ap.parse_args()
    setup_logging("WARNING", as_json=True)
    if args.kill_when:
        arm(KILL_WHEN[args.kill_when])
    if args.kill_at_entry:
        arm_entry(args.kill_at_entry)
    asyncio.run(_main(args.home, args.now))


if __name__ == "__main__":
    main()
