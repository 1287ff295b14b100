"""The village testbed: a multi-host network on one machine, made of network namespaces.

Stdlib only. Needs root, `ip` (iproute2) and `nft` (nftables); `tc` for `slow`, `ping`
(iputils-ping) for `ping` (a Python ICMP fallback is used when it is missing).

Layout: one *switch* namespace holds every bridge, so the machine's own network is never touched.
Each host is a namespace with `lo` up and no default route, joined to bridges by veth pairs (the
host end is eth0, eth1, ...; the bridge end lives in the switch namespace). All names start with
a per-run prefix (``e`` + 5 hex digits) and fit Linux's 15-character interface-name limit.

    with Lab() as lab:
        hotspot = lab.bridge("hotspot")             # 10.77.1.0/24
        phone, relay = lab.host("phone"), lab.host("relay")
        ip = lab.attach(relay, hotspot)             # "10.77.1.1"
        lab.attach(phone, hotspot)
        assert lab.ping(phone, ip)
        proc = lab.popen(relay, [sys.executable, "-m", "http.server", "-b", ip, "8000"])

Faults: `walk` (move a device to another bridge), `cut`/`restore` (link down/up),
`loss` (nftables random drop in and out), `slow` (tbf), `block_multicast_in` (a phone that
cannot hear mDNS), and `proxy` (tests/net/proxy.py: delay, rate, bit flip, cut after N bytes).

Cleanup: `close()` (context-manager exit, the pytest fixture, atexit, SIGTERM while open) kills
every process the lab started and deletes its namespaces, which deletes the veths, bridges and
nftables tables with them. `cleanup_stale()` removes labs left behind by a killed run.
Only send traffic to addresses inside namespaces the lab made.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .proxy import Proxy

REPO = Path(__file__).resolve().parents[2]
LAB_NET = ipaddress.IPv4Network("10.77.0.0/16")
PREFIX_RE = re.compile(r"^e[0-9a-f]{5}$")
STATE_DIR = Path(os.environ.get("NETLAB_STATE_DIR", "/run/estafet-netlab"))
IFNAMSIZ = 15
MDNS_PORT = 5353


class NetlabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


# -- environment checks ------------------------------------------------------------------------


def missing_requirements() -> list[str]:
    """Why network-namespace tests cannot run here (empty list: they can)."""
    why = []
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        why.append("not running as root")
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            why.append(f"`{tool}` not found (apt-get install -y {pkg})")
    return why


def require_netns() -> None:
    """pytest.skip with the reason when not root or `ip`/`nft` are missing."""
    why = missing_requirements()
    if why:
        import pytest

        pytest.skip("network-namespace lab unavailable: " + "; ".join(why))


# -- low-level helpers -------------------------------------------------------------------------


def _sh(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetlabError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def list_netns() -> list[str]:
    out = _sh(["ip", "-json", "netns", "list"], check=False).strip()
    if not out:
        return []
    try:
        return [entry["name"] for entry in json.loads(out)]
    except ValueError:
        return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(ns: str) -> list[int]:
    out = _sh(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _destroy_namespaces(names: Sequence[str]) -> None:
    """SIGKILL whatever still runs inside, then delete the namespaces (hosts before switch)."""
    for ns in names:
        for pid in _netns_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for ns in sorted(names, key=lambda n: n.endswith("-sw")):
        _sh(["ip", "netns", "delete", ns], check=False)


def cleanup_stale(prefix: str | None = None) -> list[str]:
    """Delete lab namespaces left behind by a killed run; returns the namespaces removed.

    With a prefix: that lab's namespaces, unconditionally. Without: every lab (names
    ``e?????-*``) whose owning process is gone, so labs of runs still alive are left alone.
    """
    if prefix is not None and not PREFIX_RE.match(prefix):
        raise ValueError(f"not a lab prefix: {prefix!r}")
    by_prefix: dict[str, list[str]] = {}
    for ns in list_netns():
        head, sep, _ = ns.partition("-")
        if sep and PREFIX_RE.match(head) and (prefix is None or head == prefix):
            by_prefix.setdefault(head, []).append(ns)
    removed: list[str] = []
    for head, names in by_prefix.items():
        if prefix is None:
            owner = _read_owner(head)
            if owner is not None and _pid_alive(owner):
                continue
        _destroy_namespaces(names)
        removed += names
    for head in set(by_prefix) | ({prefix} if prefix else set()):
        with contextlib.suppress(OSError):
            (STATE_DIR / head).unlink()
    if prefix is None and STATE_DIR.is_dir():  # owner files of labs that left nothing behind
        for marker in STATE_DIR.iterdir():
            owner = _read_owner(marker.name)
            if owner is None or not _pid_alive(owner):
                with contextlib.suppress(OSError):
                    marker.unlink()
    return removed


def _read_owner(prefix: str) -> int | None:
    try:
        return int((STATE_DIR / prefix).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _parse_rate(rate: str | int) -> float:
    """tc rate ("256kbit", "1mbit", "64kbps", int bits/s) -> bytes/s."""
    if isinstance(rate, int):
        return rate / 8
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmg]?)(bit|bps)\s*", rate.lower())
    if not m:
        raise ValueError(f"rate like '256kbit' or '64kbps' expected, got {rate!r}")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    return value / 8 if m.group(3) == "bit" else value


# -- the lab -----------------------------------------------------------------------------------


@dataclass
class Bridge:
    name: str  # logical name, e.g. "hotspot"
    dev: str  # device name inside the switch namespace
    subnet: ipaddress.IPv4Network
    used: set[ipaddress.IPv4Address] = field(default_factory=set)

    def allocate(self, ip: str | None = None) -> ipaddress.IPv4Address:
        if ip is not None:
            addr = ipaddress.IPv4Address(ip)
            if addr not in self.subnet or addr in self.used:
                raise NetlabError(f"{ip} is outside {self.subnet} or already used")
            self.used.add(addr)
            return addr
        for addr in self.subnet.hosts():
            if addr not in self.used:
                self.used.add(addr)
                return addr
        raise NetlabError(f"bridge {self.name}: {self.subnet} is full")

    def __str__(self) -> str:
        return self.name


@dataclass
class Link:
    iface: str  # inside the host, e.g. "eth0"
    peer: str  # bridge end, inside the switch namespace
    bridge: Bridge
    ip: str | None


@dataclass
class Host:
    name: str
    ns: str
    index: int
    links: dict[str, Link] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        """Address of the first interface that has one."""
        for link in self.links.values():
            if link.ip:
                return link.ip
        raise NetlabError(f"host {self.name} has no address")

    def addr(self, iface: str = "eth0") -> str:
        link = self.links[iface]
        if link.ip is None:
            raise NetlabError(f"{self.name}/{iface} has no address")
        return link.ip

    def iface_on(self, bridge: Bridge | str) -> str:
        name = bridge if isinstance(bridge, str) else bridge.name
        for link in self.links.values():
            if link.bridge.name == name:
                return link.iface
        raise NetlabError(f"host {self.name} is not on bridge {name}")

    def __str__(self) -> str:
        return self.name


_OPEN_LABS: set[Lab] = set()  # strong refs: an open lab is closed at exit even if dropped
_SIGTERM: dict[str, Any] = {}  # "previous": the handler ours replaced


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through `with Lab()` / finally, then atexit


def _close_all_at_exit() -> None:
    for lab in list(_OPEN_LABS):
        lab.close()


atexit.register(_close_all_at_exit)


class Lab:
    """A throw-away multi-host network. Use as a context manager (or the `lab` fixture)."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or "e" + secrets.token_hex(3)[:5]
        if not PREFIX_RE.match(self.prefix):
            raise ValueError("prefix must be 'e' + 5 lowercase hex digits")
        self.switch = f"{self.prefix}-sw"
        self.bridges: dict[str, Bridge] = {}
        self.hosts: dict[str, Host] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self.proxies: list[RemoteProxy] = []
        self._namespaces: list[str] = []
        self._open = False
        self._closed = False
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> Lab:
        if self._open:
            return self
        why = missing_requirements()
        if why:
            raise NetlabError("cannot build a lab: " + "; ".join(why))
        self._open = True
        _OPEN_LABS.add(self)
        self._install_sigterm()
        with contextlib.suppress(OSError):
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            (STATE_DIR / self.prefix).write_text(f"{os.getpid()}\n")
        self._add_netns(self.switch)
        self._ip(self.switch, "link", "set", "lo", "up")
        return self

    def close(self) -> None:
        """Kill every process, delete every namespace. Idempotent; never raises."""
        with self._lock:
            if self._closed or not self._open:
                self._closed = True
                return
            self._closed = True
        for proc in self.procs:
            self._kill(proc, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
        with contextlib.suppress(Exception):
            _destroy_namespaces(self._namespaces)
        leftover = [ns for ns in list_netns() if ns.startswith(self.prefix + "-")]
        if leftover:
            with contextlib.suppress(Exception):
                _destroy_namespaces(leftover)
        with contextlib.suppress(OSError):
            (STATE_DIR / self.prefix).unlink()
        _OPEN_LABS.discard(self)
        self._restore_sigterm()

    def __enter__(self) -> Lab:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    # -- topology ----------------------------------------------------------------------------

    def bridge(self, name: str, subnet: str | None = None) -> Bridge:
        """The bridge called `name` (created on first use) with its own /24 in 10.77.0.0/16."""
        self._need_open()
        if name in self.bridges:
            return self.bridges[name]
        taken = {b.subnet for b in self.bridges.values()}
        if subnet is None:
            for third in range(1, 255):
                net = ipaddress.IPv4Network(f"10.77.{third}.0/24")
                if net not in taken:
                    break
            else:
                raise NetlabError("no free /24 left in 10.77.0.0/16")
        else:
            net = ipaddress.IPv4Network(subnet)
            if net in taken:
                raise NetlabError(f"subnet {net} already used")
        dev = f"{self.prefix}b{len(self.bridges)}"
        self._ip(self.switch, "link", "add", dev, "type", "bridge")
        self._ip(self.switch, "link", "set", dev, "up")
        bridge = Bridge(name=name, dev=dev, subnet=net)
        self.bridges[name] = bridge
        return bridge

    def host(self, name: str) -> Host:
        """A new host namespace: lo up, no interfaces, no default route."""
        self._need_open()
        if name in self.hosts:
            raise NetlabError(f"host {name!r} already exists")
        if not re.fullmatch(r"[A-Za-z0-9_.]{1,40}", name):
            raise ValueError(f"host name {name!r}: letters, digits, '_' and '.' only")
        host = Host(name=name, ns=f"{self.prefix}-{name}", index=len(self.hosts))
        self._add_netns(host.ns)
        self._ip(host.ns, "link", "set", "lo", "up")
        self.hosts[name] = host
        return host

    def attach(
        self,
        host: Host | str,
        bridge: Bridge | str,
        *,
        ip: str | None = None,
        iface: str | None = None,
    ) -> str:
        """Plug `host` into `bridge` with a new veth; returns the host's address on it."""
        h, br = self._host(host), self._bridge(bridge)
        iface = iface or f"eth{len(h.links)}"
        if iface in h.links:
            raise NetlabError(f"{h.name} already has {iface}")
        peer = f"{self.prefix}h{h.index}i{len(h.links)}"
        assert len(peer) <= IFNAMSIZ and len(iface) <= IFNAMSIZ
        addr = br.allocate(ip)
        self._ip(self.switch, "link", "add", peer, "type", "veth", "peer", "name", iface,
                 "netns", h.ns)  # fmt: skip
        self._ip(self.switch, "link", "set", peer, "master", br.dev)
        self._ip(self.switch, "link", "set", peer, "up")
        self._ip(h.ns, "addr", "add", f"{addr}/{br.subnet.prefixlen}", "dev", iface)
        self._ip(h.ns, "link", "set", iface, "up")
        h.links[iface] = Link(iface=iface, peer=peer, bridge=br, ip=str(addr))
        return str(addr)

    def walk(
        self,
        host: Host | str,
        iface: str,
        to_bridge: Bridge | str,
        new_ip: bool = True,
        *,
        ip: str | None = None,
    ) -> str:
        """The device walks to another bridge: link down, re-master, new address, link up."""
        h, br = self._host(host), self._bridge(to_bridge)
        link = h.links[iface]
        self._ip(h.ns, "link", "set", iface, "down")
        self._ip(self.switch, "link", "set", link.peer, "nomaster")
        self._ip(self.switch, "link", "set", link.peer, "master", br.dev)
        old = link.bridge
        if new_ip:
            if link.ip is not None:
                old.used.discard(ipaddress.IPv4Address(link.ip))
            addr = br.allocate(ip)
            self._ip(h.ns, "addr", "flush", "dev", iface)
            self._ip(h.ns, "addr", "add", f"{addr}/{br.subnet.prefixlen}", "dev", iface)
            link.ip = str(addr)
        link.bridge = br
        self._ip(h.ns, "link", "set", iface, "up")
        return link.ip or ""

    def cut(self, host: Host | str, iface: str = "eth0") -> None:
        """Cut the cable: the bridge end goes down (the host sees NO-CARRIER, keeps its IP)."""
        link = self._host(host).links[iface]
        self._ip(self.switch, "link", "set", link.peer, "down")

    def restore(self, host: Host | str, iface: str = "eth0") -> None:
        link = self._host(host).links[iface]
        self._ip(self.switch, "link", "set", link.peer, "up")

    def route(self, host: Host | str, via: str, dest: str = "default") -> None:
        """Add a route (e.g. a default route through a gateway host)."""
        self._ip(self._host(host).ns, "route", "replace", dest, "via", via)

    def enable_forwarding(self, host: Host | str) -> None:
        """Make a host a router between its bridges (per-namespace sysctl)."""
        self.run(host, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    # -- faults ------------------------------------------------------------------------------

    def loss(self, host: Host | str, percent: int) -> None:
        """Drop `percent`% of the host's inbound and outbound IP packets (nftables numgen)."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if percent == 0:
            self.clear_loss(host)
            return
        # numgen's range is 0..99, so 100% is a plain drop
        rule = "drop" if percent == 100 else f"numgen random mod 100 < {percent} drop"
        self._nft(
            host,
            "netlab_loss",
            f"""
            chain input {{
                type filter hook input priority -100; policy accept;
                {rule}
            }}
            chain output {{
                type filter hook output priority -100; policy accept;
                {rule}
            }}
            """,
        )

    def clear_loss(self, host: Host | str) -> None:
        self._nft_delete(host, "netlab_loss")

    def block_multicast_in(
        self, host: Host | str, ports: Sequence[int] | None = (MDNS_PORT,)
    ) -> None:
        """Drop inbound multicast/broadcast UDP to `ports` (None: all ports), like Android
        without a MulticastLock. Sending multicast still works."""
        match = "meta pkttype { broadcast, multicast } meta l4proto udp"
        if ports:
            match += " udp dport { " + ", ".join(str(int(p)) for p in ports) + " }"
        self._nft(
            host,
            "netlab_mcast",
            f"""
            chain input {{
                type filter hook input priority -100; policy accept;
                {match} drop
            }}
            """,
        )

    def unblock_multicast_in(self, host: Host | str) -> None:
        self._nft_delete(host, "netlab_mcast")

    def slow(
        self,
        host: Host | str,
        iface: str = "eth0",
        rate: str = "256kbit",
        *,
        both_ways: bool = True,
        latency: str = "400ms",
    ) -> None:
        """A slow link: tbf on the host's interface (its uploads) and, with `both_ways`,
        on the bridge end too (its downloads)."""
        h = self._host(host)
        link = h.links[iface]
        burst = max(4096, int(_parse_rate(rate) / 100))  # >= MTU and >= rate/HZ
        tbf = ["root", "tbf", "rate", rate, "burst", str(burst), "latency", latency]
        _sh(["ip", "netns", "exec", h.ns, "tc", "qdisc", "replace", "dev", iface, *tbf])
        if both_ways:
            _sh(["ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev", link.peer,
                 *tbf])  # fmt: skip

    def fast(self, host: Host | str, iface: str = "eth0") -> None:
        """Remove what `slow` added."""
        h = self._host(host)
        link = h.links[iface]
        for ns, dev in ((h.ns, iface), (self.switch, link.peer)):
            _sh(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"], check=False)

    # -- processes ---------------------------------------------------------------------------

    def argv(self, host: Host | str, argv: Sequence[str]) -> list[str]:
        """The command line running `argv` inside `host`."""
        return ["ip", "netns", "exec", self._host(host).ns, *map(str, argv)]

    def popen(self, host: Host | str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `host` in its own process group; killed at close().
        Default cwd is the repository root, so `python -m tests.net.proxy` works."""
        self._need_open()
        kw.setdefault("cwd", REPO)
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.argv(host, argv), **kw)
        self.procs.append(proc)
        return proc

    def run(
        self,
        host: Host | str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        input: str | bytes | None = None,
        text: bool = True,
        **kw: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside `host` to completion; output is captured (text by default)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        proc = self.popen(host, argv, text=text, **kw)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9(proc)
            out, err = proc.communicate()
            raise NetlabError(f"timed out after {timeout}s: {argv!r}: {err!r}") from None
        finally:
            with contextlib.suppress(ValueError):
                self.procs.remove(proc)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise NetlabError(f"{argv!r} in {host}: exit {proc.returncode}: {err!r}")
        return done

    def python(self, host: Host | str, code: str, *args: str, **kw: Any) -> Any:
        """`run` a Python snippet inside `host` with this interpreter."""
        return self.run(host, [sys.executable, "-c", code, *args], **kw)

    def kill9(self, proc: subprocess.Popen[Any]) -> None:
        """SIGKILL the process and its process group, and reap it."""
        self._kill(proc, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)

    @staticmethod
    def _kill(proc: subprocess.Popen[Any], sig: int) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def ping(self, host: Host | str, ip: str, *, count: int = 1, timeout: float = 1.0) -> bool:
        """Does `ip` answer an ICMP echo from inside `host`?"""
        if shutil.which("ping"):
            argv = ["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), ip]
            if count > 1:
                argv[1:1] = ["-i", "0.2"]
            return self.run(host, argv, check=False, timeout=count * timeout + 5).returncode == 0
        res = self.python(host, _PY_PING, ip, str(count), str(timeout), check=False)
        return res.returncode == 0

    def wait_reachable(self, host: Host | str, ip: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping(host, ip, timeout=0.5):
                return True
        return False

    def proxy(
        self,
        host: Host | str,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        ready_timeout: float = 10.0,
        **opts: Any,
    ) -> RemoteProxy:
        """Run tests/net/proxy.py inside `host`; options as for `Proxy` (delay, rate, ...)."""
        args = Proxy(listen, target, **opts).cli_args()
        proc = self.popen(
            host,
            [sys.executable, "-m", "tests.net.proxy", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rp = RemoteProxy(self, proc, ready_timeout)
        self.proxies.append(rp)
        return rp

    # -- internals ---------------------------------------------------------------------------

    def _need_open(self) -> None:
        if not self._open or self._closed:
            raise NetlabError("lab is not open (use `with Lab() as lab:`)")

    def _host(self, host: Host | str) -> Host:
        return self.hosts[host] if isinstance(host, str) else host

    def _bridge(self, bridge: Bridge | str) -> Bridge:
        return self.bridges[bridge] if isinstance(bridge, str) else bridge

    def _add_netns(self, ns: str) -> None:
        self._namespaces.append(ns)  # before creating: cleanup covers a half-made namespace
        _sh(["ip", "netns", "add", ns])

    def _ip(self, ns: str, *args: str) -> str:
        return _sh(["ip", "-n", ns, *args])

    def _nft(self, host: Host | str, table: str, body: str) -> None:
        ns = self._host(host).ns
        # add+delete first makes the script idempotent (replaces an earlier version atomically)
        script = f"add table inet {table}\ndelete table inet {table}\n"
        script += f"table inet {table} {{\n{body}\n}}\n"
        _sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script)

    def _nft_delete(self, host: Host | str, table: str) -> None:
        ns = self._host(host).ns
        script = f"add table inet {table}\ndelete table inet {table}\n"
        _sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script)

    @staticmethod
    def _install_sigterm() -> None:
        """SIGTERM (default action: die without cleanup) becomes SystemExit while labs are open."""
        if threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                _SIGTERM["previous"] = signal.signal(signal.SIGTERM, _on_sigterm)

    @staticmethod
    def _restore_sigterm() -> None:
        if "previous" not in _SIGTERM or _OPEN_LABS:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, _SIGTERM.pop("previous"))


class RemoteProxy:
    """A tests/net/proxy.py process inside a lab host (see `Lab.proxy`)."""

    def __init__(self, lab: Lab, proc: subprocess.Popen[str], ready_timeout: float) -> None:
        self.lab = lab
        self.proc = proc
        self.conns: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self._ready = threading.Event()
        self._address: tuple[str, int] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout) or self._address is None:
            err = ""
            if proc.poll() is not None and proc.stderr is not None:
                err = proc.stderr.read()
            lab.kill9(proc)
            raise NetlabError(f"proxy did not start: {err.strip()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "READY":
                host, port = rest.split()
                self._address = (host, int(port))
                self._ready.set()
            elif word == "CONN":
                self.conns.append(json.loads(rest))
            elif word == "STATS":
                self.final = json.loads(rest)
        self._ready.set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._address is not None
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    def stats(self) -> dict[str, Any]:
        """Totals over finished connections (all connections after `stop`)."""
        if self.final is not None:
            return self.final
        return {
            "up": sum(c["up"] for c in self.conns),
            "down": sum(c["down"] for c in self.conns),
            "connections": len(self.conns),
            "conns": list(self.conns),
        }

    def stop(self, timeout: float = 5.0) -> dict[str, Any]:
        """SIGTERM the proxy; returns its final byte counts."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lab.kill9(self.proc)
        self._reader.join(timeout)
        return self.stats()


_PY_PING = r"""
import os, socket, struct, sys, time
ip, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
for seq in range(count):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"netlab00"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    try:
        s.sendto(pkt, (ip, 0))
    except OSError:
        continue
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, src = s.recvfrom(2048)
        except (TimeoutError, OSError):
            break
        icmp = data[(data[0] & 0x0F) * 4:]
        if src[0] == ip and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            sys.exit(0)
sys.exit(1)
"""
