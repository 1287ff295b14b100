"""Figures 7 and 8: the node daemon as a process: idle cost, and time until it is ready.

The real daemon, ``python -m estafet.cli node run --home H``, in a freshly enrolled relay home
with the default discovery settings (mDNS announce + browse, UDP beacon every 10 s, sync
scheduler every 5 s, no peers yet), listening on 127.0.0.1. Baseline, in the same run: the bare
process of ``bench/idle_baseline.py`` (the same third-party packages imported, an idle aiohttp
server and one zeroconf registration, nothing else).

* Figure 8: from ``Popen`` to the ``READY=1`` datagram on a ``NOTIFY_SOCKET`` this bench binds
  (the daemon sends it once its store is open and its socket bound; the baseline once its server
  is up). Median of 5 starts each (quick: 1), interleaved.
* Figure 7: both processes run side by side, idle, for 60 s (quick: 5 s) after a 2 s settle.
  CPU = utime + stime from ``/proc/PID/stat``; wake-ups = voluntary + nonvoluntary context
  switches summed over ``/proc/PID/task/*/status`` (threads that end inside the window drop out
  of the sum); peak RSS = ``VmHWM`` at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import BENCH, KECAMATAN, ROOT, World, cli, enroll_home, row, summarize

from estafet.relay.home import NodeConfig

TICK = os.sysconf("SC_CLK_TCK")


class Proc:
    """One process under test with its own NOTIFY_SOCKET."""

    def __init__(self, argv: list[str], tmp: Path, name: str) -> None:
        self.argv = argv
        self.name = name
        self.sock_path = tmp / f"notify-{name}-{time.monotonic_ns()}"
        self.log = tmp / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Spawn; return seconds until READY=1 arrived."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.sock_path))
        sock.settimeout(0.1)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path)}
        try:
            with self.log.open("ab") as log:
                t0 = time.perf_counter()
                self.popen = subprocess.Popen(self.argv, env=env, cwd=ROOT, stdout=log,
                                              stderr=subprocess.STDOUT)  # fmt: skip
            while True:
                try:
                    msg = sock.recv(4096)
                except TimeoutError:
                    msg = b""
                if b"READY=1" in msg.split(b"\n"):
                    return time.perf_counter() - t0
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited {self.popen.returncode}: "
                                       f"{self.log.read_text()[-2000:]}")  # fmt: skip
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"{self.name} not ready in {timeout} s")
        finally:
            sock.close()
            self.sock_path.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)

    def switches(self) -> int:
        return sum(self.thread_switches().values())

    def thread_switches(self) -> dict[str, int]:
        """Context switches so far per thread (``tid comm``)."""
        out = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                text = (task / "status").read_text()
                comm = (task / "comm").read_text().strip()
            except OSError:
                continue  # the thread ended meanwhile
            n = 0
            for line in text.splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(line.split()[1])
            out[f"{task.name} {comm}"] = n
        return out

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def threads(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/task").iterdir()))

    def stop(self) -> int:
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def node_home(world: World, tmp: Path, i: int) -> Path:
    home = tmp / f"home-{i}"
    config = NodeConfig(listen="127.0.0.1:0", scope="")  # defaults: mDNS, beacon, 5 s sync
    enroll_home(world, home, f"daemon-relay-{i}", "relay", (KECAMATAN,), config)
    return home


def node_argv(home: Path) -> list[str]:
    return [sys.executable, "-m", "estafet.cli", "node", "run", "--home", str(home)]


BASE_ARGV = [sys.executable, str(BENCH / "idle_baseline.py"), "127.0.0.1:0"]


def idle(node: Proc, base: Proc, settle: float, window: float) -> dict[str, dict[str, Any]]:
    time.sleep(settle)
    start = {p.name: (time.perf_counter(), p.cpu_seconds(), p.thread_switches())
             for p in (node, base)}  # fmt: skip
    time.sleep(window)
    out: dict[str, dict[str, Any]] = {}
    for p in (node, base):
        t0, c0, s0 = start[p.name]
        dt = time.perf_counter() - t0
        s1 = p.thread_switches()
        out[p.name] = {
            "seconds": dt,
            "cpu_percent": 100 * (p.cpu_seconds() - c0) / dt,
            "wakeups_per_s": (sum(s1.values()) - sum(s0.values())) / dt,
            "wakeups_per_s_by_thread": {t: (n - s0.get(t, 0)) / dt for t, n in s1.items()},
            "rss_peak_kb": p.status_kb("VmHWM"),
            "rss_kb": p.status_kb("VmRSS"),
            "threads": p.threads(),
        }
    return out


def main(quick: bool) -> dict[str, Any]:
    starts = 1 if quick else 5
    window = 5.0 if quick else 60.0
    settle = 0.5 if quick else 2.0
    world = World()
    tmp = Path(tempfile.mkdtemp(prefix="estafet-bench-daemon-"))
    ready: dict[str, list[float]] = {"node": [], "baseline": []}
    exits = []
    for i in range(starts):  # fresh homes, interleaved starts
        home = node_home(world, tmp, i)
        for name, argv in (("node", node_argv(home)), ("baseline", BASE_ARGV)):
            p = Proc(argv, tmp, name)
            try:
                ready[name].append(p.start())
            finally:
                exits.append(p.stop())
    home = node_home(world, tmp, starts)
    node, base = Proc(node_argv(home), tmp, "node"), Proc(BASE_ARGV, tmp, "baseline")
    try:
        node.start()
        base.start()
        usage = idle(node, base, settle, window)
    finally:
        exits += [node.stop(), base.stop()]
    if any(exits):
        raise RuntimeError(f"a process did not exit cleanly on SIGTERM: {exits} (logs in {tmp})")
    shutil.rmtree(tmp, ignore_errors=True)
    r = {k: summarize(v) for k, v in ready.items()}
    n, b = usage["node"], usage["baseline"]
    rss_ratio = n["rss_peak_kb"] / b["rss_peak_kb"]
    rows = [
        row("7", f"idle daemon CPU over {window:.0f} s", n["cpu_percent"], "% core",
            baseline=b["cpu_percent"], ratio=None, target="< 0.1% of a core",
            ok=n["cpu_percent"] < 0.1, quick=quick),
        row("7", "idle daemon wake-ups (all threads)", n["wakeups_per_s"], "/s",
            baseline=b["wakeups_per_s"], ratio=None, target="< 1 /s",
            ok=n["wakeups_per_s"] < 1.0, quick=quick,
            note=f"{n['threads']} threads vs {b['threads']}"),
        row("7", "idle daemon peak RSS (VmHWM)", n["rss_peak_kb"] / 1024, "MiB",
            baseline=b["rss_peak_kb"] / 1024, ratio=rss_ratio, target="<= 1.3x",
            ok=rss_ratio <= 1.3, quick=quick),
        row("8", "node run -> READY=1", r["node"]["median"], "s",
            baseline=r["baseline"]["median"], target="<= 1.5x",
            ok=r["node"]["median"] / r["baseline"]["median"] <= 1.5, quick=quick,
            spread=r["node"]["spread"]),
    ]  # fmt: skip
    return {"rows": rows, "ready_seconds": r, "idle": usage, "window_seconds": window,
            "settle_seconds": settle}  # fmt: skip


if __name__ == "__main__":
    cli("daemon", main, __doc__)
