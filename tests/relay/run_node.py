"""Run one node as a real process, from a home made by ``tests/relay/nodes.py`` helpers.

For tests that need a process of its own (kill -9, network namespaces)::

    python -m tests.relay.run_node --home DIR --now UNIX [--listen HOST:PORT]
        [--max-open-files N]   # once listening: at most N more file descriptors (EMFILE tests)

Prints ``READY <port>`` on stdout once listening; SIGTERM or SIGINT stops it cleanly. The clock
starts at ``--now`` (the test world's time, so certificates are valid) and then runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from pathlib import Path

from estafet.relay.daemon import serve_until_signalled, setup_logging
from estafet.relay.home import Home
from estafet.relay.node import Node


def _limit_open_files(more: int) -> None:
    """Lower the soft RLIMIT_NOFILE to what is open now plus ``more``."""
    open_now = len(os.listdir("/proc/self/fd"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + more, hard))


async def _main(home: Path, now: int, listen: str | None, max_open: int | None) -> None:
    h = Home(home)
    config = h.load_config()
    if listen:
        config.listen = listen
    root = h.load_trust()
    assert root is not None, f"{home} has no trust anchor"
    t0 = time.monotonic()
    node = Node(home, config, h.load_key(None), root, clock=lambda: now + (time.monotonic() - t0))

    def ready() -> None:
        if max_open is not None:
            _limit_open_files(max_open)
        print(f"READY {node.port}", flush=True)

    await serve_until_signalled(node.start, node.stop, ready)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--now", type=int, required=True)
    ap.add_argument("--listen")
    ap.add_argument("--log", default="INFO")
    ap.add_argument("--max-open-files", type=int)
    args = ap.parse_args()
    setup_logging(args.log, as_json=True)
    asyncio.run(_main(args.home, args.now, args.listen, args.max_open_files))


if __name__ == "__main__":
    main()
