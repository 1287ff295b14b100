"""Shared pieces of the benchmarks: a seeded KPU world on the real clock, enrolled node homes,
in-process nodes, repeat statistics, the row format of the summary, tables and JSON.

Every bench module has ``main(quick: bool) -> dict`` returning ``{"rows": [...], ...}`` (one row
per measured figure, see :func:`row`) and a command line (``--quick``, ``--json``). Rows carry a
``pass`` of True/False against the target, or None in quick mode (smoke only: quick runs are too
small for the targets to mean anything).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estafet.central.manifest_file import load_manifest_file
from estafet.crypto.keyfile import plain_key
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import certify, seal
from estafet.demo.forms import example_form
from estafet.demo.run import data_dir
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import Envelope, ManifestBody, ResultBody
from estafet.protocol.photos import PhotoRef
from estafet.relay.enrollment import Materials, install
from estafet.relay.home import Home, NodeConfig, write_private
from estafet.relay.node import Node

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DAY = 86_400
PHOTO_BYTES = 500_000
KECAMATAN = "630206"  # Pulaulaut Utara, the largest kecamatan of the fixture: 76 TPS
JPEG_HEAD = b"\xff\xd8\xff\xe0"


# --- the world ---------------------------------------------------------------------------
def seeded_key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"estafet-bench/" + label.encode()).digest())


def kotabaru_manifest() -> Manifest:
    return load_manifest_file(data_dir() / "elections.toml")


def photo(tag: str, size: int = PHOTO_BYTES) -> bytes:
    """Incompressible bytes with a JPEG head (relays never decode photos, only hash them)."""
    return (JPEG_HEAD + random.Random(tag).randbytes(size))[:size]


@dataclass
class World:
    """Root, issuer and manifest of a KPU, on the real clock (a daemon checks certificates
    against ``time.time()``), with enrolled officers and signed results on demand."""

    now: int = field(default_factory=lambda: int(time.time()))
    root: SigningKey = field(default_factory=lambda: seeded_key("root"))
    issuer: SigningKey = field(default_factory=lambda: seeded_key("issuer"))
    manifest: Manifest = field(default_factory=kotabaru_manifest)
    serial: int = 1
    issuer_cert: Envelope = field(init=False)
    manifest_env: Envelope = field(init=False)
    _officers: dict[str, tuple[SigningKey, Envelope]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.issuer_cert = certify(
            self.root, subject=self.issuer.public, role="issuer", scope=("6302",),
            elections=("gubernur", "bupati"), serial=self._serial(),
            not_before=self.now - 30 * DAY, not_after=self.now + 365 * DAY,
            label="central issuer",
        )  # fmt: skip
        self.manifest_env = seal("manifest", ManifestBody(self.manifest), self.root, self.now)

    def _serial(self) -> int:
        self.serial += 1
        return self.serial

    def officer(self, label: str, role: str, scope: tuple[str, ...]) -> tuple[SigningKey, Envelope]:
        if label not in self._officers:
            key = seeded_key(label)
            cert = certify(
                self.issuer, subject=key.public, role=role, scope=scope,
                elections=("gubernur", "bupati"), serial=self._serial(),
                not_before=self.now - DAY, not_after=self.now + 14 * DAY, label=label,
            )  # fmt: skip
            self._officers[label] = (key, cert)
        return self._officers[label]

    def tps_codes(self, prefix: str) -> list[str]:
        return sorted(c for c in self.manifest.tps if c.startswith(prefix))

    def result(
        self, tps: str, election: str, photos: list[bytes] | None = None
    ) -> tuple[Envelope, list[bytes]]:
        """A valid signed result of ``tps`` by its KPPS chair, with three photos (made from
        the TPS code unless given; ``photos=[]`` gives 3 tiny ones, for numbers-only)."""
        key, cert = self.officer(f"chair-{tps}", "kpps-chair", (tps,))
        if photos is None:
            photos = [photo(f"{tps}-{election}-{i}") for i in (1, 2, 3)]
        elif not photos:
            photos = [photo(f"{tps}-{election}-{i}", 1000) for i in (1, 2, 3)]
        form = parse_form(example_form(election, tps))
        _, warn = check_form(form, self.manifest)
        refs = tuple(PhotoRef(i, hashlib.sha256(p).digest(), len(p), "jpeg")
                     for i, p in enumerate(photos, 1))  # fmt: skip
        body = ResultBody(form, refs, tuple(sorted(w.rule for w in warn)))
        chain = (cert.encode(), self.issuer_cert.encode())
        return seal("result", body, key, self.now, chain=chain), photos


def enroll_home(world: World, home: Path, label: str, role: str, scope: tuple[str, ...],
                config: NodeConfig) -> SigningKey:  # fmt: skip
    """An enrolled node home (plain key file, certificate, manifest) as `node enroll` leaves it."""
    key, cert = world.officer(label, role, scope)
    Home(home).save_config(config)
    write_private(Home(home).key_file, plain_key(key))
    materials = Materials(certificate=cert.encode(), issuer_certificate=world.issuer_cert.encode(),
                          root_public=world.root.public, manifest=world.manifest_env.encode(),
                          revocation=None)  # fmt: skip
    install(home, key, materials, None, now=world.now)
    return key


def loopback_config(**over: Any) -> NodeConfig:
    cfg: dict[str, Any] = {"listen": "127.0.0.1:0", "mdns": False, "beacon": False,
                           "sync_interval": 3600.0}  # fmt: skip
    cfg.update(over)
    return NodeConfig(**cfg)


def make_node(world: World, home: Path, label: str, role: str = "relay",
              scope: tuple[str, ...] = (KECAMATAN,), **cfg: Any) -> Node:  # fmt: skip
    config = loopback_config(**cfg)
    key = enroll_home(world, home, label, role, scope, config)
    return Node(home, config, key, world.root.public)


async def start_quiet(node: Node) -> None:
    """Start a node and stop its scheduler, so the bench alone decides which sessions run
    (otherwise a peer that just contacted it would be synced back at once)."""
    await node.start()
    for task in list(node._tasks):
        if task.get_name() == "scheduler":
            task.cancel()


# --- statistics and reporting --------------------------------------------------------------
def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread of repeated measurements."""
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med else 0.0,
        "n": len(values),
        "values": values,
    }


def row(figure: str, name: str, measured: float | None, unit: str, *,
        baseline: float | None = None, ratio: float | None = None, target: str,
        ok: bool | None, quick: bool, spread: float | None = None,
        note: str = "") -> dict[str, Any]:  # fmt: skip
    """One line of the summary. ``ok`` is the verdict against the target; None in quick mode."""
    if ratio is None and baseline:
        ratio = (measured or 0.0) / baseline
    return {
        "figure": figure,
        "name": name,
        "measured": measured,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "pass": None if quick else ok,
        "spread": spread,
        "note": note,
    }


def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.4f}"
    return f"{v:.2e}"


def verdict(r: dict[str, Any]) -> str:
    return {True: "PASS", False: "MISSED", None: "-"}[r["pass"]]


def print_rows(rows: list[dict[str, Any]], title: str = "") -> None:
    if title:
        print(title)
    head = (f"{'fig':<4} {'what':<44} {'measured':>12} {'unit':<8} {'baseline':>12} "
            f"{'ratio':>8} {'spread':>7} {'target':<22} {'verdict':<6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        spread = f"{r['spread'] * 100:.0f}%" if r.get("spread") is not None else "-"
        print(f"{r['figure']:<4} {r['name'][:44]:<44} {fmt_num(r['measured']):>12} "
              f"{r['unit'][:8]:<8} {fmt_num(r['baseline']):>12} {fmt_num(r['ratio']):>8} "
              f"{spread:>7} {r['target'][:22]:<22} {verdict(r):<6}")  # fmt: skip


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Path):
        return str(v)
    return str(v)


def cli(name: str, main: Callable[[bool], dict[str, Any]], doc: str | None) -> None:
    """The command line every bench module shares: run, print the rows, write the JSON."""
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small and fast")
    parser.add_argument("--json", type=Path, default=RESULTS / f"{name}.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    report = main(args.quick)
    report.setdefault("benchmark", name)
    report["quick"] = args.quick
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["machine"] = machine()
    print_rows(report["rows"])
    write_json(args.json, report)
    print(f"({report['seconds']} s) wrote {args.json}")
    sys.exit(0)
