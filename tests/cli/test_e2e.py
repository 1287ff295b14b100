"""End to end with the real `estafet` executable, each device its own process on loopback:
the KPU central server, a PPK gateway that reaches it, and a KPPS phone that reaches only the
gateway. The phone signs two results; they hop to the centre and signed receipts come back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from estafet.demo.forms import plausible_form
from estafet.demo.sheet import sheet_png
from tests.cli.clikit import (
    MANIFEST,
    PASS,
    Proc,
    clean_env,
    estafet_exe,
    free_port,
    get_json,
    spawn,
    wait_http,
    wait_until,
)
from tests.kit import TPS_A

BALLOTS = {"gubernur": [1, 2], "bupati": [1, 2, 3]}


class Estafet:
    """Runs the console script as a person would, with a passphrase file and a clean env."""

    def __init__(self, work: Path) -> None:
        self.exe = estafet_exe()
        self.work = work
        self.env = clean_env()
        self.procs: list[Proc] = []

    def __call__(self, *args: str | Path, timeout: float = 30) -> str:
        done = subprocess.run(
            [self.exe, *map(str, args)],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"estafet {' '.join(map(str, args[:2]))}: {done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stdout

    def start(self, name: str, *args: str | Path) -> Proc:
        proc = spawn([self.exe, *args], self.work / f"{name}.log", self.env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def test_results_hop_to_central_and_receipts_come_back(tmp_path: Path) -> None:
    run = Estafet(tmp_path)
    kpu, gw, phone = tmp_path / "kpu", tmp_path / "gateway", tmp_path / "phone"
    p_central, p_gw, p_phone = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{p_central}"
    pw_file = tmp_path / "passphrase"
    pw_file.write_text(PASS + "\n")
    try:
        # KPU IT officer
        run("central", "init", "--home", kpu, "--manifest", MANIFEST)
        trust = tmp_path / "trust.json"
        trust.write_text(run("central", "trust", "--home", kpu))
        chair = json.loads(run("central", "codes", "--home", kpu, "--role", "kpps-chair",
                               "--tps", TPS_A))["code"]  # fmt: skip
        gw_made = json.loads(run("central", "codes", "--home", kpu, "--role", "gateway",
                                 "--count", "1"))  # fmt: skip
        gw_code = gw_made["code"]
        central = run.start("central", "central", "serve", "--home", kpu,
                            "--listen", f"127.0.0.1:{p_central}")  # fmt: skip
        wait_http(central, url + "/api/status")

        # PPK operator: a gateway that reaches the central server
        run("node", "init", "--home", gw, "--listen", f"127.0.0.1:{p_gw}", "--central", url,
            "--no-mdns", "--no-beacon", "--no-passphrase", "--sync-interval", "0.3",
            "--name", "PPK Hampang")  # fmt: skip
        assert "enrolled as gateway" in run(
            "node", "enroll", "--home", gw, "--central", url, "--code", gw_code,
            "--root-fingerprint", gw_made["root"],
        )  # fmt: skip

        # KPPS chair: a phone that only meets the gateway; its key under a passphrase file
        run("node", "init", "--home", phone, "--listen", f"127.0.0.1:{p_phone}",
            "--peer", f"127.0.0.1:{p_gw}", "--no-mdns", "--no-beacon", "--sync-interval", "0.3",
            "--passphrase-file", pw_file)  # fmt: skip
        run.env.pop("ESTAFET_PASSPHRASE")
        run.env["ESTAFET_PASSPHRASE_FILE"] = str(pw_file)
        assert f"enrolled as kpps-chair for {TPS_A}" in run(
            "node", "enroll", "--home", phone, "--central", url, "--code", chair, "--trust", trust
        )
        ids = []
        for i, (election, ballots) in enumerate(BALLOTS.items()):
            form = tmp_path / f"{election}.json"
            doc = plausible_form(election, TPS_A, ballots, i)
            form.write_text(json.dumps(doc))
            photos: list[str | Path] = []
            for sheet in (1, 2, 3):
                f = tmp_path / f"{election}-{sheet}.png"
                f.write_bytes(
                    sheet_png(TPS_A, election, sheet, doc["votes"], doc["valid"], doc["invalid"])
                )
                photos += ["--photo", f]
            ids.append(run("result", "submit", "--home", phone, "--form", form, *photos).strip())
        pending = json.loads(run("node", "status", "--home", phone, "--json"))
        assert {o["id"]: o["state"] for o in pending["objects"]} == dict.fromkeys(ids, "pending")

        gateway = run.start("gateway", "node", "run", "--home", gw)
        wait_http(gateway, f"http://127.0.0.1:{p_gw}/v1/status")
        kpps = run.start("phone", "node", "run", "--home", phone, "--central", "")
        wait_http(kpps, f"http://127.0.0.1:{p_phone}/v1/status")

        def phone_delivered() -> bool:
            counts: dict[str, Any] = get_json(f"http://127.0.0.1:{p_phone}/v1/status")["objects"]
            return bool(counts["delivered"] >= len(ids))

        wait_until("receipts back on the phone", phone_delivered, 30, run.procs)

        st = json.loads(run("node", "status", "--home", phone, "--json"))
        held = {o["id"]: o for o in st["objects"]}
        for rid in ids:
            assert held[rid]["state"] == "delivered", held[rid]
            receipt = held[rid]["receipt"]
            assert receipt is not None and receipt["status"] == "accepted", receipt
            assert len(receipt["log_hash"]) == 64
        assert len({held[r]["receipt"]["log_index"] for r in ids}) == len(ids)
        assert st["counts"]["delivered"] == len(ids) and st["counts"]["pending"] == 0

        # the KPU sees both results counted for the TPS's kecamatan
        status = get_json(url + "/api/status")
        for e in status["elections"]:
            assert e["tps_accepted"] == 1, e
            hampang = next(k for k in e["kecamatan"] if k["code"] == TPS_A[:6])
            assert hampang["tps_accepted"] == 1
            assert sum(e["tally"].values()) == e["valid"]
        assert status["conflicts"] == []
        # the phone saves the peers it met when it stops (`node peers` reads them)
        kpps.stop()
        peers = json.loads(run("node", "peers", "--home", phone, "--json"))["peers"]
        assert [p["role"] for p in peers if p["addr"].endswith(f":{p_gw}")] == ["gateway"], peers
    finally:
        run.stop_all()
    for p in run.procs:
        assert p.popen.returncode == 0, f"{p.name} exited {p.popen.returncode}\n{p.output()}"
