"""The village testbed works: bridges, walking devices, cuts, loss, slow links, mDNS blocking,
the fault proxy, and cleanup. Traffic only ever goes to loopback or to lab namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from .netlab import REPO, Lab, cleanup_stale, list_netns, require_netns
from .proxy import Proxy, parse_address

net = pytest.mark.net

# -- helper programs run inside the namespaces ---------------------------------------------------

ECHO_SERVER = """
import asyncio, sys
async def main():
    async def echo(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        finally:
            w.close()
    srv = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]))
    print("READY", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""

# send N pattern bytes, half-close, read the echo until EOF/error; report as JSON
ECHO_CLIENT = """
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes(i % 251 for i in range(n))
got, err = bytearray(), None
t0 = time.monotonic()
try:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    while chunk := s.recv(65536):
        got += chunk
except OSError as exc:
    err = type(exc).__name__
elapsed = time.monotonic() - t0
diffs = [i for i, (a, b) in enumerate(zip(payload, got, strict=False)) if a != b][:10]
print(json.dumps({"received": len(got), "elapsed": elapsed, "diffs": diffs, "error": err,
                  "xor": [payload[i] ^ got[i] for i in diffs]}))
"""

MCAST_RECV = """
import socket, sys
ip, timeout = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5353))
mreq = socket.inet_aton("224.0.0.251") + socket.inet_aton(ip)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("READY", flush=True)
s.settimeout(timeout)
try:
    data, src = s.recvfrom(2048)
    print("GOT", data.decode(), src[0], flush=True)
except TimeoutError:
    print("TIMEOUT", flush=True)
"""

MCAST_SEND = """
import socket, sys, time
ip = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
for _ in range(5):
    s.sendto(b"estafet-hello", ("224.0.0.251", 5353))
    time.sleep(0.05)
"""

HTTP_GET = """
import hashlib, sys, time, urllib.request
url = sys.argv[1]
deadline = time.monotonic() + 5
while True:
    try:
        body = urllib.request.urlopen(url, timeout=5).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
print(len(body), hashlib.sha256(body).hexdigest())
"""


def wait_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    """The next stdout line of `proc` (a READY line, a result)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from {proc.args!r} within {timeout}s")
    return proc.stdout.readline().strip()


def start(lab: Lab, host: Any, code: str, *args: str) -> subprocess.Popen[str]:
    proc = lab.popen(host, [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert wait_line(proc) == "READY"
    return proc


def echo(lab: Lab, host: Any, addr: tuple[str, int], n: int) -> dict[str, Any]:
    out = lab.python(host, ECHO_CLIENT, addr[0], str(addr[1]), str(n), timeout=30).stdout
    return json.loads(out)


def lab_prefixed(prefix: str) -> list[str]:
    return [ns for ns in list_netns() if ns.startswith(prefix + "-")]


# -- topology ------------------------------------------------------------------------------------


@net
def test_names_fit_and_subnets_are_distinct(lab: Lab) -> None:
    hotspot, ppk, uplink = lab.bridge("hotspot"), lab.bridge("ppk"), lab.bridge("uplink")
    assert [str(b.subnet) for b in (hotspot, ppk, uplink)] == [
        "10.77.1.0/24",
        "10.77.2.0/24",
        "10.77.3.0/24",
    ]
    assert lab.bridge("ppk") is ppk
    gw = lab.host("gateway")
    assert lab.attach(gw, ppk) == "10.77.2.1"
    assert lab.attach(gw, uplink) == "10.77.3.1"
    assert set(gw.links) == {"eth0", "eth1"}
    assert all(len(link.peer) <= 15 for link in gw.links.values())
    assert all(len(b.dev) <= 15 for b in lab.bridges.values())
    # host namespaces have no default route; the machine's namespace has none of our devices
    assert "default" not in lab.run(gw, ["ip", "route"]).stdout
    host_links = subprocess.run(
        ["ip", "-o", "link"], check=True, capture_output=True, text=True
    ).stdout
    assert lab.prefix not in host_links


@net
def test_two_hosts_on_a_bridge_ping_each_other(lab: Lab) -> None:
    hotspot = lab.bridge("hotspot")
    phone, relay = lab.host("phone"), lab.host("relay")
    ip_phone, ip_relay = lab.attach(phone, hotspot), lab.attach(relay, hotspot)
    assert lab.ping(phone, ip_relay)
    assert lab.ping(relay, ip_phone)


@net
def test_host_on_another_bridge_cannot_reach_them(lab: Lab) -> None:
    hotspot, ppk = lab.bridge("hotspot"), lab.bridge("ppk")
    a, b, stranger = lab.host("a"), lab.host("b"), lab.host("stranger")
    ip_a = lab.attach(a, hotspot)
    lab.attach(b, hotspot)
    ip_s = lab.attach(stranger, ppk)
    assert not lab.ping(stranger, ip_a, timeout=0.5)
    assert not lab.ping(a, ip_s, timeout=0.5)
    # even with an address in the same subnet, a different bridge is a different wire
    lone = lab.host("lone")
    lab.attach(lone, ppk)
    lab.run(lone, ["ip", "addr", "add", "10.77.1.200/24", "dev", "eth0"])
    assert not lab.ping(lone, ip_a, timeout=0.5)


@net
def test_gateway_routes_between_bridges(lab: Lab) -> None:
    ppk, uplink = lab.bridge("ppk"), lab.bridge("uplink")
    laptop, gw, central = lab.host("laptop"), lab.host("gw"), lab.host("central")
    lab.attach(laptop, ppk)
    gw_ppk, gw_up = lab.attach(gw, ppk), lab.attach(gw, uplink)
    ip_central = lab.attach(central, uplink)
    assert not lab.ping(laptop, ip_central, timeout=0.5)
    lab.enable_forwarding(gw)
    lab.route(laptop, via=gw_ppk)
    lab.route(central, via=gw_up)
    assert lab.ping(laptop, ip_central)


@net
def test_walk_moves_reachability(lab: Lab) -> None:
    hotspot, ppk = lab.bridge("hotspot"), lab.bridge("ppk")
    phone, friend, laptop = lab.host("phone"), lab.host("friend"), lab.host("laptop")
    old = lab.attach(phone, hotspot)
    ip_friend = lab.attach(friend, hotspot)
    ip_laptop = lab.attach(laptop, ppk)
    assert lab.ping(phone, ip_friend)
    assert not lab.ping(phone, ip_laptop, timeout=0.5)

    new = lab.walk(phone, "eth0", ppk)
    assert new != old
    assert new in str(ppk.subnet)[:-4] or new.startswith("10.77.2.")
    assert phone.links["eth0"].bridge is ppk
    assert phone.addr("eth0") == new
    assert lab.wait_reachable(phone, ip_laptop)
    assert lab.ping(laptop, new)
    assert not lab.ping(phone, ip_friend, timeout=0.5)
    assert not lab.ping(friend, old, timeout=0.5)

    # walking back without a new address: the old address is kept (a static config)
    assert lab.walk(phone, "eth0", hotspot, new_ip=False) == new


@net
def test_cut_and_restore(lab: Lab) -> None:
    hotspot = lab.bridge("hotspot")
    a, b = lab.host("a"), lab.host("b")
    lab.attach(a, hotspot)
    ip_b = lab.attach(b, hotspot)
    assert lab.ping(a, ip_b)
    lab.cut(b, "eth0")
    assert not lab.ping(a, ip_b, timeout=0.5)
    assert "NO-CARRIER" in lab.run(b, ["ip", "link", "show", "eth0"]).stdout
    lab.restore(b, "eth0")
    assert lab.wait_reachable(a, ip_b)


@net
def test_total_loss_blocks_and_clear_restores(lab: Lab) -> None:
    hotspot = lab.bridge("hotspot")
    a, b = lab.host("a"), lab.host("b")
    ip_a, ip_b = lab.attach(a, hotspot), lab.attach(b, hotspot)
    lab.loss(b, 30)
    rules = lab.run(b, ["nft", "list", "table", "inet", "netlab_loss"]).stdout
    assert rules.count("numgen random mod 100 < 30 drop") == 2  # inbound and outbound
    lab.loss(b, 100)
    assert not lab.ping(a, ip_b, timeout=0.5)  # inbound dropped
    assert not lab.ping(b, ip_a, timeout=0.5)  # outbound dropped
    lab.clear_loss(b)
    assert lab.ping(a, ip_b)
    assert lab.ping(b, ip_a)
    lab.clear_loss(b)  # idempotent


@net
def test_slow_link_is_slow(lab: Lab) -> None:
    hotspot = lab.bridge("hotspot")
    srv, phone = lab.host("srv"), lab.host("phone")
    ip_srv = lab.attach(srv, hotspot)
    lab.attach(phone, hotspot)
    start(lab, srv, ECHO_SERVER, ip_srv, "7000")
    fast = echo(lab, phone, (ip_srv, 7000), 48_000)
    lab.slow(phone, "eth0", rate="512kbit")  # 64 kB/s each way
    assert "tbf" in lab.run(phone, ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    slow = echo(lab, phone, (ip_srv, 7000), 48_000)
    assert fast["received"] == slow["received"] == 48_000
    assert slow["elapsed"] > 0.5  # 96 kB through 64 kB/s links: >= 0.75 s
    assert fast["elapsed"] < slow["elapsed"] / 2
    lab.fast(phone, "eth0")
    assert echo(lab, phone, (ip_srv, 7000), 48_000)["elapsed"] < slow["elapsed"] / 2


# -- multicast -----------------------------------------------------------------------------------


@net
def test_mdns_multicast_heard_then_blocked(lab: Lab) -> None:
    hotspot = lab.bridge("hotspot")
    laptop, phone = lab.host("laptop"), lab.host("phone")
    ip_laptop, ip_phone = lab.attach(laptop, hotspot), lab.attach(phone, hotspot)

    rx = start(lab, phone, MCAST_RECV, ip_phone, "3")
    lab.python(laptop, MCAST_SEND, ip_laptop)
    assert wait_line(rx) == f"GOT estafet-hello {ip_laptop}"

    lab.block_multicast_in(phone)
    rx = start(lab, phone, MCAST_RECV, ip_phone, "1")
    lab.python(laptop, MCAST_SEND, ip_laptop)
    assert wait_line(rx) == "TIMEOUT"

    # the phone can still announce itself: its outbound multicast reaches the laptop
    rx = start(lab, laptop, MCAST_RECV, ip_laptop, "3")
    lab.python(phone, MCAST_SEND, ip_phone)
    assert wait_line(rx) == f"GOT estafet-hello {ip_phone}"

    lab.unblock_multicast_in(phone)
    rx = start(lab, phone, MCAST_RECV, ip_phone, "3")
    lab.python(laptop, MCAST_SEND, ip_laptop)
    assert wait_line(rx).startswith("GOT")


# -- the fault proxy inside namespaces -----------------------------------------------------------


@pytest.fixture
def echo_net(lab: Lab) -> tuple[Lab, Any, Any, tuple[str, int]]:
    """client --hotspot-- mid (proxy) --hotspot-- srv (echo server on :7000)."""
    hotspot = lab.bridge("hotspot")
    cli, mid, srv = lab.host("cli"), lab.host("mid"), lab.host("srv")
    lab.attach(cli, hotspot)
    lab.attach(mid, hotspot)
    ip_srv = lab.attach(srv, hotspot)
    start(lab, srv, ECHO_SERVER, ip_srv, "7000")
    return lab, cli, mid, (ip_srv, 7000)


@net
def test_ns_proxy_forwards_http_and_counts(lab: Lab, tmp_path: Any) -> None:
    hotspot = lab.bridge("hotspot")
    cli, mid, srv = lab.host("cli"), lab.host("mid"), lab.host("srv")
    lab.attach(cli, hotspot)
    ip_mid, ip_srv = lab.attach(mid, hotspot), lab.attach(srv, hotspot)
    blob = bytes(range(256)) * 400
    (tmp_path / "blob").write_bytes(blob)
    lab.popen(
        srv,
        [sys.executable, "-m", "http.server", "-b", ip_srv, "8000", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = lab.proxy(mid, (ip_mid, 0), (ip_srv, 8000))
    assert proxy.address[0] == ip_mid
    out = lab.python(cli, HTTP_GET, f"http://{ip_mid}:{proxy.port}/blob").stdout.split()
    import hashlib

    assert out == [str(len(blob)), hashlib.sha256(blob).hexdigest()]
    stats = proxy.stop()
    assert stats["connections"] >= 1
    assert stats["down"] > len(blob)  # body + headers
    assert 0 < stats["up"] < 1000  # one GET request


@net
def test_ns_proxy_delay(echo_net: Any) -> None:
    lab, cli, mid, target = echo_net
    direct = echo(lab, cli, target, 100)
    proxy = lab.proxy(mid, (mid.ip, 7001), target, delay=0.25)
    delayed = echo(lab, cli, proxy.address, 100)
    assert direct["received"] == delayed["received"] == 100
    assert direct["elapsed"] < 0.4
    assert 0.5 <= delayed["elapsed"] < 2.0  # 0.25 s each way
    assert proxy.stop()["up"] == 100


@net
def test_ns_proxy_rate_limit(echo_net: Any) -> None:
    lab, cli, mid, target = echo_net
    proxy = lab.proxy(mid, (mid.ip, 7001), target, rate=100_000)
    res = echo(lab, cli, proxy.address, 100_000)
    assert res["received"] == 100_000 and not res["diffs"]
    assert 0.9 <= res["elapsed"] < 4.0
    stats = proxy.stop()
    assert stats["up"] == stats["down"] == 100_000


@net
def test_ns_proxy_flips_one_bit(echo_net: Any) -> None:
    lab, cli, mid, target = echo_net
    proxy = lab.proxy(mid, (mid.ip, 7001), target, flip_at=1000)
    res = echo(lab, cli, proxy.address, 4096)
    assert res["received"] == 4096
    assert res["diffs"] == [1000] and res["xor"] == [1]
    stats = proxy.stop()
    assert stats["up"] == stats["down"] == 4096
    assert stats["conns"][0]["flipped"]


@net
def test_ns_proxy_cuts_after_n_bytes(echo_net: Any) -> None:
    lab, cli, mid, target = echo_net
    proxy = lab.proxy(mid, (mid.ip, 7001), target, cut_after=1500, fault_limit=1)
    res = echo(lab, cli, proxy.address, 40_000)
    assert res["received"] <= 1500
    assert res["error"] is not None or res["received"] < 40_000
    again = echo(lab, cli, proxy.address, 40_000)  # fault_limit=1: the retry goes through
    assert again["received"] == 40_000 and not again["diffs"]
    stats = proxy.stop()
    assert stats["conns"][0]["cut"] and stats["conns"][0]["up"] == 1500
    assert stats["up"] == 1500 + 40_000


# -- the proxy in-process on loopback (no root needed) -------------------------------------------


class _Echo:
    """A threaded loopback echo server."""

    def __enter__(self) -> tuple[str, int]:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = False
        import threading

        def serve() -> None:
            while not self.stop:
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[:2]

    @staticmethod
    def _one(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def _roundtrip(addr: tuple[str, int], n: int, timeout: float = 10) -> dict[str, Any]:
    payload = bytes(i % 251 for i in range(n))
    got, err = bytearray(), None
    t0 = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                got += chunk
    except OSError as exc:
        err = exc
    diffs = [i for i, (a, b) in enumerate(zip(payload, got, strict=False)) if a != b]
    return {"received": len(got), "elapsed": time.monotonic() - t0, "diffs": diffs, "error": err}


def test_loopback_proxy_plain_delay_rate() -> None:
    with _Echo() as target:
        with Proxy(("127.0.0.1", 0), target) as p:
            res = _roundtrip(p.address, 200_000)
            assert res["received"] == 200_000 and not res["diffs"]
            assert p.bytes_up == p.bytes_down == 200_000 and p.connections == 1
        with Proxy(("127.0.0.1", 0), target, delay=0.2) as p:
            res = _roundtrip(p.address, 10)
            assert 0.4 <= res["elapsed"] < 1.5
        with Proxy(("127.0.0.1", 0), target, rate=50_000) as p:
            res = _roundtrip(p.address, 40_000)
            assert res["received"] == 40_000
            assert 0.7 <= res["elapsed"] < 3.0


def test_loopback_proxy_flip_down_and_cut_modes() -> None:
    with _Echo() as target:
        with Proxy(target=target, flip_at=7, flip_dir="down", flip_mask=0x80) as p:
            res = _roundtrip(p.address, 100)
            assert res["diffs"] == [7]
            assert p.stats()["conns"][0]["flipped"]  # may still be open
        with Proxy(target=target, cut_after=300, cut_mode="close") as p:
            res = _roundtrip(p.address, 5000)
            assert res["received"] <= 300
            assert p.bytes_up == 300
        with Proxy(target=target, cut_after=300, cut_mode="hang") as p:
            res = _roundtrip(p.address, 5000, timeout=0.5)
            assert isinstance(res["error"], TimeoutError)  # silence: only a timeout notices
            assert p.bytes_up == 300


async def test_loopback_proxy_asyncio_api() -> None:
    server = await asyncio.start_server(_aecho, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[:2]
    async with Proxy(("127.0.0.1", 0), target, cut_after=10, fault_limit=1) as p:
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"x" * 100)
        await w.drain()
        with contextlib.suppress(ConnectionResetError):  # cut_mode="reset": RST
            assert len(await r.read()) <= 10
        w.close()
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"y" * 100)
        w.write_eof()
        assert await r.read() == b"y" * 100
        w.close()
    server.close()
    assert p.connections == 2


async def _aecho(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()


def test_proxy_cli_args_roundtrip() -> None:
    from .proxy import build_parser

    p = Proxy(("10.77.1.2", 9000), ("10.77.1.3", 80), delay=0.1, rate=1000, flip_at=5)
    args = build_parser().parse_args(p.cli_args())
    assert args.listen == ("10.77.1.2", 9000) and args.target == ("10.77.1.3", 80)
    assert (args.delay, args.rate, args.flip_at, args.flip_dir) == (0.1, 1000.0, 5, "up")
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError):
        parse_address("nope")


# -- cleanup -------------------------------------------------------------------------------------


@net
def test_cleanup_after_an_exception() -> None:
    require_netns()
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        hotspot = lab.bridge("hotspot")
        h = lab.host("h")
        lab.attach(h, hotspot)
        lab.block_multicast_in(h)
        proc = lab.popen(h, ["sleep", "300"])
        assert len(lab_prefixed(lab.prefix)) == 2
        raise RuntimeError("boom")
    assert proc.poll() is not None
    assert lab_prefixed(lab.prefix) == []


LAB_SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    from tests.net.netlab import Lab
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    with Lab() as lab:
        h = lab.host("h")
        lab.attach(h, lab.bridge("hotspot"))
        p = lab.popen(h, ["sleep", "300"])
        print(lab.prefix, p.pid, flush=True)
        time.sleep(60)
    """
)


@net
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_cleanup_on_signal(sig: int) -> None:
    require_netns()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAB_SCRIPT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        prefix, pid = wait_line(proc, 20).split()
        assert len(lab_prefixed(prefix)) == 2
        proc.send_signal(sig)
        proc.wait(10)
        if sig == signal.SIGKILL:  # nothing can run: the stale lab is left, cleanup_stale finds it
            assert len(lab_prefixed(prefix)) == 2
            assert {f"{prefix}-h", f"{prefix}-sw"} <= set(cleanup_stale())
        assert lab_prefixed(prefix) == []
        assert _gone(int(pid))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """The process is dead (or a zombie waiting for init to reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


@net
def test_cleanup_stale_leaves_live_labs_alone(lab: Lab) -> None:
    lab.host("h")
    assert lab.prefix not in {ns.split("-")[0] for ns in cleanup_stale()}
    assert len(lab_prefixed(lab.prefix)) == 2
    with pytest.raises(ValueError):
        cleanup_stale("sw")  # only lab prefixes, never arbitrary namespaces
