"""Discovery: the signed UDP beacon (in-process), and mDNS between two real nodes in network
namespaces joined by a bridge (loopback carries no multicast: ``ip link show lo`` has no
MULTICAST flag). The namespace test needs root and ``ip``; it uses ``tests/net/netlab.py`` when
that can run here, else a few ``ip`` commands of its own.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from estafet.protocol import codec
from estafet.relay.discovery import BEACON_DOMAIN, Discovery
from estafet.relay.home import Home, NodeConfig
from estafet.relay.local import submit_result
from estafet.relay.node import Node
from estafet.relay.store import Store
from tests.kit import TPS_A, World, form_json, photo_bytes, seeded_key
from tests.relay.nodes import enroll, make_node

REPO = Path(__file__).resolve().parents[2]


# --- the UDP beacon, in-process ---------------------------------------------------------------


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    world = World()
    a = make_node(world, tmp_path, "beacon-a")
    b = make_node(world, tmp_path, "beacon-b", role="gateway", scope=("6302",))
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def _disc(node: Node) -> Discovery:
    assert isinstance(node.discovery, Discovery)
    return node.discovery


async def test_a_beacon_adds_its_sender_as_a_peer(pair: tuple[Node, Node]) -> None:
    a, b = pair
    data = _disc(a).beacon_bytes()
    assert len(data) < 512  # one small datagram
    _disc(b).on_beacon(data, ("127.0.0.1", 40000))  # the source port is not the node's port
    url = f"http://127.0.0.1:{a.port}"
    assert list(b.peers) == [url]
    peer = b.peers[url]
    # a beacon only proposes an address: the key is the peer's after its handshake
    assert (peer.key, peer.source, peer.role, peer.scope) == ("", "beacon", "relay", "630214")
    rep = await b.sync_now(url)  # and it is a peer one can sync with
    assert rep.ok, rep.error
    assert peer.key == a.key_hex
    _disc(b).on_beacon(data, ("127.0.0.1", 40000))  # heard again: still one peer
    assert list(b.peers) == [url]


async def test_own_beacon_is_ignored(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    _disc(a).on_beacon(_disc(a).beacon_bytes(), ("127.0.0.1", 40000))
    assert a.peers == {}


def _forgeries(a: Node) -> list[bytes]:
    good = codec.decode(_disc(a).beacon_bytes())
    content, sig = good["b"], good["s"]
    body = codec.decode(content)
    mallory = seeded_key("mallory")

    def signed(b: dict[str, Any], key: Any = a.key) -> bytes:
        c = codec.encode(b)
        return codec.encode({"b": c, "s": key.sign(BEACON_DOMAIN + c)})

    flipped = bytes([sig[0] ^ 0x80]) + sig[1:]
    rng = random.Random(7421)
    return [
        codec.encode({"b": content, "s": flipped}),  # signature bytes changed
        codec.encode({"b": content, "s": sig[:-1]}),  # signature cut short
        codec.encode({"b": content, "s": 5}),  # signature of the wrong type
        codec.encode({"b": content}),  # no signature
        signed(body, mallory),  # claims a's key, signed by another
        signed({**body, "port": 9}, mallory),
        codec.encode({"b": codec.encode({**body, "port": 9}), "s": sig}),  # content changed
        signed({**body, "port": 0}),  # signed, but nonsense
        signed({**body, "port": 70000}),
        signed({**body, "key": b"short"}),
        signed({k: v for k, v in body.items() if k != "key"}),
        codec.encode({"b": b"\xc1", "s": sig}),
        codec.encode({"b": "text", "s": sig}),
        codec.encode([content, sig]),
        codec.encode(7),
        b"",
        b"\x00" * 64,
        bytes(rng.randrange(256) for _ in range(200)),
        bytes(rng.randrange(256) for _ in range(2000)),
        _disc(a).beacon_bytes() + b"\x00",  # trailing bytes: not canonical
    ]


async def test_bad_beacons_are_ignored(pair: tuple[Node, Node]) -> None:
    a, b = pair
    for i, data in enumerate(_forgeries(a)):
        _disc(b).on_beacon(data, ("127.0.0.1", 40000))  # never raises
        assert b.peers == {}, f"forgery {i} was believed"


async def test_beacon_datagrams_on_the_socket(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real UDP path: b listens on a free port, a's beacon sent there makes a b's peer."""
    import socket

    from estafet.relay import discovery

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(discovery, "BEACON_PORT", port)
    world = World()
    a = make_node(world, tmp_path, "udp-a")
    b = make_node(world, tmp_path, "udp-b")
    b.config.beacon = True
    await a.start()
    await b.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"garbage first", ("127.0.0.1", port))
            s.sendto(_disc(a).beacon_bytes(), ("127.0.0.1", port))
        import asyncio

        # the beacon proposes a's address; b's scheduler then proves a's key in a session
        for _ in range(250):
            if [p.key for p in b.peers.values()] == [a.key_hex]:
                break
            await asyncio.sleep(0.02)
        assert [p.key for p in b.peers.values()] == [a.key_hex]
    finally:
        await b.stop()
        await a.stop()


# --- mDNS across a bridge, between two node processes in namespaces ---------------------------


class _MiniLab:
    """Two hosts on one bridge with plain ``ip`` commands: the fallback when
    ``tests/net/netlab.py`` is unavailable (it also wants ``nft``, which this test does not)."""

    def __init__(self) -> None:
        self.prefix = f"er{os.getpid() % 100000:05d}"
        self.switch = f"{self.prefix}-sw"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.n = 0

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def __enter__(self) -> _MiniLab:
        self._ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    def bridge(self, name: str) -> str:
        return name

    def host(self, name: str) -> SimpleNamespace:
        ns = f"{self.prefix}-{name}"
        self._ip("netns", "add", ns)
        self.namespaces.append(ns)
        self._ip("-n", ns, "link", "set", "lo", "up")
        return SimpleNamespace(name=name, ns=ns)

    def attach(self, host: SimpleNamespace, bridge: str) -> str:
        self.n += 1
        ip, veth = f"10.77.0.{self.n}", f"{self.prefix}v{self.n}"
        self._ip(
            "-n",
            self.switch,
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.ns,
        )
        self._ip("-n", self.switch, "link", "set", veth, "master", "br0")
        self._ip("-n", self.switch, "link", "set", veth, "up")
        self._ip("-n", host.ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        self._ip("-n", host.ns, "link", "set", "eth0", "up")
        return ip

    def popen(self, host: SimpleNamespace, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], cwd=REPO, **kw)
        self.procs.append(proc)
        return proc

    def python(
        self, host: SimpleNamespace, code: str, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", host.ns, sys.executable, "-c", code, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )


def _lab_or_skip() -> Any:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if shutil.which("ip") is None:
        pytest.skip("needs `ip` (iproute2)")
    try:
        from tests.net.netlab import Lab, missing_requirements
    except ImportError:
        return _MiniLab
    return _MiniLab if missing_requirements() else Lab


def _home(world: World, tmp: Path, label: str, role: str, scope: str, ip: str) -> Path:
    home = tmp / label
    key, cert = world.officer(label, role=role, scope=(scope,))
    enroll(world, home, key, cert)
    Home(home).save_config(
        NodeConfig(listen=f"{ip}:7420", mdns=True, beacon=False, sync_interval=0.5)
    )
    return home


STATUS = """
import json, sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:7420/v1/status", timeout=3) as r:
    print(json.dumps(json.load(r)))
"""


def _status(lab: Any, host: Any, ip: str) -> dict[str, Any]:
    out = lab.python(host, STATUS, ip, check=False, timeout=10)
    if out.returncode != 0:
        return {}
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


@pytest.mark.net
def test_mdns_finds_the_other_node_and_they_sync(tmp_path: Path) -> None:
    lab_cls = _lab_or_skip()
    world = World()
    with lab_cls() as lab:
        hotspot = lab.bridge("hotspot")
        h1, h2 = lab.host("phone"), lab.host("relay")
        ip1, ip2 = lab.attach(h1, hotspot), lab.attach(h2, hotspot)
        phone = _home(world, tmp_path, "mdns-phone", "kpps-chair", TPS_A, ip1)
        relay = _home(world, tmp_path, "mdns-relay", "relay", "630214", ip2)
        photos = []
        for i in (1, 2, 3):
            p = tmp_path / f"m{i}.jpg"
            p.write_bytes(photo_bytes(f"mdns-{i}", 5_000))
            photos.append(p)
        store = Store.open(phone, world.now)
        try:
            key = Home(phone).load_key(None)
            result = submit_result(store, key, world.root.public, form_json(), photos, world.now).id
        finally:
            store.close()
        keys = {h.name: Home(p).load_key(None).id.hex() for h, p in ((h1, phone), (h2, relay))}
        procs = {}
        for host, home in ((h1, phone), (h2, relay)):
            procs[host.name] = lab.popen(
                host,
                [
                    sys.executable,
                    "-m",
                    "tests.relay.run_node",
                    "--home",
                    str(home),
                    "--now",
                    str(world.now),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for proc in procs.values():
            line = proc.stdout.readline()
            assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() else "")
        deadline = time.monotonic() + 30
        s1: dict[str, Any] = {}
        s2: dict[str, Any] = {}
        while time.monotonic() < deadline:
            s1, s2 = _status(lab, h1, ip1), _status(lab, h2, ip2)
            found = keys[h2.name] in {p["key"] for p in s1.get("peers", [])} and keys[h1.name] in {
                p["key"] for p in s2.get("peers", [])
            }
            if found and s2["objects"]["blobs"] == 3:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no discovery or sync within 30 s:\n{s1}\n{s2}")
        sources = {p["source"] for p in s1["peers"] + s2["peers"]}
        assert "mdns" in sources, sources  # found by mDNS, not only by being dialled
        assert f"http://{ip2}:7420" in {p["url"] for p in s1["peers"]}
        assert f"http://{ip1}:7420" in {p["url"] for p in s2["peers"]}
        assert s2["objects"]["pending"] >= 1
        for proc in procs.values():
            proc.terminate()
            assert proc.wait(timeout=20) == 0
    store = Store.open(relay, world.now)
    try:
        assert store.sync_db().has([result]) == {result}
        assert store.sync_db().missing_photos() == []
        assert store.sync_db().check() == []
    finally:
        store.close()
