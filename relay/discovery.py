"""Finding peers: layered, tried together, de-duplicated by key id.

1. Re-dial known peers at their last address (the node loads them from the store at start).
2. mDNS (zeroconf, IPv4): we register ``<key>._estafet._tcp.local.`` with TXT ``key``, ``role``,
   ``scope``, ``fp`` (store fingerprint, so in-sync peers can skip a session) and ``up``
   (we currently reach the central server), and browse for others. Android phones may not
   hear multicast, so this is never the only layer.
3. A signed UDP broadcast beacon on port ``BEACON_PORT`` every ``BEACON_EVERY`` seconds.
4. Static peers from the config (added by the node).
5. Optionally a sweep of the local /24s on the node port (off by default; for hotspots).

Whoever hears the other first opens the connection; one sync session moves data both ways.
A peer that stops answering is dropped by our own timeouts and backoff, never by mDNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import ifaddr
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from estafet.crypto.keys import SigningKey, key_id, verify_signature
from estafet.protocol import codec
from estafet.protocol.errors import ProtocolError

from .home import NodeConfig

log = logging.getLogger("estafet.discovery")
SERVICE = "_estafet._tcp.local."
BEACON_PORT = 7421
BEACON_EVERY = 10.0
BEACON_DOMAIN = b"estafet/beacon/v1\x00"
# max_bin covers the signed content itself (~80 bytes: key, port, role, scope, up) in the outer map
BEACON_LIMITS = codec.Limits(max_bytes=1024, max_str=64, max_bin=512, max_array=4, max_map=8)


def local_ipv4() -> list[ipaddress.IPv4Interface]:
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
    return out


class Discovery:
    """Announce ``advert()`` (role, scope, up: "1" or "0") and, over mDNS, ``fingerprint()``
    too; report every peer found to ``on_peer(url, source, **info)``. Gets plain values and
    callbacks, never the node."""

    def __init__(
        self,
        config: NodeConfig,
        key: SigningKey,
        port: Callable[[], int],
        advert: Callable[[], dict[str, str]],
        fingerprint: Callable[[], Awaitable[bytes]],
        on_peer: Callable[..., object],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        http: Callable[[], aiohttp.ClientSession | None],
    ) -> None:
        self.config = config
        self.key = key
        self.key_hex = key.id.hex()
        self._port = port
        self._advert = advert
        self._fingerprint = fingerprint
        self._on_peer = on_peer
        self._spawn = spawn
        self._http = http
        self.zc: AsyncZeroconf | None = None
        self.browser: AsyncServiceBrowser | None = None
        self.info: AsyncServiceInfo | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._txt: dict[str, str] = {}

    async def start(self) -> None:
        cfg = self.config
        if cfg.mdns:
            try:
                await self._start_mdns()
            except (OSError, RuntimeError) as exc:  # no multicast-capable interface
                log.warning("mDNS unavailable: %s", exc)
        if cfg.beacon:
            try:
                await self._start_beacon()
            except OSError as exc:
                log.warning("UDP beacon unavailable: %s", exc)
        if cfg.mdns or cfg.beacon:
            self._spawn(self._announce_loop(), "announce")
        if cfg.sweep:
            self._spawn(self._sweep_loop(), "sweep")

    async def stop(self) -> None:
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.async_cancel()
        if self.zc is not None:
            with contextlib.suppress(Exception):
                if self.info is not None:
                    await self.zc.async_unregister_service(self.info)
                await self.zc.async_close()
        if self.transport is not None:
            self.transport.close()

    # --- mDNS -----------------------------------------------------------------------------
    async def _start_mdns(self) -> None:
        addrs = [str(i.ip) for i in local_ipv4()]
        self.zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        self._txt = await self._mdns_txt()
        self.info = AsyncServiceInfo(
            SERVICE,
            f"{self.key_hex[:16]}.{SERVICE}",
            port=self._port(),
            properties=self._txt,
            parsed_addresses=addrs or None,
            server=f"estafet-{self.key_hex[:12]}.local.",
        )
        self._spawn(self._register(), "mdns-register")
        self.browser = AsyncServiceBrowser(self.zc.zeroconf, SERVICE, handlers=[self._on_change])

    async def _register(self) -> None:
        assert self.zc is not None and self.info is not None
        try:
            await (await self.zc.async_register_service(self.info, allow_name_change=True))
        except Exception as exc:
            log.warning("mDNS registration failed: %s", exc)

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self._spawn(self._resolve(service_type, name), "mdns-resolve")

    async def _resolve(self, service_type: str, name: str) -> None:
        assert self.zc is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self.zc.zeroconf, 3000):
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        key = props.get("key", "")
        if key == self.key_hex or not info.port:
            return
        for addr in _reachable_first(info.parsed_addresses(IPVersion.V4Only)):
            self._on_peer(
                f"http://{addr}:{info.port}",
                "mdns",
                key=key,
                role=props.get("role", ""),
                scope=props.get("scope", ""),
                central_ok=props.get("up") == "1",
                fingerprint=bytes.fromhex(props.get("fp", "")) if _is_hex(props.get("fp")) else b"",
            )
            break

    async def _mdns_txt(self) -> dict[str, str]:
        return {"key": self.key_hex, **self._advert(), "fp": (await self._fingerprint()).hex()}

    async def _update_mdns(self) -> None:
        if self.zc is None or self.info is None:
            return
        txt = await self._mdns_txt()
        if txt == self._txt:
            return
        self._txt = txt
        self.info = AsyncServiceInfo(
            SERVICE,
            self.info.name,
            port=self._port(),
            properties=txt,
            parsed_addresses=[str(i.ip) for i in local_ipv4()] or None,
            server=self.info.server,
        )
        with contextlib.suppress(Exception):
            await self.zc.async_update_service(self.info)

    # --- beacon ---------------------------------------------------------------------------
    async def _start_beacon(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", BEACON_PORT))  # noqa: S104 - broadcasts arrive on any address
        sock.setblocking(False)
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _BeaconProtocol(self), sock=sock
        )

    def beacon_bytes(self) -> bytes:
        txt = self._advert()
        content = codec.encode(
            {
                "key": self.key.public,
                "port": self._port(),
                "role": txt["role"],
                "scope": txt["scope"],
                "up": txt["up"] == "1",
            }
        )
        return codec.encode({"b": content, "s": self.key.sign(BEACON_DOMAIN + content)})

    def on_beacon(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            outer = codec.decode(data, BEACON_LIMITS)
            content, sig = outer["b"], outer["s"]
            b = codec.decode(content, BEACON_LIMITS)
            public, port = b["key"], int(b["port"])
        except (ProtocolError, KeyError, TypeError, ValueError):
            return
        if not isinstance(public, bytes) or not isinstance(sig, bytes) or not 0 < port < 65536:
            return
        if not verify_signature(public, BEACON_DOMAIN + content, sig):
            return
        kid = key_id(public).hex()
        if kid == self.key_hex:
            return
        self._on_peer(
            f"http://{addr[0]}:{port}",
            "beacon",
            key=kid,
            role=str(b.get("role", "")),
            scope=str(b.get("scope", "")),
            central_ok=bool(b.get("up")),
        )

    def _broadcast(self) -> None:
        if self.transport is None:
            return
        data = self.beacon_bytes()
        targets = {"255.255.255.255"}
        for iface in local_ipv4():
            targets.add(str(iface.network.broadcast_address))
        for t in targets:
            with contextlib.suppress(OSError):
                self.transport.sendto(data, (t, BEACON_PORT))

    async def _announce_loop(self) -> None:
        while True:
            self._broadcast()
            await self._update_mdns()
            await asyncio.sleep(BEACON_EVERY)

    # --- sweep ----------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(120)

    async def sweep(self) -> None:
        """Probe every address of our /24s on the node port (hotspots without multicast)."""
        http = self._http()
        if http is None:
            return
        sem = asyncio.Semaphore(32)
        port = self._port()

        async def probe(ip: str) -> None:
            async with sem:
                try:
                    async with http.get(f"http://{ip}:{port}/v1/info", timeout=_SWEEP_TIMEOUT) as r:
                        if r.status == 200:
                            self._on_peer(f"http://{ip}:{port}", "sweep")
                except Exception:  # noqa: S110 - silence is the common answer
                    pass

        jobs = []
        for iface in local_ipv4():
            net = (
                iface.network
                if iface.network.prefixlen >= 24
                else ipaddress.IPv4Network(f"{iface.ip}/24", strict=False)
            )
            for host in net.hosts():
                if host != iface.ip:
                    jobs.append(probe(str(host)))
        await asyncio.gather(*jobs)


def _reachable_first(addrs: list[str]) -> list[str]:
    """A multi-homed peer (a gateway on the PPK LAN and the uplink) announces every address:
    put those on one of our own subnets first, the one we can reach without a route."""
    nets = [i.network for i in local_ipv4()]

    def on_link(a: str) -> bool:
        try:
            return any(ipaddress.IPv4Address(a) in n for n in nets)
        except ValueError:
            return False

    return sorted(addrs, key=lambda a: not on_link(a))


def _is_hex(value: str | None) -> bool:
    try:
        bytes.fromhex(value or "")
    except ValueError:
        return False
    return bool(value)


class _BeaconProtocol(asyncio.DatagramProtocol):
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.discovery.on_beacon(data, addr)


_SWEEP_TIMEOUT = aiohttp.ClientTimeout(total=1.0)
