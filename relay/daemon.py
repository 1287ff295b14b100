"""Running a node as a long-lived process: signals, systemd readiness, logging.

One process, never forking (Android kills detached children). ``READY=1`` goes to
``$NOTIFY_SOCKET`` once the store is open and the socket bound; ``STOPPING=1`` at shutdown.
SIGTERM and SIGINT stop the node cleanly: background tasks are cancelled, in-flight writes finish
on the store's writer thread, the database is closed. No extra dependency for sd_notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


def sd_notify(message: str) -> bool:
    """Send one datagram to systemd's notify socket, if there is one."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())
        return True
    return False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (structured logs)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "INFO", as_json: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json is None:
        as_json = not sys.stderr.isatty()
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve_until_signalled(
    start: Callable[[], Awaitable[Any]],
    stop: Callable[[], Awaitable[Any]],
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Start, report ready, wait for SIGTERM/SIGINT, stop."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)
    t0 = time.monotonic()
    await start()
    sd_notify("READY=1")
    logging.getLogger("estafet").info("ready in %.3fs", time.monotonic() - t0)
    if on_ready is not None:
        on_ready()
    try:
        await done.wait()
    finally:
        sd_notify("STOPPING=1")
        await stop()
