"""What keeps other web pages and other people away from the signing app.

Any page open in the phone's browser can send requests to ``127.0.0.1``. So:

* the listener binds a loopback address only (:func:`loopback_listen` refuses anything else);
* the ``Host`` header must name our own loopback address and port (a DNS-rebinding page sends
  its own host name and is refused before anything is read);
* every ``/api/`` request carries the session token (``X-Estafet-Token``), which only our own
  page knows: it is written into the page, which other origins cannot read (no CORS headers are
  ever sent, and a custom header forces a preflight we never grant);
* a present ``Origin`` must be ours and ``Sec-Fetch-Site`` must not be cross-site;
* the page may not be framed (no clickjacking of the sign button);
* the device key is unlocked with the officer's PIN or passphrase and dropped after idle time;
  wrong guesses slow down. The unlock belongs to the browser that typed the PIN (an HttpOnly,
  SameSite=Strict session cookie): another app on the phone can read the page and its token
  from the loopback port, but cannot use an unlock it did not make.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from estafet.crypto.keys import SigningKey

from .errors import AppError

IDLE_SECONDS = 600
FREE_TRIES = 5
TRY_DELAY = 30.0
COOKIE = "estafet_session"
OPEN_PATHS = frozenset({"/api/state", "/api/unlock", "/api/enroll"})
"""API paths that answer while locked (still token-checked)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class GuardError(AppError):
    """The app cannot start with this configuration (e.g. a non-loopback address)."""


def loopback_listen(host: str) -> str:
    """``host`` if it is a loopback address (127.0.0.0/8, ::1); raise otherwise."""
    name = host.strip("[]")
    if name == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError as exc:
        raise GuardError(f"app address {host!r} must be a loopback IP like 127.0.0.1") from exc
    if not ip.is_loopback:
        raise GuardError(f"app address {host!r} is not loopback: the app never leaves the phone")
    return name


@dataclass
class Lock:
    """The unlocked key, if any, the session (browser) that unlocked it, and its last use."""

    idle: float = IDLE_SECONDS
    clock: Callable[[], float] = time.monotonic
    key: SigningKey | None = None
    session: str = ""
    last: float = 0.0
    failures: int = 0
    wait_until: float = 0.0

    def current(self, session: str) -> SigningKey | None:
        """The key, for the session that unlocked it, while it has not been idle too long."""
        if self.key is not None and self.clock() - self.last > self.idle:
            self.lock()
        if self.key is None or not hmac.compare_digest(session.encode(), self.session.encode()):
            return None
        return self.key

    def touch(self, session: str) -> None:
        if self.current(session) is not None:
            self.last = self.clock()

    def retry_after(self) -> float:
        return max(0.0, self.wait_until - self.clock())

    def unlocked(self, key: SigningKey) -> str:
        """Hold ``key`` for a new session; returns the session id (the cookie's value)."""
        self.key, self.last, self.failures = key, self.clock(), 0
        self.session = secrets.token_urlsafe(32)
        return self.session

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= FREE_TRIES:
            self.wait_until = self.clock() + TRY_DELAY * (self.failures - FREE_TRIES + 1)

    def lock(self) -> None:
        self.key, self.session = None, ""


@dataclass
class Guard:
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    lock: Lock = field(default_factory=Lock)

    def key_for(self, request: web.Request) -> SigningKey | None:
        """The unlocked key, if ``request`` comes from the browser session that unlocked it."""
        return self.lock.current(request.cookies.get(COOKIE, ""))

    def hosts(self) -> set[str]:
        return {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    def refuse(self, request: web.Request) -> str | None:
        """Why ``request`` must be refused, or None."""
        if request.host not in self.hosts():
            return "foreign-host"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self.hosts()}:
            return "foreign-origin"
        if request.headers.get("Sec-Fetch-Site", "same-origin") in ("cross-site", "same-site"):
            return "cross-site"
        if request.path.startswith("/api/"):
            sent = request.headers.get("X-Estafet-Token", "")
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                return "no-token"
        return None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> web.StreamResponse:
        why = self.refuse(request)
        if why is not None:
            resp: web.StreamResponse = web.json_response({"error": why}, status=403)
        elif (
            request.path.startswith("/api/")
            and request.path not in OPEN_PATHS
            and self.key_for(request) is None
        ):
            resp = web.json_response({"error": "locked"}, status=423)
        else:
            if request.method != "GET":  # polling the status card is not the officer's activity
                self.lock.touch(request.cookies.get(COOKIE, ""))
            resp = await handler(request)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp
