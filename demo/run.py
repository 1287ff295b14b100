"""``estafet demo``: the whole journey on this machine, with real processes on loopback.

A central server loaded with the Kotabaru manifest; a PPK gateway that reaches it; a village
relay; and KPPS phones of no-signal TPS in Hampang. Every device is enrolled with one-time codes
and runs as its own ``estafet node run`` process. Phones reach only the relay. The relay then
"walks" to the PPK office (it is restarted with the gateway as its peer), the gateway pushes to
the central server, receipts come back, the relay walks home, and every phone ends holding a
signed receipt for each of its results. Exit status 0 only if everything was delivered.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .forms import make_png, plausible_form
from .trail import hampang, paper_trail

PASSPHRASE = "demo-passphrase-not-secret"  # noqa: S105 - a demo on loopback, by design
PACE = {"fast": 0.5, "normal": 1.0, "slow": 3.0}


def data_dir() -> Path:
    return Path(str(resources.files("estafet.demo") / "data" / "kotabaru"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_tps(n: int) -> list[str]:
    with (data_dir() / "no_signal.csv").open(encoding="utf-8") as fh:
        codes = [r["code"] for r in csv.DictReader(ln for ln in fh if not ln.startswith("#"))]
    hampang = [c for c in codes if c.startswith("630214")]
    pool = hampang + [c for c in codes if c not in hampang]
    return pool[:n]


@dataclass
class Proc:
    name: str
    home: Path
    port: int
    popen: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Demo:
    def __init__(self, work: Path, n_tps: int, pace: float, say: Callable[[str], None]) -> None:
        self.work = work
        self.n = n_tps
        self.pace = pace
        self.say = say
        self.env = {
            **os.environ,
            "ESTAFET_PASSPHRASE": PASSPHRASE,
            "ESTAFET_ROOT_PASSPHRASE": PASSPHRASE + "-root",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[Proc] = []
        self.central = Proc("central", work / "central", free_port())
        self.gateway = Proc("gateway", work / "gateway", free_port())
        self.relay = Proc("relay", work / "relay", free_port())
        self.tps = pick_tps(n_tps)
        self.phones = [Proc(f"phone-{t[-6:]}", work / f"phone-{t}", free_port()) for t in self.tps]
        self.witness = Proc("saksi", work / "saksi", free_port())
        self.ppk = Proc("ppk", work / "ppk", free_port())
        self.result_ids: dict[tuple[str, str], str] = {}
        self.app_port = free_port()

    @property
    def app_url(self) -> str:
        """The officer's app of the first demo phone (the others run without one)."""
        return f"http://127.0.0.1:{self.app_port}/"

    def app_args(self, p: Proc) -> list[str]:
        if self.phones and p is self.phones[0]:
            return ["--app-listen", f"127.0.0.1:{self.app_port}"]
        return ["--no-app"]

    # --- process plumbing -------------------------------------------------------------
    def cli(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "estafet.cli", *args]
        done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            cmd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"`estafet {' '.join(args[:2])}` failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, p: Proc, *args: str) -> None:
        log = (self.work / f"{p.name}.log").open("ab")
        if args[:2] == ("node", "run"):
            args = (*args, *self.app_args(p))
        cmd = [sys.executable, "-m", "estafet.cli", *args]
        p.popen = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)  # noqa: S603  # noqa: S603
        if p not in self.procs:
            self.procs.append(p)
        self.wait_http(p)

    def wait_http(self, p: Proc, timeout: float = 30) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if p.popen is not None and p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited; see {self.work / (p.name + '.log')}")
            try:
                self.get_json(p, "/v1/status" if p is not self.central else "/api/status")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{p.name} did not come up in {timeout}s")

    def get_json(self, p: Proc, path: str) -> Any:
        with urllib.request.urlopen(p.url + path, timeout=5) as r:  # noqa: S310 - loopback
            return json.load(r)

    def stop(self, p: Proc) -> None:
        if p.popen is not None and p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
            try:
                p.popen.wait(15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.pace)

    # --- the story ----------------------------------------------------------------------
    def setup(self) -> None:
        self.say(f"KPU: central server initialised with the Kotabaru manifest ({self.work})")
        self.cli(
            "central",
            "init",
            "--home",
            str(self.central.home),
            "--manifest",
            str(data_dir() / "elections.toml"),
        )
        codes = self.cli(
            "central",
            "codes",
            "--home",
            str(self.central.home),
            "--role",
            "kpps-chair",
            *[a for t in self.tps for a in ("--tps", t)],
        )
        chair = {json.loads(line)["tps"]: json.loads(line)["code"] for line in codes.splitlines()}
        relay_code = json.loads(
            self.cli(
                "central",
                "codes",
                "--home",
                str(self.central.home),
                "--role",
                "relay",
                "--count",
                "1",
            )
        )["code"]
        gw_code = json.loads(
            self.cli(
                "central",
                "codes",
                "--home",
                str(self.central.home),
                "--role",
                "gateway",
                "--count",
                "1",
            )
        )["code"]
        self.start(
            self.central,
            "central",
            "serve",
            "--home",
            str(self.central.home),
            "--listen",
            f"127.0.0.1:{self.central.port}",
        )
        self.say(
            f"KPU: central server up at {self.central.url}/ ; "
            f"enrolling {len(self.phones)} KPPS phones, 1 relay, 1 gateway"
        )
        for p, code in [
            (self.gateway, gw_code),
            (self.relay, relay_code),
            *[(ph, chair[t]) for ph, t in zip(self.phones, self.tps, strict=True)],
        ]:
            peers = ["--peer", f"127.0.0.1:{self.relay.port}"] if p in self.phones else []
            self.cli(
                "node",
                "init",
                "--home",
                str(p.home),
                "--listen",
                f"127.0.0.1:{p.port}",
                "--no-mdns",
                "--no-beacon",
                *([] if p is self.phones[0] else ["--no-passphrase"]),  # its app asks for it
                "--sync-interval",
                str(max(0.3, self.pace)),
                *peers,
            )
            self.cli(
                "node",
                "enroll",
                "--home",
                str(p.home),
                "--central",
                self.central.url,
                "--code",
                code,
                "--trust",
                str(self.central.home / "trust.json"),
            )

    def submit(self) -> None:
        ballots = {"gubernur": [1, 2], "bupati": [1, 2, 3]}
        for i, (ph, tps) in enumerate(zip(self.phones, self.tps, strict=True)):
            for election, nums in ballots.items():
                form = ph.home / f"{election}.json"
                form.write_text(json.dumps(plausible_form(election, tps, nums, i)))
                photos = []
                for sheet in (1, 2, 3):
                    f = ph.home / f"{election}-sheet{sheet}.png"
                    f.write_bytes(make_png(f"{tps}-{election}-{sheet}"))
                    photos += ["--photo", str(f)]
                out = self.cli(
                    "result", "submit", "--home", str(ph.home), "--form", str(form), *photos
                )
                self.result_ids[(tps, election)] = out.strip().splitlines()[-1]
            self.say(f"KPPS {tps}: signed 2 results with 6 photos (no signal here)")

    def delivered(self, p: Proc) -> tuple[int, int]:
        st = self.get_json(p, "/v1/status")["objects"]
        return st["delivered"], st["pending"] + st["delivered"] + st["conflict"] + st["rejected"]

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if cond():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for: {what}")

    def run(self) -> dict[str, Any]:
        self.setup()
        self.submit()
        paper_trail(self)
        self.start(self.gateway, "node", "run", "--home", str(self.gateway.home))
        self.start(self.relay, "node", "run", "--home", str(self.relay.home), "--central", "")
        for ph in self.phones:
            self.start(ph, "node", "run", "--home", str(ph.home), "--central", "")
        want = 2 * len(self.phones)
        self.wait_for("relay holds every result", lambda: self.relay_results() >= want, 120)
        self.say(f"village relay: holds all {want} results and their photos")
        self.sleep(1)
        self.say("village relay: walks to the PPK office (meets the gateway)")
        self.stop(self.relay)
        self.start(
            self.relay,
            "node",
            "run",
            "--home",
            str(self.relay.home),
            "--central",
            "",
            "--peer",
            f"127.0.0.1:{self.gateway.port}",
        )
        self.wait_for("central accepts every result", lambda: self.accepted() >= want, 180)
        self.say(f"central: accepted {self.accepted()} results; receipts travel back")
        self.wait_for("every photo at the central server", lambda: self.photos_done() >= want, 180)
        self.say(f"central: all {3 * want} photos arrived and hash-checked")
        self.wait_for(
            "relay holds every receipt", lambda: self.delivered(self.relay)[0] >= want, 120
        )
        self.sleep(1)
        self.say("village relay: walks back to the village hotspot")
        self.stop(self.relay)
        self.start(self.relay, "node", "run", "--home", str(self.relay.home), "--central", "")
        self.wait_for(
            "every phone holds its receipts",
            lambda: all(self.delivered(p)[0] >= 2 for p in self.phones),
            120,
        )
        for ph in self.phones:
            done, held = self.delivered(ph)
            self.say(f"KPPS phone {ph.name}: delivered {done}/{held} objects ✓")
        self.wait_for("the D.Hasil of Hampang checked", lambda: hampang(self)["state"] != "none"
                      and hampang(self)["state"] != "incomplete", 60)  # fmt: skip
        h = hampang(self)
        self.say(f"central: D.Hasil of Hampang (bupati) {h['state']}: signed {h['dhasil']['votes']}"
                 f", centre's sum {h['centre']['votes']}")  # fmt: skip
        return dict(self.get_json(self.central, "/api/status"))

    def relay_results(self) -> int:
        st = self.get_json(self.relay, "/v1/status")["objects"]
        return int(st["pending"] + st["delivered"])

    def photos_done(self) -> int:
        st = self.get_json(self.central, "/api/status")
        return sum(int(e["tps_photos_complete"]) for e in st["elections"])

    def accepted(self) -> int:
        st = self.get_json(self.central, "/api/status")
        return sum(int(e["tps_accepted"]) for e in st["elections"])


def run_demo(
    n_tps: int, pace: str, keep: bool, workdir: Path | None, say: Callable[[str], None]
) -> int:
    work = workdir or Path(tempfile.mkdtemp(prefix="estafet-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work, n_tps, PACE[pace], say)
    t0 = time.monotonic()
    try:
        status = demo.run()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        say(f"DEMO FAILED: {exc}")
        say(f"logs are in {work}")
        demo.stop_all()
        return 1
    say(f"all {2 * n_tps} results delivered and receipted in {time.monotonic() - t0:.1f}s")
    for e in status["elections"]:
        tally = ", ".join(f"paslon {k}: {v}" for k, v in sorted(e["tally"].items()))
        say(f"tally {e['kind']} ({e['tps_accepted']}/{e['tps_expected']} TPS): {tally}")
    say(f"dashboard: {demo.central.url}/")
    say(f"KPPS chair's phone app: {demo.app_url} (PIN: {PASSPHRASE})")
    if keep:
        for p in demo.procs:
            if p is not demo.central and p is not demo.phones[0]:
                demo.stop(p)
        say("central server and the first phone (with its app) kept running; Ctrl-C stops")
        try:
            while demo.central.popen and demo.central.popen.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    demo.stop_all()
    if workdir is None and not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0
