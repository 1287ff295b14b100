"""The village testbed: real ``estafet`` daemons as separate processes on separate lab hosts.

Two layers:

* :class:`Kit` (built once per test session, ~15 s): with the real CLI, a central home is
  initialised with the Kotabaru manifest and served on a lab host; node homes for the KPPS chairs
  of five no-signal Hampang TPS (phones), a village relay and two PPK gateways are made with
  ``node init`` and enrolled ONLINE with one-time codes over an enrollment bridge; every phone
  then signs two results (gubernur, bupati) with three generated photos each (``result
  submit``). A clean (enrolled, nothing signed) copy of the first phone is kept for the
  stolen-key scenario.
* :class:`Village` (one per scenario): copies the kit into the scenario's work dir, builds the
  topology on a fresh :class:`~tests.net.netlab.Lab` (a central host on the ``uplink`` bridge,
  a gateway on the ``ppk`` LAN and ``uplink``, a relay and phones on the village ``hotspot``),
  starts ``estafet central serve`` / ``estafet node run`` daemons inside the hosts via
  ``lab.popen`` (so the lab kills them whatever happens), and observes them FROM INSIDE the
  namespaces: each daemon's ``/v1/status`` and the central's ``/api/status`` are fetched by a
  worker thread that has joined the host's network namespace (``setns``), ``estafet node status
  --json`` and ``node peers --json`` run as CLI processes, stores are read with sqlite3.

Nodes get no ``--peer``: phones, relay and gateway find each other by mDNS and the UDP beacon.
Every node listens on 0.0.0.0:7420 inside its own namespace, the central on 0.0.0.0:8443.
Traffic goes only to addresses inside the lab (never from the test's own namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estafet.demo.forms import plausible_form
from estafet.demo.run import data_dir, pick_tps
from estafet.protocol import codec

from .netlab import REPO, Host, Lab

PY = sys.executable
PASSPHRASE = "village-testbed-passphrase"
NODE_PORT = 7420
CENTRAL_PORT = 8443
SYNC_INTERVAL = 0.5
BALLOTS = {"gubernur": [1, 2], "bupati": [1, 2, 3]}
ENV = {
    **os.environ,
    "ESTAFET_PASSPHRASE": PASSPHRASE,
    "ESTAFET_ROOT_PASSPHRASE": PASSPHRASE + "-root",
    "PYTHONUNBUFFERED": "1",
}
for _var in ("ESTAFET_HOME", "STATE_DIRECTORY", "ESTAFET_PASSPHRASE_FILE"):
    ENV.pop(_var, None)


def photo_bytes(seed: str, size: int) -> bytes:
    """A JPEG-looking photo of exactly ``size`` bytes (magic, incompressible body, EOI)."""
    body = hashlib.shake_256(seed.encode()).digest(size - 6)
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def photo_size(seed: str) -> int:
    """50..90 KB, fixed per seed."""
    return 50_000 + int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % 40_000


def estafet(*args: str) -> list[str]:
    return [PY, "-m", "estafet.cli", *args]


# -- running code inside a network namespace from this process ----------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _enter_netns(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class InNetns:
    """A worker thread living in one host's network namespace: sockets it opens are the host's.
    (setns of CLONE_NEWNET affects only the calling thread.)"""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.pool = ThreadPoolExecutor(
            1, thread_name_prefix=f"ns-{ns}", initializer=_enter_netns, initargs=(ns,)
        )

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30) -> Any:
        return self.pool.submit(fn, *args).result(timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def http_json(url: str, timeout: float = 5) -> Any:
    with _OPENER.open(url, timeout=timeout) as r:
        return json.load(r)


def http_request(
    url: str,
    body: bytes | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- the kit: enrolled homes and signed results, built once --------------------------------------


@dataclass
class Result:
    """A result signed by an honest officer on a phone."""

    id: str
    phone: str
    tps: str
    election: str
    photos: list[str] = field(default_factory=list)  # sha256 hex of the three sheets


class Kit:
    """Enrolled homes, built with the real CLI over a lab bridge (see the module docstring)."""

    PHONES = 5

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tps = pick_tps(self.PHONES)
        self.phones = [f"phone{i}" for i in range(self.PHONES)]
        self.nodes = ["relay", "gateway", "gateway2", "ppk", *self.phones]
        self.serial: dict[str, int] = {}
        self.key: dict[str, str] = {}
        self.results: dict[str, list[Result]] = {p: [] for p in self.phones}
        self.build_seconds = 0.0

    def home(self, name: str) -> Path:
        return self.root / name

    @property
    def root_public(self) -> bytes:
        doc = json.loads((self.home("central") / "trust.json").read_text())
        return bytes.fromhex(doc["root_public"])

    def tps_of(self, phone: str) -> str:
        return self.tps[self.phones.index(phone)]

    def build(self) -> Kit:
        t0 = time.monotonic()
        central = self.home("central")
        run_cli(
            "central",
            "init",
            "--home",
            str(central),
            "--manifest",
            str(data_dir() / "elections.toml"),
        )
        codes: dict[str, str] = {}
        out = run_cli(
            "central",
            "codes",
            "--home",
            str(central),
            "--role",
            "kpps-chair",
            *[a for t in self.tps for a in ("--tps", t)],
        )
        by_tps = {json.loads(ln)["tps"]: json.loads(ln)["code"] for ln in out.splitlines()}
        root = json.loads(out.splitlines()[0])["root"]  # the fingerprint printed on the sheet
        for phone, tps in zip(self.phones, self.tps, strict=True):
            codes[phone] = by_tps[tps]
        for role, names in (
            ("relay", ["relay"]),
            ("gateway", ["gateway", "gateway2"]),
            ("ppk", ["ppk"]),  # the PPK of Hampang (issue 13): corrections and the D.Hasil
        ):
            scope = ["--scope", "630214"] if role == "ppk" else []
            out = run_cli(
                "central",
                "codes",
                "--home",
                str(central),
                "--role",
                role,
                "--count",
                str(len(names)),
                *scope,
            )
            for name, ln in zip(names, out.splitlines(), strict=True):
                codes[name] = json.loads(ln)["code"]
        with Lab() as lab:
            enroll = lab.bridge("enroll")
            kpu, desk = lab.host("kpu"), lab.host("desk")
            ip = lab.attach(kpu, enroll)
            lab.attach(desk, enroll)
            log = (self.root / "kit-central.log").open("ab")
            proc = lab.popen(
                kpu,
                estafet(
                    "central", "serve", "--home", str(central), "--listen", f"{ip}:{CENTRAL_PORT}"
                ),
                env=ENV,
                stdout=log,
                stderr=log,
            )
            log.close()
            url = f"http://{ip}:{CENTRAL_PORT}"
            caller = InNetns(desk.ns)
            try:
                wait_for(
                    lambda: _answers(caller, url + "/api/status"),
                    30,
                    "the kit's central server answers",
                    proc,
                )

                def enroll_one(name: str) -> None:
                    h = str(self.home(name))
                    lab.run(
                        desk,
                        estafet(
                            "node",
                            "init",
                            "--home",
                            h,
                            "--listen",
                            f"0.0.0.0:{NODE_PORT}",
                            "--no-passphrase",
                            "--sync-interval",
                            str(SYNC_INTERVAL),
                        ),
                        env=ENV,
                        timeout=60,
                    )
                    done = lab.run(
                        desk,
                        estafet(
                            "node",
                            "enroll",
                            "--home",
                            h,
                            "--central",
                            url,
                            "--code",
                            codes[name],
                            "--root-fingerprint",
                            root,
                        ),
                        env=ENV,
                        timeout=60,
                    )
                    m = re.search(r"certificate serial (\d+)", done.stdout)
                    assert m, done.stdout + done.stderr
                    self.serial[name] = int(m.group(1))
                    if name in self.phones:
                        if name == self.phones[0]:
                            shutil.copytree(self.home(name), self.home(name + "-clean"))
                        self._submit(name)

                with ThreadPoolExecutor(3) as pool:
                    list(pool.map(enroll_one, self.nodes))
            finally:
                caller.close()
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    lab.kill9(proc)
        for name in self.nodes:
            self.key[name] = node_key(self.home(name))
        self.build_seconds = time.monotonic() - t0
        return self

    def save(self) -> None:
        meta = {
            "serial": self.serial,
            "key": self.key,
            "tps": self.tps,
            "results": {p: [vars(r) for r in rs] for p, rs in self.results.items()},
        }
        (self.root / "kit.json").write_text(json.dumps(meta))

    @classmethod
    def cached(cls, root: Path) -> Kit:
        """Load a kit saved in ``root`` (VILLAGE_KIT, for iterating on one scenario), else build."""
        kit = cls(root)
        if (root / "kit.json").is_file():
            meta = json.loads((root / "kit.json").read_text())
            kit.serial, kit.key, kit.tps = meta["serial"], meta["key"], meta["tps"]
            kit.results = {p: [Result(**r) for r in rs] for p, rs in meta["results"].items()}
            return kit
        root.mkdir(parents=True, exist_ok=True)
        kit.build()
        kit.save()
        return kit

    def _submit(self, phone: str) -> None:
        i = self.phones.index(phone)
        tps = self.tps[i]
        home = self.home(phone)
        for election, nums in BALLOTS.items():
            form = home / f"form-{election}.json"
            form.write_text(json.dumps(plausible_form(election, tps, nums, i)))
            args, shas = [], []
            for sheet in (1, 2, 3):
                seed = f"{tps}-{election}-{sheet}"
                data = photo_bytes(seed, photo_size(seed))
                f = home / f"photo-{election}-{sheet}.jpg"
                f.write_bytes(data)
                args += ["--photo", str(f)]
                shas.append(hashlib.sha256(data).hexdigest())
            rid = run_cli(
                "result", "submit", "--home", str(home), "--form", str(form), *args
            ).strip()
            self.results[phone].append(Result(rid, phone, tps, election, shas))


def node_key(home: Path) -> str:
    """The node's key id (hex), read from its store's certificate."""
    from estafet.crypto.keys import key_id
    from estafet.protocol.objects import CertificateBody, decode_envelope

    with contextlib.closing(sqlite3.connect(home / "store.db")) as db:
        cert = db.execute("SELECT value FROM meta WHERE key = 'certificate'").fetchone()[0]
        raw = db.execute("SELECT raw FROM objects WHERE id = ?", [bytes.fromhex(cert)]).fetchone()
    body = decode_envelope(bytes(raw[0])).body
    assert isinstance(body, CertificateBody)
    return key_id(body.subject).hex()


def run_cli(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        estafet(*args),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"`estafet {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def _answers(caller: InNetns, url: str) -> bool:
    try:
        caller.call(http_json, url, 2, timeout=10)
        return True
    except Exception:
        return False


def wait_for(
    cond: Callable[[], Any],
    timeout: float,
    what: str,
    proc: subprocess.Popen[Any] | None = None,
    every: float = 0.25,
    diag: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for: {what}")
        if time.monotonic() > deadline:
            extra = ("\n" + diag()) if diag else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}{extra}")
        time.sleep(every)


# -- a scenario's village ------------------------------------------------------------------------


@dataclass
class Device:
    name: str
    role: str  # central, gateway, relay, kpps-chair (phones), thief
    home: Path
    host: Host | None = None
    tps: str = ""
    key: str = ""
    serial: int = 0
    results: list[Result] = field(default_factory=list)
    proc: subprocess.Popen[Any] | None = None
    args: list[str] = field(default_factory=list)
    wrap: Callable[[list[str]], list[str]] | None = None
    private_mounts: bool = False  # home only visible inside the process's mount namespace
    starts: int = 0

    @property
    def port(self) -> int:
        return CENTRAL_PORT if self.role == "central" else NODE_PORT

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def path(self, *parts: str) -> Path:
        """A file of the home as this test process can read it (through /proc/PID/root when
        the home is a mount private to the daemon)."""
        base = self.home
        if self.private_mounts and self.alive:
            assert self.proc is not None
            base = Path(f"/proc/{self.proc.pid}/root") / str(self.home).lstrip("/")
        return base.joinpath(*parts)


class Village:
    """One scenario's world on a fresh lab; see the module docstring."""

    def __init__(self, lab: Lab, kit: Kit, work: Path, *, phones: int | None = None) -> None:
        self.lab = lab
        self.kit = kit
        self.work = work
        self.t0 = time.monotonic()
        work.mkdir(parents=True, exist_ok=True)
        self.devices: dict[str, Device] = {}
        self._ns: dict[str, InNetns] = {}
        self._lock = threading.Lock()
        self.root_public = kit.root_public
        self.central = self._copy("central", "central")
        self.gateway = self._copy("gateway", "gateway")
        self.relay = self._copy("relay", "relay")
        n = kit.PHONES if phones is None else phones
        self.phones = [self._copy(p, "kpps-chair") for p in kit.phones[:n]]
        self.hotspot = lab.bridge("hotspot")
        self.ppk = lab.bridge("ppk")
        self.uplink = lab.bridge("uplink")
        self.central.host = lab.host("kpu")
        lab.attach(self.central.host, self.uplink)

    # -- building --------------------------------------------------------------------------
    def _copy(self, kit_name: str, role: str, name: str | None = None) -> Device:
        name = name or kit_name
        home = self.work / name
        shutil.copytree(self.kit.home(kit_name), home, symlinks=True)
        dev = Device(name, role, home)
        base = kit_name.removesuffix("-clean")  # the enrolled copy made before any result
        if base in self.kit.key:
            dev.key = self.kit.key[base]
            dev.serial = self.kit.serial[base]
        if kit_name in self.kit.phones:
            dev.tps = self.kit.tps_of(kit_name)
            dev.results = list(self.kit.results[kit_name])
        self.devices[name] = dev
        return dev

    def add_device(self, kit_name: str, role: str, name: str) -> Device:
        return self._copy(kit_name, role, name)

    def place(self, dev: Device, *bridges: Any) -> Device:
        """Make dev's host and plug it into the bridges (eth0, eth1, ...)."""
        if dev.host is None:
            dev.host = self.lab.host(dev.name)
        for br in bridges:
            self.lab.attach(dev.host, br)
        return dev

    def standard(self, *, relay_bridges: Sequence[Any] | None = None) -> None:
        """Gateway on the PPK LAN and the uplink, relay and phones on the village hotspot."""
        self.place(self.gateway, self.ppk, self.uplink)
        self.place(self.relay, *(relay_bridges or [self.hotspot]))
        for p in self.phones:
            self.place(p, self.hotspot)

    @property
    def central_url(self) -> str:
        assert self.central.host is not None
        return f"http://{self.central.host.addr('eth0')}:{CENTRAL_PORT}"

    # -- processes -------------------------------------------------------------------------
    def log(self, dev: Device) -> Path:
        return self.work / f"{dev.name}.log"

    def start_central(self) -> None:
        self._launch(
            self.central,
            [
                "central",
                "serve",
                "--home",
                str(self.central.home),
                "--listen",
                f"0.0.0.0:{CENTRAL_PORT}",
            ],
        )

    def start(
        self,
        dev: Device,
        *,
        central: str | None = None,
        extra: Sequence[str] = (),
        wait: bool = True,
    ) -> None:
        """``estafet node run`` inside dev's host. Phones and relays get ``--central ""``."""
        if central is None:
            central = self.central_url if dev.role == "gateway" else ""
        self._launch(
            dev, ["node", "run", "--home", str(dev.home), "--central", central, *extra], wait=wait
        )

    def start_all(self, *devices: Device) -> None:
        """Start several node daemons at once, then wait until each serves /v1/status."""
        for dev in devices:
            self.start(dev, wait=False)
        for dev in devices:
            self.wait_up(dev)

    def wait_up(self, dev: Device) -> None:
        path = "/api/status" if dev.role == "central" else "/v1/status"
        wait_for(
            lambda: self.get(dev, path) is not None,
            40,
            f"{dev.name} serves {path}",
            dev.proc,
            diag=lambda: self.tail(dev),
        )

    def _launch(self, dev: Device, args: list[str], wait: bool = True) -> None:
        assert dev.host is not None, f"{dev.name} has no host"
        dev.args = args
        argv = estafet(*args)
        if dev.wrap is not None:
            argv = dev.wrap(argv)
        with self.log(dev).open("ab") as log:
            log.write(f"\n=== start {dev.starts} at +{self.elapsed():.1f}s ===\n".encode())
            log.flush()
            dev.proc = self.lab.popen(dev.host, argv, env=ENV, stdout=log, stderr=log)
        dev.starts += 1
        if wait:
            self.wait_up(dev)

    def restart(self, dev: Device, wait: bool = True) -> None:
        self._launch(dev, dev.args, wait=wait)

    def stop(self, dev: Device, timeout: float = 15) -> None:
        if dev.proc is None or dev.proc.poll() is not None:
            return
        dev.proc.send_signal(signal.SIGTERM)
        try:
            dev.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.lab.kill9(dev.proc)

    def kill9(self, dev: Device) -> None:
        if dev.proc is not None:
            self.lab.kill9(dev.proc)

    def close(self) -> None:
        for dev in self.devices.values():
            self.stop(dev, timeout=5)
        for caller in self._ns.values():
            caller.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- results made during a scenario ------------------------------------------------------
    def submit(
        self,
        phone: Device,
        election: str,
        *,
        revision: int = 0,
        supersedes: Result | None = None,
        tweak: int = 0,
    ) -> Result:
        """``estafet result submit`` on phone's home (daemon not running): a new result for its
        TPS, optionally a revision superseding an earlier one, or (tweak) other numbers."""
        i = self.kit.tps.index(phone.tps)
        form = plausible_form(election, phone.tps, BALLOTS[election], i)
        if tweak:  # move votes between the first two candidates: still a rule-abiding form
            a, b = (str(n) for n in BALLOTS[election][:2])
            form["votes"][a] += tweak
            form["votes"][b] -= tweak
        form["revision"] = revision
        form["supersedes"] = supersedes.id if supersedes else None
        tag = f"{phone.name}-{election}-r{revision}-t{tweak}"
        f = self.work / f"form-{tag}.json"
        f.write_text(json.dumps(form))
        args, shas = [], []
        for sheet in (1, 2, 3):
            seed = f"{phone.tps}-{election}-{sheet}-{tag}"
            data = photo_bytes(seed, photo_size(seed))
            pf = self.work / f"photo-{tag}-{sheet}.jpg"
            pf.write_bytes(data)
            args += ["--photo", str(pf)]
            shas.append(hashlib.sha256(data).hexdigest())
        rid = run_cli(
            "result", "submit", "--home", str(phone.home), "--form", str(f), *args
        ).strip()
        r = Result(rid, phone.name, phone.tps, election, shas)
        phone.results.append(r)
        return r

    def ids_of_kind(self, dev: Device, kind: str) -> list[str]:
        with contextlib.closing(self.db(dev)) as db:
            rows = db.execute(
                "SELECT hex(id) FROM objects WHERE kind = ? ORDER BY created", [kind]
            ).fetchall()
        return [r[0].lower() for r in rows]

    def raw(self, dev: Device, oid: str) -> bytes:
        with contextlib.closing(self.db(dev)) as db:
            row = db.execute("SELECT raw FROM objects WHERE id = ?", [bytes.fromhex(oid)])
            got = row.fetchone()
        assert got is not None, f"{dev.name} does not hold {oid[:16]}"
        return bytes(got[0])

    def events(self, dev: Device) -> list[dict[str, Any]]:
        """Every event (refusal) dev's store recorded: {at, level, peer, object, reason}."""
        with contextlib.closing(self.db(dev)) as db:
            cur = db.execute("SELECT at, level, peer, hex(object), reason FROM events ORDER BY seq")
            return [
                dict(zip(("at", "level", "peer", "object", "reason"), r, strict=True)) for r in cur
            ]

    # -- a home on a small disk ---------------------------------------------------------------
    def small_disk(self, dev: Device, size: str) -> None:
        """Run dev with its home on a tmpfs of ``size`` mounted in a mount namespace private to
        its daemon (``unshare -m``): the home's files are copied in before the daemon starts;
        the mount (and its contents) vanish with the process. Grow it with :meth:`grow_disk`."""
        seed = self.work / f"{dev.name}-seed"
        dev.home.rename(seed)
        dev.home.mkdir()
        script = (
            'mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$2" && cp -a "$3"/. "$2"/'
            ' && shift 3 && exec "$@"'
        )

        def wrap(argv: list[str]) -> list[str]:
            return [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                size,
                str(dev.home),
                str(seed),
                *argv,
            ]

        dev.wrap = wrap
        dev.private_mounts = True

    def grow_disk(self, dev: Device, size: str) -> None:
        assert dev.proc is not None and dev.alive
        run_argv(
            [
                "nsenter",
                "-t",
                str(dev.proc.pid),
                "-m",
                "--",
                "mount",
                "-o",
                f"remount,size={size}",
                str(dev.home),
            ]
        )

    def disk(self, dev: Device) -> tuple[int, int]:
        """(used, size) of dev's home file system as its daemon sees it."""
        st = os.statvfs(dev.path())
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize

    # -- faults -----------------------------------------------------------------------------
    def cut(
        self, dev: Device, iface: str = "eth0", *, drop_connections: Sequence[Device] = ()
    ) -> None:
        """Cut dev's cable (``lab.cut``). With ``drop_connections``: also abort the TCP
        connections between dev and those devices on both ends (``ss -K``), as a phone's stack
        does when its Wi-Fi goes away, so transfers in flight fail at once instead of stalling
        until a read timeout."""
        assert dev.host is not None
        self.lab.cut(dev.host, iface)
        mine = dev.host.addr(iface)
        for other in drop_connections:
            assert other.host is not None
            for link in other.host.links.values():
                if link.ip:
                    self.lab.run(dev.host, ["ss", "-K", "dst", link.ip], check=False)
            self.lab.run(other.host, ["ss", "-K", "dst", mine], check=False)

    def restore(self, dev: Device, iface: str = "eth0") -> None:
        assert dev.host is not None
        self.lab.restore(dev.host, iface)

    def partials(self, dev: Device) -> dict[str, int]:
        """Photo transfers in progress into dev: partial file name -> bytes held."""
        out = {}
        with contextlib.suppress(OSError):
            for f in dev.path("blobs", "partial").iterdir():
                with contextlib.suppress(OSError):
                    out[f.name] = f.stat().st_size
        return out

    # -- observing from inside the namespaces ------------------------------------------------
    def ns(self, dev: Device) -> InNetns:
        assert dev.host is not None
        with self._lock:
            if dev.host.ns not in self._ns:
                self._ns[dev.host.ns] = InNetns(dev.host.ns)
            return self._ns[dev.host.ns]

    def get(self, dev: Device, path: str, timeout: float = 5) -> Any:
        """GET JSON from dev's own daemon, from inside dev's namespace; None if it fails."""
        try:
            return self.ns(dev).call(
                http_json, f"http://127.0.0.1:{dev.port}{path}", timeout, timeout=timeout + 5
            )
        except Exception:
            return None

    def status(self, dev: Device) -> dict[str, Any] | None:
        """The daemon's ``/v1/status`` JSON."""
        return self.get(dev, "/v1/status")

    def central_status(self) -> dict[str, Any]:
        """The central server's ``/api/status`` JSON (raises if it does not answer)."""
        st = self.get(self.central, "/api/status", timeout=15)
        if st is None:
            raise AssertionError("the central server's /api/status did not answer")
        return dict(st)

    def central_objects(self, ids: Iterable[str]) -> dict[str, bytes]:
        """POST /v1/objects/get to the central server: id hex -> raw bytes of those it holds."""
        from estafet.protocol.objects import decode_envelope

        body = codec.encode({"ids": [bytes.fromhex(i) for i in ids]})
        url = f"http://127.0.0.1:{CENTRAL_PORT}/v1/objects/get"
        status, data = self.ns(self.central).call(http_request, url, body, timeout=20)
        if status != 200:
            raise AssertionError(f"central /v1/objects/get answered {status}: {data[:200]!r}")
        objs = codec.decode(
            data, codec.Limits(max_bytes=64 << 20, max_bin=8 << 20, max_array=4096, max_map=8)
        )
        return {decode_envelope(raw).id.hex(): raw for raw in objs["objects"]}

    def cli_json(self, dev: Device, *args: str) -> Any:
        """``estafet <args> --home H --json`` (in dev's mount namespace if its home is private)."""
        argv = estafet(*args, "--home", str(dev.home), "--json")
        if dev.private_mounts and dev.alive:
            assert dev.proc is not None
            argv = ["nsenter", "-t", str(dev.proc.pid), "-m", "--", *argv]
        return json.loads(run_argv(argv))

    def node_status(self, dev: Device, all_objects: bool = False) -> dict[str, Any]:
        """``estafet node status --home H --json [--all]``."""
        return dict(self.cli_json(dev, "node", "status", *(["--all"] if all_objects else [])))

    def node_peers(self, dev: Device) -> dict[str, Any]:
        """``estafet node peers --home H --json``: peers and recent refusals (events)."""
        return dict(self.cli_json(dev, "node", "peers"))

    # -- the store, read directly ---------------------------------------------------------
    def db(self, dev: Device, name: str = "store.db") -> sqlite3.Connection:
        path = (
            dev.path("node", name)
            if dev.role == "central" and name == "store.db"
            else (dev.path(name))
        )
        if dev.private_mounts and dev.alive:
            path = self._frozen_copy(dev, path)
        return sqlite3.connect(str(path), timeout=30)

    def _frozen_copy(self, dev: Device, path: Path) -> Path:
        """SQLite resolves the /proc/PID/root magic link (and would open the host's file), so
        a store on a private mount is read from a copy taken while its daemon is stopped
        (SIGSTOP ... SIGCONT): the database, its WAL and its index, as one consistent state."""
        assert dev.proc is not None
        snap = self.work / f"{dev.name}-snapshot"
        shutil.rmtree(snap, ignore_errors=True)
        snap.mkdir()
        os.kill(dev.proc.pid, signal.SIGSTOP)
        try:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(f"{path}{suffix}", snap / f"{path.name}{suffix}")
        finally:
            os.kill(dev.proc.pid, signal.SIGCONT)
        return snap / path.name

    def states(self, dev: Device, ids: Iterable[str]) -> dict[str, str | None]:
        """id hex -> the object's state in dev's store ('missing' if absent)."""
        ids = list(ids)
        try:
            with contextlib.closing(self.db(dev)) as db:
                rows = dict(
                    db.execute(
                        f"SELECT hex(id), coalesce(state, 'carried') FROM objects WHERE id IN"
                        f" ({','.join('?' * len(ids))})",
                        [bytes.fromhex(i) for i in ids],
                    ).fetchall()
                )
        except sqlite3.Error:
            return dict.fromkeys(ids, "unreadable")
        return {i: rows.get(i.upper(), "missing") for i in ids}

    def central_accepted(self) -> set[str]:
        """Ids of results the central server's ingest holds as accepted."""
        try:
            with contextlib.closing(self.db(self.central, "central.db")) as db:
                rows = db.execute(
                    "SELECT hex(id) FROM objects WHERE kind = 'result' AND status = 'accepted'"
                ).fetchall()
        except sqlite3.Error:
            return set()
        return {r[0].lower() for r in rows}

    def central_status_of(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        with contextlib.closing(self.db(self.central, "central.db")) as db:
            rows = dict(
                db.execute(
                    f"SELECT hex(id), status FROM objects WHERE id IN ({','.join('?' * len(ids))})",
                    [bytes.fromhex(i) for i in ids],
                ).fetchall()
            )
        return {i: rows.get(i.upper(), "missing") for i in ids}

    def central_blobs(self) -> set[str]:
        with contextlib.closing(self.db(self.central, "central.db")) as db:
            return {r[0].lower() for r in db.execute("SELECT hex(sha256) FROM blobs")}

    # -- progress --------------------------------------------------------------------------
    @property
    def results(self) -> list[Result]:
        return [r for p in self.phones for r in p.results]

    def holds(self, dev: Device, results: Iterable[Result], photos: bool = True) -> bool:
        """dev holds every one of these results (and, with photos, all their photo blobs)."""
        results = list(results)
        st = self.states(dev, [r.id for r in results])
        if any(s in ("missing", "unreadable") for s in st.values()):
            return False
        if not photos:
            return True
        want = {s for r in results for s in r.photos}
        try:
            with contextlib.closing(self.db(dev)) as db:
                have = {r[0].lower() for r in db.execute("SELECT hex(sha256) FROM blobs")}
        except sqlite3.Error:
            return False
        return want <= have

    def delivered(self, dev: Device, results: Iterable[Result] | None = None) -> bool:
        """dev holds a receipt for every one of these results (default: its own)."""
        results = list(dev.results if results is None else results)
        st = self.states(dev, [r.id for r in results])
        return all(s in ("delivered", "conflict") for s in st.values())

    def all_accepted(self, results: Iterable[Result] | None = None, photos: bool = True) -> bool:
        results = list(self.results if results is None else results)
        if not {r.id for r in results} <= self.central_accepted():
            return False
        return not photos or {s for r in results for s in r.photos} <= self.central_blobs()

    def wait(self, what: str, cond: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
        t = time.monotonic()
        value = wait_for(cond, timeout, what, every=every, diag=self.diagnose)
        print(f"[village +{self.elapsed():5.1f}s] {what} ({time.monotonic() - t:.1f}s)")
        return value

    # -- diagnostics ---------------------------------------------------------------------
    def tail(self, dev: Device, lines: int = 15) -> str:
        try:
            text = self.log(dev).read_text(errors="replace").splitlines()
        except OSError:
            return f"--- {dev.name}: no log"
        return f"--- {dev.name} log (last {lines} lines):\n" + "\n".join(text[-lines:])

    def diagnose(self) -> str:
        """Where every result is, per node, and the logs' tails: printed on any failure."""
        out = []
        ids = [r.id for r in self.results]
        for dev in self.devices.values():
            if dev.host is None:
                continue
            alive = "running" if dev.alive else "stopped"
            try:
                if dev.role == "central":
                    st = self.central_status_of(ids)
                    blobs = len(self.central_blobs())
                    out.append(f"{dev.name} ({alive}): " + _summary(st) + f"; {blobs} blobs")
                else:
                    st = self.states(dev, ids)
                    s = self.status(dev) or {}
                    peers = [
                        f"{p['role'] or '?'}@{p['url']}(f{p['failures']}/p{p['penalties']})"
                        for p in s.get("peers", [])
                    ]
                    out.append(
                        f"{dev.name} ({alive}, {_addrs(dev)}): "
                        + _summary(st)
                        + f"; objects {s.get('objects')} stats {s.get('stats')}"
                        + f" uplink {s.get('uplink', {}).get('ok')} peers {peers}"
                    )
            except Exception as exc:
                out.append(f"{dev.name}: cannot inspect ({exc})")
        for dev in self.devices.values():
            if dev.host is not None:
                out.append(self.tail(dev, 8))
        return "\n".join(out)


def _summary(states: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for s in states.values():
        counts[str(s)] = counts.get(str(s), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _addrs(dev: Device) -> str:
    assert dev.host is not None
    return " ".join(f"{k.iface}={k.ip}@{k.bridge.name}" for k in dev.host.links.values())


def run_argv(argv: Sequence[str], timeout: float = 60) -> str:
    done = subprocess.run(
        list(argv), env=ENV, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[-6:])} failed ({done.returncode}): {done.stderr}")
    return done.stdout
