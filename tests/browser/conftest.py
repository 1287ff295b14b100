"""Shared pieces of the browser tests: Debian's Chromium under Playwright, axe-core from the npm
package (installed into pytest's cache on first use), and the layout and accessibility checks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
VIEWPORTS = {"360": {"width": 360, "height": 740}, "1400": {"width": 1400, "height": 1000}}
CAPTURE_JS = """() => ({sw: document.documentElement.scrollWidth,
  cw: document.documentElement.clientWidth})"""


@pytest.fixture(scope="module")
def axe_js(request: pytest.FixtureRequest) -> str:
    """axe-core from the npm package, installed into pytest's cache on first use."""
    cache = Path(request.config.cache.mkdir("axe-core"))
    path = cache / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed for the accessibility check: apt-get install npm")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache),
                        "axe-core@4"], check=True, timeout=300, capture_output=True)  # fmt: skip
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    api = pytest.importorskip("playwright.sync_api")
    pw = api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


def no_serious_violations(page: Any, axe: str) -> None:
    # evaluated through the DevTools protocol: the page's CSP (rightly) refuses a script tag
    assert page.evaluate(axe + "\n;typeof axe") == "object"
    found = page.evaluate("async () => (await axe.run()).violations.map(v => "
                          "({id: v.id, impact: v.impact, n: v.nodes.length, "
                          "first: v.nodes[0] && v.nodes[0].html}))")  # fmt: skip
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    assert not bad, bad


def fits(page: Any) -> None:
    size = page.evaluate(CAPTURE_JS)
    assert size["sw"] <= size["cw"], f"horizontal overflow: {size}"


class LoopThread:
    """An asyncio loop in a thread (Playwright's sync API owns the test's own thread): servers
    start and stop on it through :meth:`run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run ``app`` on a free loopback port; returns the runner (to clean up) and its URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
