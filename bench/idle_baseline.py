"""The bare process figures 7 and 8 compare the node daemon with.

It imports the third-party packages the daemon runs on (aiohttp, zeroconf, cryptography,
msgpack, sqlite-utils, click, ifaddr), serves an aiohttp app with one route on the given address,
registers one zeroconf service, sends ``READY=1`` to ``$NOTIFY_SOCKET`` (as the daemon does) and
idles until SIGTERM/SIGINT. No store, no threads of its own, no timers.

Usage: python bench/idle_baseline.py [HOST:PORT]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import click  # noqa: F401 - imported for parity with the daemon
import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
import ifaddr
import msgpack  # noqa: F401
import sqlite_utils  # noqa: F401
from aiohttp import web
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf


def notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    addr = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


async def info(_request: web.Request) -> web.Response:
    return web.Response(body=b"\x80")


async def main(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    app = web.Application()
    app.router.add_get("/v1/info", info)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    addrs = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]  # fmt: skip
    zc: AsyncZeroconf | None = None
    registration: asyncio.Task[object] | None = None
    try:  # as the daemon: no multicast-capable interface is not fatal
        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        service = AsyncServiceInfo(
            "_estafetbase._tcp.local.", f"baseline-{os.getpid()}._estafetbase._tcp.local.",
            port=bound, properties={"k": "v"}, parsed_addresses=addrs or None,
            server=f"baseline-{os.getpid()}.local.",
        )  # fmt: skip
        registration = asyncio.create_task(zc.async_register_service(service))
    except (OSError, RuntimeError) as exc:
        print(f"zeroconf unavailable: {exc}", file=sys.stderr)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    notify("READY=1")
    await done.wait()
    notify("STOPPING=1")
    if zc is not None:
        with contextlib.suppress(Exception):
            if registration is not None:
                await registration
            await zc.async_unregister_all_services()
        await zc.async_close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0"))
