"""A small real world for the phone app's tests: the KPU central server, a village relay that
reaches it, a KPPS chair's phone (with its app) that reaches only the relay, and optionally a
witness's phone (with its app) that meets only the chair's phone. Every device is a real
`estafet` process on loopback; keys are passphrase-encrypted (the app unlocks them)."""

from __future__ import annotations

import json
import struct
import sys
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.cli.clikit import (
    MANIFEST,
    PASS,
    Proc,
    clean_env,
    codes,
    free_port,
    invoke,
    ok,
    spawn,
    wait_http,
)
from tests.kit import TPS_A


@dataclass
class Device:
    home: Path
    port: int
    app_port: int
    proc: Proc | None = None

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}/"


@dataclass
class World:
    base: Path
    central_url: str = ""
    procs: list[Proc] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, *args: str | Path) -> Proc:
        proc = spawn([sys.executable, "-m", "estafet.cli", *args], self.base / f"{name}.log",
                     clean_env(**self.env))  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def central(self) -> None:
        kpu = self.base / "kpu"
        ok(invoke("central", "init", "--home", kpu, "--manifest", MANIFEST))
        port = free_port()
        self.central_url = f"http://127.0.0.1:{port}"
        proc = self.start("central", "central", "serve", "--home", kpu, "--listen",
                          f"127.0.0.1:{port}", "--log-level", "WARNING")  # fmt: skip
        wait_http(proc, self.central_url + "/api/status")

    def unenrolled(self, name: str, provision: bool = True) -> Device:
        """A device that has a key but no certificate yet (and the KPU's provisioning file)."""
        home = self.base / name
        dev = Device(home, free_port(), free_port())
        ok(invoke("node", "init", "--home", home, "--listen", f"127.0.0.1:{dev.port}",
                  "--no-mdns", "--no-beacon"))  # fmt: skip
        if provision:
            trust = json.loads(ok(invoke("central", "trust", "--home", self.base / "kpu")))
            prov = {"central": self.central_url, "root_id": trust["root_id"], "name": "KPU"}
            (home / "provision.json").write_text(json.dumps(prov))
        dev.proc = self.start(name, "node", "run", "--home", home, "--app-listen",
                              f"127.0.0.1:{dev.app_port}")  # fmt: skip
        wait_page(dev.proc, dev.app_url)
        self.devices[name] = dev
        return dev

    def device(self, name: str, role: str, *peers: str, central: bool = False) -> Device:
        """Init and enroll a device of ``role`` (TPS roles for TPS_A), then run it with its app."""
        home = self.base / name
        dev = Device(home, free_port(), free_port())
        args = ["--central", self.central_url] if central else []
        ok(invoke("node", "init", "--home", home, "--listen", f"127.0.0.1:{dev.port}",
                  "--no-mdns", "--no-beacon", "--sync-interval", "0.3", *args,
                  *[a for p in peers for a in ("--peer", p)]))  # fmt: skip
        scope = ["--tps", TPS_A] if role not in ("relay", "gateway") else ["--count", "1"]
        made = codes(self.base / "kpu", role, *scope)[0]
        ok(invoke("node", "enroll", "--home", home, "--central", self.central_url,
                  "--code", made["code"], "--root-fingerprint", made["root"]))  # fmt: skip
        if not central:  # enrolment wrote the central URL: this device must hop, not call it
            cfg = (home / "config.toml").read_text()
            (home / "config.toml").write_text(
                "\n".join(ln for ln in cfg.splitlines() if not ln.startswith("central")) + "\n"
            )
        dev.proc = self.start(name, "node", "run", "--home", home, "--app-listen",
                              f"127.0.0.1:{dev.app_port}", "--log-level", "INFO")  # fmt: skip
        wait_page(dev.proc, dev.app_url)
        self.devices[name] = dev
        return dev


def get_page(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback only
        return bytes(r.read())


def wait_page(proc: Proc, url: str, timeout: float = 30) -> None:
    """Poll the app's page until it answers (the node is up: the app starts after it)."""
    wait_http(proc, url, timeout, fetch=get_page)


def png(width: int, height: int, level: int | None = None) -> bytes:
    """A real PNG: stripes (readable), or a flat grey ``level`` (0 = black)."""
    row = (
        bytes(((x // 7) % 2) * 200 + 30 for x in range(width))
        if level is None
        else bytes([level] * width)
    )
    raw = b"".join(b"\x00" + row for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))  # fmt: skip


__all__ = ["PASS", "Device", "World", "png"]
