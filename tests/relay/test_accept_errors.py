"""Issue 11, item 7: a failed ``accept()`` is logged once per burst, with a count.

Out of file descriptors, every failed ``accept()`` reached asyncio's default exception handler,
which logged a traceback each time (63 MB of log in 25 s). The first test provokes real
failures: a node in its own process (``run_node.py --max-open-files``) whose descriptor limit is
a few above what it holds, and 40 connections opened at once. The second feeds the handler the
exact context dicts asyncio's ``selector_events`` produces, a thousand times, for the failure a
process limit cannot provoke reliably (a socket accepted but its transport not created).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from estafet.relay.conns import AcceptErrors
from tests.kit import World
from tests.relay.test_crash import REPO, make_home


def _open(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))  # non-blocking: past the backlog it just waits
        out.append(s)
    return out


def test_real_accept_failures_are_logged_once_per_burst(tmp_path: Path) -> None:
    world = World()
    home = make_home(world, tmp_path, "fd-starved")
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.relay.run_node", "--home", str(home), "--now",
         str(world.now), "--max-open-files", "6"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=err,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(b"READY "), line
        port = int(line.split()[1])
        conns = _open(port, 40)
        time.sleep(2.0)  # accept() fails again and again meanwhile (~90 times a second)
        for c in conns:
            c.close()
        assert _serves_again(port, 30.0)  # once the backlog of closed connections drained
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    err.seek(0)
    records = [json.loads(x) for x in err if x.startswith("{")]
    msgs = [r["msg"] for r in records]
    # no traceback per failure from asyncio's handler (other parts of a node this short of
    # descriptors may fail and say so, e.g. the address watcher, which is started again)
    tracebacks = [r for r in records if r["logger"] == "asyncio" or "system resource" in r["msg"]]
    assert not tracebacks, msgs
    ours = [m for m in msgs if m.startswith("accept failed")]
    assert ours[0].startswith("accept failed: [Errno 24] Too many open files"), msgs
    counted = [int(m.group(1)) for x in ours if (m := re.match(r"accept failed (\d+) times", x))]
    # the first at once, then one line per 10 s (and one at stop) for hundreds of failures
    assert 2 <= len(ours) <= 5 and len(counted) == len(ours) - 1, msgs
    assert sum(counted) >= 10 * len(ours), msgs


def _serves_again(port: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=2) as r:
                return r.status == 200
        except OSError:
            time.sleep(0.5)
    return False


async def test_a_thousand_failed_accepts_are_two_lines_and_other_errors_go_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    errors = AcceptErrors(interval=0.2)
    errors.install(loop)
    sock = socket.socket()
    try:
        emfile = OSError(errno.EMFILE, "Too many open files")
        for i in range(1000):  # as asyncio/selector_events.py reports them
            if i % 2:
                ctx = {"message": "socket.accept() out of system resource", "exception": emfile,
                       "socket": sock}  # fmt: skip
            else:
                enobufs = OSError(errno.ENOBUFS, "No buffer space available")
                ctx = {"message": "Error on transport creation for incoming connection",
                       "exception": enobufs}  # fmt: skip
            loop.call_exception_handler(ctx)
        loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        await asyncio.sleep(0.5)  # one tick with the count, then a quiet one ends the burst
    finally:
        errors.restore()
        sock.close()
    assert loop.get_exception_handler() is before
    ours = [r.getMessage() for r in caplog.records if r.getMessage().startswith("accept failed")]
    assert len(ours) == 2, ours
    assert ours[1].startswith("accept failed 999 times in the last 0 s"), ours
    assert errors.failures == 1000
    other = [r for r in caplog.records if r.getMessage() == "something else"]
    assert len(other) == 1 and other[0].name == "asyncio" and other[0].exc_info  # the default's


async def test_handlers_of_several_nodes_restore_in_any_order() -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    first, second = AcceptErrors(), AcceptErrors()
    first.install(loop)
    second.install(loop)
    first.restore()  # the first node stops first: the second's handler stays, without it
    assert loop.get_exception_handler() is second
    second.restore()
    assert loop.get_exception_handler() is before
