"""Enrollment from the app: before a device is enrolled ``estafet node run`` serves only this
screen. It shows the central server's URL and the root key's fingerprint from the KPU's
provisioning file (``<home>/provision.json``, see docs/phone.md) for the officer to check
against the KPU's sheet, takes the PIN and the one-time code, and enrolls. Then ``enrolled`` is
set and the daemon starts the node and the full app on the same port."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from estafet.protocol.errors import ProtocolError

from .port import PortError, WrongSecret, enroll_device, read_provision
from .routes import _fail, _json_body
from .server import LoopbackSite

log = logging.getLogger("estafet.app")


class EnrollService(LoopbackSite):
    def __init__(self, home: Path, listen: str) -> None:
        super().__init__(listen)
        self.home = home
        self.enrolled = asyncio.Event()
        self._busy = asyncio.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/state", self.state)
        app.router.add_post("/api/enroll", self.enroll)

    async def state(self, request: web.Request) -> web.Response:
        try:
            prov: dict[str, str] | None = read_provision(self.home)
            problem = ""
        except PortError as exc:
            prov, problem = None, str(exc)
        return web.json_response({"enrolled": False, "locked": False, "provision": prov,
                                  "problem": problem, "retry_after": 0,
                                  "identity": {"role": "", "scope": []}})  # fmt: skip

    async def enroll(self, request: web.Request) -> web.Response:
        wait = self.guard.lock.retry_after()
        if wait > 0:
            return _fail(429, "wait", round(wait))
        body = await _json_body(request)
        secret, code = body.get("secret"), body.get("code")
        if not isinstance(secret, str) or not isinstance(code, str) or len(code) > 100:
            return _fail(400, "bad-json")
        if self._busy.locked():
            return _fail(409, "busy")
        async with self._busy:
            try:
                cert = await enroll_device(self.home, secret, code.strip())
            except WrongSecret:
                self.guard.lock.failed()
                return _fail(403, "wrong-secret", round(self.guard.lock.retry_after()))
            except (PortError, ProtocolError) as exc:
                return _fail(400, "enroll-refused", str(exc))
        log.info("enrolled from the app as %s", cert["role"])
        self.enrolled.set()
        return web.json_response(cert)
