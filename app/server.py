"""The app's listener, owned by the daemon's process: :class:`AppService` binds a loopback port
(never the peer port), serves the one-page app and its API, and tells the officer (through
``termux-notification`` where installed) when a receipt from the KPU arrives.

The page is one response: HTML with its CSS, JS and both message catalogs inline, so a first
load is a single small request and nothing is ever fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from importlib import resources
from typing import Any

from aiohttp import web

from .guard import Guard, GuardError, Lock, loopback_listen
from .port import NodePort
from .routes import Api

log = logging.getLogger("estafet.app")
LANGS = ("id", "en")
NOTIFY_POLL = 5.0
NOTIFY_TIMEOUT = 10.0


def catalogs() -> dict[str, dict[str, str]]:
    """Every language's message catalog (``messages/<lang>.json``)."""
    base = resources.files("estafet.app") / "messages"
    return {lang: json.loads((base / f"{lang}.json").read_text("utf-8")) for lang in LANGS}


def render_page(token: str) -> bytes:
    """The page with the session token and the catalogs written in."""
    static = resources.files("estafet.app") / "static"
    html = (static / "index.html").read_text("utf-8")
    parts = {
        "/*CSS*/": (static / "app.css").read_text("utf-8"),
        "/*JS*/": (static / "app.js").read_text("utf-8"),
        "/*CATALOGS*/": json.dumps(catalogs(), ensure_ascii=False, separators=(",", ":")),
        "__TOKEN__": token,
    }
    for mark, text in parts.items():
        html = html.replace(mark, text)
    return html.encode("utf-8")


class LoopbackSite:
    """The page and an API on a loopback port, behind a :class:`Guard`. Subclasses add routes."""

    def __init__(self, listen: str, *, idle: float | None = None) -> None:
        host, _, p = listen.rpartition(":")
        try:
            self.want_port = int(p)
        except ValueError as exc:
            raise GuardError(f"bad app address {listen!r}: HOST:PORT") from exc
        self.host = loopback_listen(host or "127.0.0.1")
        self.guard = Guard(lock=Lock(idle=idle) if idle else Lock())
        self._runner: web.AppRunner | None = None
        self._page = b""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.guard.port}/"

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard.middleware], client_max_size=16 * 2**20)
        app.router.add_get("/", self.index)
        self.add_routes(app)
        return app

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.want_port, reuse_address=True, shutdown_timeout=2.0
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise GuardError(
                f"cannot open the app on {self.host}:{self.want_port}: {exc.strerror or exc}"
            ) from exc
        sockets = getattr(site._server, "sockets", None) or []
        self.guard.port = sockets[0].getsockname()[1] if sockets else self.want_port
        self._page = render_page(self.guard.token)
        log.info("officer app on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class AppService(LoopbackSite):
    """The officer's app for one running node, and the receipt notifications."""

    def __init__(self, port: NodePort, listen: str, *, idle: float | None = None) -> None:
        super().__init__(listen, idle=idle)
        self.port_ = port
        self._task: asyncio.Task[Any] | None = None

    def add_routes(self, app: web.Application) -> None:
        Api(self.port_, self.guard).add_routes(app)

    async def start(self) -> None:
        await super().start()
        self._task = asyncio.create_task(self._watch_receipts(), name="app-notify")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await super().stop()

    # --- receipts -> notification ----------------------------------------------------------
    async def _watch_receipts(self) -> None:
        exe = shutil.which("termux-notification")
        if exe is None:
            return
        seen: set[str] | None = None  # receipts held at start are old news
        while True:
            try:
                results = await self.port_.results(None)
            except Exception:  # the store is closing, or busy: try again next round
                log.debug("receipt watch skipped a round", exc_info=True)
                await asyncio.sleep(NOTIFY_POLL)
                continue
            have = {f"{r['id']}:{x['log_index']}" for r in results for x in r["receipts"]}
            if seen is not None:
                for r in results:
                    if any(f"{r['id']}:{x['log_index']}" not in seen for x in r["receipts"]):
                        await notify(exe, r)
            seen = have
            await asyncio.sleep(NOTIFY_POLL)


async def notify(exe: str, result: dict[str, Any]) -> None:
    """One ``termux-notification`` (a short-lived child, awaited, with a timeout)."""
    rc = result["receipt"] or {}
    text = f"TPS {result['tps']} {result['election']}: diterima KPU #{rc.get('log_index', '?')}"
    proc = await asyncio.create_subprocess_exec(
        exe, "--id", "estafet-receipt", "--title", "Estafet", "--content", text,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), NOTIFY_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
