"""Figure 10: the cost of a hostile 4 MiB body (issue 11, item 4).

A body of nested empty arrays, each within the per-array limit, used to decode into ~4 million
lists (≈600 MB, seconds of CPU). The codec now counts elements before building anything and
refuses the body with ``BudgetError``. Each case runs in a fresh interpreter so its peak RSS is
its own; "added" is the peak RSS during ``decode`` (VmHWM, reset just before) minus the RSS
after imports and after the body was built.

* hostile: 4 MiB of ``[[], [], ...]`` rows decoded with the peer API's limits (refused);
* baseline: a normal body of the same size (an ``objects`` push of 64 KiB byte strings), decoded;
* through a real node: an enrolled (authenticated) hostile peer pushes hostile 4 MiB bodies to a
  node's ``/v1/objects/put`` on loopback, back to back, while another client times ``/v1/info``;
  the baseline is ``/v1/info`` on the same idle node. (An anonymous caller cannot send them at
  all: ``objects/put`` answers 401 before reading the body.)

Targets (issue 11): the hostile body adds < 50 MB and is refused in < 200 ms, so a request
queued behind it on the event loop waits less than that.

Usage::

    python bench/bench_decode.py [--quick] [--json bench/results/decode.json]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchkit import World, cli, make_node, row, start_quiet

from estafet.relay.auth import HEADER
from estafet.relay.client import HttpPeerClient

CHILD = r"""
import json, sys, time
from estafet.protocol import codec
from estafet.protocol.errors import DecodeError
from estafet.relay.wire import API_LIMITS

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

size = int(sys.argv[2])
if sys.argv[1] == "hostile":
    row = b"\xdc\x04\x00" + b"\x90" * 1024  # 1,024 empty arrays
    block = b"\xdc\x04\x00" + row * 1024  # 1,024 rows: ~1 MiB
    n = max(1, round(size / len(block)))
    body = bytes([0x90 | n]) + block * n  # every array within the per-array limit
else:
    n = size // (64 * 1024 + 5)
    body = codec.encode({"objects": [bytes([i % 256]) * (64 * 1024) for i in range(n)]})
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status_kb("VmRSS")
t = time.perf_counter()
try:
    codec.decode(body, API_LIMITS)
    outcome = "decoded"
except DecodeError as exc:
    outcome = type(exc).__name__
seconds = time.perf_counter() - t
peak = status_kb("VmHWM")
print(json.dumps({"bytes": len(body), "seconds": seconds, "added_mb": max(0, peak - before) / 1024,
                  "outcome": outcome}))
"""


def run_case(case: str, size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(size)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def hostile_body(size: int) -> bytes:
    row = b"\xdc\x04\x00" + b"\x90" * 1024
    block = b"\xdc\x04\x00" + row * 1024
    n = max(1, round(size / len(block)))
    return b"\x81\xa7objects" + bytes([0x90 | n]) + block * n


async def _info_latency(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        async with http.get(url + "/v1/info") as r:
            await r.read()
        out.append(time.perf_counter() - t)
        await asyncio.sleep(0.01)
    return out


async def through_a_node(quick: bool) -> dict[str, Any]:
    """/v1/info latency on a node, idle and while hostile 4 MiB bodies arrive back to back."""
    world = World()
    n = 20 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(world, Path(tmp) / "relay", "relay")
        hostile = make_node(world, Path(tmp) / "hostile", "hostile")
        await start_quiet(node)
        await start_quiet(hostile)
        url = f"http://127.0.0.1:{node.port}"
        try:
            async with aiohttp.ClientSession() as http:
                client = HttpPeerClient(http, url, "bench", dict, credentials=hostile)
                done = await client.authenticate()
                assert done is not None
                headers = {HEADER: done[1]}
                idle = await _info_latency(http, url, n)
                body = hostile_body(4 * 1024 * 1024)
                statuses: list[int] = []
                stop = asyncio.Event()

                async def flood() -> None:
                    while not stop.is_set():
                        async with http.post(url + "/v1/objects/put", data=body,
                                             headers=headers) as r:  # fmt: skip
                            await r.read()
                            statuses.append(r.status)

                floods = [asyncio.create_task(flood()) for _ in range(2)]
                await asyncio.sleep(0.2)
                loaded = await _info_latency(http, url, n)
                stop.set()
                await asyncio.gather(*floods)
        finally:
            await hostile.stop()
            await node.stop()
    return {"idle": idle, "loaded": loaded, "statuses": sorted(set(statuses)),
            "bodies": len(statuses)}  # fmt: skip


def main(quick: bool) -> dict[str, Any]:
    size = 4 * 1024 * 1024
    repeats = 1 if quick else 5
    hostile = [run_case("hostile", size) for _ in range(repeats)]
    normal = [run_case("normal", size) for _ in range(repeats)]
    h_s = statistics.median(r["seconds"] for r in hostile)
    n_s = statistics.median(r["seconds"] for r in normal)
    h_mb = max(r["added_mb"] for r in hostile)
    n_mb = max(r["added_mb"] for r in normal)
    rows = [
        row("10", "hostile 4 MiB nested arrays: RSS added", h_mb, "MB", baseline=n_mb,
            target="< 50 MB", ok=h_mb < 50, quick=quick,
            note=f"outcome {hostile[0]['outcome']}; baseline = normal 4 MiB body"),
        row("10", "hostile 4 MiB nested arrays: decode time", h_s * 1000, "ms",
            baseline=n_s * 1000, target="< 200 ms", ok=h_s < 0.2,
            quick=quick, note="refused before anything is built"),
    ]  # fmt: skip
    node = asyncio.run(through_a_node(quick))
    p95 = sorted(node["loaded"])[int(0.95 * (len(node["loaded"]) - 1))]
    idle95 = sorted(node["idle"])[int(0.95 * (len(node["idle"]) - 1))]
    rows.append(
        row("10", "/v1/info p95 while hostile 4 MiB bodies arrive", p95 * 1000, "ms",
            baseline=idle95 * 1000, target="< 200 ms", ok=None if quick else p95 < 0.2,
            quick=quick, note=f"{node['bodies']} bodies pushed, answered {node['statuses']}; "
            "baseline = the same node idle")
    )  # fmt: skip
    return {"rows": rows, "hostile": hostile, "normal": normal, "node": node}


if __name__ == "__main__":
    cli("decode", main, __doc__)
