"""HTTP face of the central server: aiohttp routes added to the node's application.

Routes: ``GET /`` (dashboard), ``GET /tps/{code}`` (TPS page), ``GET /tps/{code}/tps-{code}.zip``
(the TPS's signed objects, photos and trust anchor, for ``estafet verify``), ``GET /api/status``
(JSON),
``GET /metrics`` (Prometheus), ``POST /v1/enroll`` (msgpack in and out). The node's own API
serves ``/v1/blobs/{sha256hex}``, which the TPS page uses for photos.

Every :class:`~.ingest.Central` call blocks on SQLite, so it runs on a single-thread executor
owned by the application (created and shut down in ``app.cleanup_ctx``), never on the event loop.
The Central itself lives under the caller's typed ``web.AppKey``; this module keeps no globals
beyond its constant keys. The web layer is the one place that reads the clock.

``/`` and ``/api/status`` come from a :class:`~estafet.pages.cache.StatusCache` keyed by
``Central.version`` (bumped by ingest on every log entry and photo): computed once per change,
answered with a weak ETag so a page that polls gets ``304 Not Modified`` until something changes.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

from aiohttp import web

from estafet.pages.cache import Snapshot, StatusCache, snapshot
from estafet.pages.dashboard import csp, render_dashboard, render_error, render_tps
from estafet.protocol import codec
from estafet.protocol.errors import ProtocolError
from estafet.relay.blobs import BlobDir

from .errors import DatabaseError, EnrollError, UnknownTpsError
from .ingest import Central
from .tps_bundle import tps_bundle

MSGPACK = "application/msgpack"
MAX_ENROLL_BODY = 1024
ENROLL_LIMITS = codec.Limits(
    max_bytes=MAX_ENROLL_BODY, max_str=64, max_bin=64, max_array=0, max_map=2
)
ENROLL_STATUS = {
    "unknown-code": 403,
    "already-used": 409,
    "expired": 410,
    "rate-limited": 429,
    "bad-key": 400,
    "bad-request": 400,
}
EXECUTOR_KEY = web.AppKey("estafet.central.executor", ThreadPoolExecutor)
CACHE_KEY = web.AppKey("estafet.central.status_cache", StatusCache)
T = TypeVar("T")
log = logging.getLogger("estafet.central.web")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """Trusted reverse proxies as networks (``127.0.0.1``, ``10.0.0.0/8``); ValueError if bad."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(remote: str | None, forwarded: str | None, proxies: tuple[Network, ...]) -> str:
    """The client a request comes from, for enrollment rate limits.

    ``X-Forwarded-For`` is believed only when the TCP peer is a trusted proxy; then the
    rightmost entry that is not itself a trusted proxy is the client (entries to its left were
    written by the client and may be lies). Anyone else's header is ignored (issue 11, item 5)."""
    remote = remote or "unknown"
    if not forwarded or not _trusted(remote, proxies):
        return remote
    for hop in reversed([h.strip() for h in forwarded.split(",")][-16:]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote


def add_central_routes(
    app: web.Application,
    central_key: web.AppKey[Central],
    *,
    clock: Callable[[], int] = lambda: int(time.time()),
) -> None:
    """Add the central server's routes to ``app``; ``app[central_key]`` holds the Central."""
    handlers = _Handlers(central_key, clock)
    app.cleanup_ctx.append(_executor)
    app.on_startup.append(handlers.make_cache)
    app.router.add_get("/", handlers.dashboard)
    app.router.add_get(r"/tps/{code:[0-9]{13}}", handlers.tps_page)
    app.router.add_get(r"/tps/{code:[0-9]{13}}/{name:tps-[0-9]{13}\.zip}", handlers.tps_zip)
    app.router.add_get("/api/status", handlers.api_status)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_post("/v1/enroll", handlers.enroll)


async def _executor(app: web.Application) -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estafet-central-db")
    app[EXECUTOR_KEY] = executor
    yield
    executor.shutdown(wait=True)


class _Handlers:
    def __init__(self, central_key: web.AppKey[Central], clock: Callable[[], int]) -> None:
        self.key = central_key
        self.clock = clock

    async def _run(self, request: web.Request, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the database thread. A damaged central.db or a full disk answers 507
        with one line (and logs one line), never a traceback and a 500 (issue 11, item 9)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(request.app[EXECUTOR_KEY], fn, *args)
        except (sqlite3.DatabaseError, DatabaseError, OSError) as exc:
            self._unusable(request, exc)

    async def _snapshot(self, request: web.Request) -> Snapshot:
        """The cached status view (computed on the database thread), with :meth:`_run`'s 507."""
        try:
            return await request.app[CACHE_KEY].get()
        except (sqlite3.DatabaseError, DatabaseError, OSError) as exc:
            self._unusable(request, exc)

    @staticmethod
    def _unusable(request: web.Request, exc: Exception) -> NoReturn:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise exc
        line = f"central.db unusable ({type(exc).__name__}: {exc}): disk full or damaged"
        log.error("%s %s: %s", request.method, request.path, line)
        raise web.HTTPInsufficientStorage(text=line + "\n") from None

    def _central(self, request: web.Request) -> Central:
        return request.app[self.key]

    @staticmethod
    def _html(text: str, nonce: str, status: int = 200) -> web.Response:
        return web.Response(
            text=text,
            status=status,
            content_type="text/html",
            headers={
                "Content-Security-Policy": csp(nonce),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    async def make_cache(self, app: web.Application) -> None:
        central = app[self.key]

        def compute() -> Snapshot:
            version = central.version  # read first: a change while computing stays visible
            return snapshot(version, central.status(), render_dashboard)

        async def run() -> Snapshot:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(app[EXECUTOR_KEY], compute)

        app[CACHE_KEY] = StatusCache(lambda: central.version, run)

    @staticmethod
    def _not_modified(request: web.Request, snap: Snapshot) -> web.Response | None:
        if snap.matches(request.headers.get("If-None-Match")):
            return web.Response(
                status=304, headers={"ETag": snap.etag, "Cache-Control": "no-cache"}
            )
        return None

    async def dashboard(self, request: web.Request) -> web.Response:
        snap = await self._snapshot(request)
        if (same := self._not_modified(request, snap)) is not None:
            return same
        nonce = secrets.token_urlsafe(16)
        resp = self._html("", nonce)
        resp.body = snap.page(nonce)
        resp.headers["ETag"] = snap.etag
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    async def tps_page(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        nonce = secrets.token_urlsafe(16)
        try:
            detail = await self._run(request, self._central(request).tps_detail, code)
        except UnknownTpsError as exc:
            return self._html(render_error("Unknown TPS", str(exc), nonce), nonce, 404)
        return self._html(render_tps(detail, nonce), nonce)

    async def tps_zip(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        if request.match_info["name"] != f"tps-{code}.zip":
            raise web.HTTPNotFound()
        central = self._central(request)
        if central.trust.manifest is None or code not in central.trust.manifest.tps:
            raise web.HTTPNotFound()
        anchor = {
            "root_public": central.trust.root_public.hex(),
            "root_id": central.trust.root_id.hex(),
            "name": central.trust.manifest.name,
        }
        trust = json.dumps(anchor, indent=2).encode()  # what `central trust` prints  # fmt: skip
        blobs = BlobDir(central.home / "node" / "blobs")

        def build() -> bytes:
            with central.db.lock:
                a = central.authority
                anchors = [a.manifest_env, a.revocation_env, a.issuer_cert]
                return tps_bundle(central.db, code, trust, blobs, [x.encode() for x in anchors])

        data = await self._run(request, build)
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="tps-{code}.zip"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def api_status(self, request: web.Request) -> web.Response:
        snap = await self._snapshot(request)
        if (same := self._not_modified(request, snap)) is not None:
            return same
        return web.Response(
            body=snap.json,
            content_type="application/json",
            headers={"Cache-Control": "no-cache", "ETag": snap.etag},
        )

    async def metrics(self, request: web.Request) -> web.Response:
        text = await self._run(request, self._central(request).metrics)
        return web.Response(
            body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def enroll(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_ENROLL_BODY:
            return _msgpack({"error": "bad-request", "detail": "request too large"}, 413)
        body = await request.content.read(MAX_ENROLL_BODY + 1)
        if len(body) > MAX_ENROLL_BODY:
            return _msgpack({"error": "bad-request", "detail": "request too large"}, 413)
        try:
            msg = codec.decode(body, ENROLL_LIMITS)
        except ProtocolError as exc:
            return _msgpack({"error": "bad-request", "detail": str(exc)}, 400)
        if (
            not isinstance(msg, dict)
            or set(msg) != {"code", "public_key"}
            or not isinstance(msg["code"], str)
            or not isinstance(msg["public_key"], bytes)
        ):
            detail = 'expected {"code": str, "public_key": 32 bytes}'
            return _msgpack({"error": "bad-request", "detail": detail}, 400)
        central = self._central(request)
        client = client_address(
            request.remote, request.headers.get("X-Forwarded-For"), central.trusted_proxies
        )
        try:
            result = await self._run(
                request, central.enroll, msg["code"], msg["public_key"], self.clock(), client
            )
        except EnrollError as exc:
            status = ENROLL_STATUS.get(exc.reason, 403)
            return _msgpack({"error": exc.reason, "detail": exc.detail}, status)
        return _msgpack(result.to_wire(), 200)


def _msgpack(value: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=codec.encode(value), status=status, content_type=MSGPACK)
