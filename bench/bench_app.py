"""Figure 10: the officer's phone app, against real processes (central server, chair's phone).

* 11a bytes of the app's first load (every response the browser receives until the lock screen
  is up), against the goal of 150 KB;
* 11b time to first render in a 360x740 Chromium with the CPU slowed 4x through CDP: from
  navigation start to the lock screen drawn by the app's script (median of N loads), against a
  baseline of a bare static page of the same size loaded the same way in the same run;
* 11c time from "sign" (POST /api/sign) to the result stored, with three ~2000 px JPEG-sized
  photos in the draft, against signing alone (``seal`` of the same result, in process).

Usage::

    python bench/bench_app.py [--quick] [--json bench/results/app.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import print_rows, row, write_json  # noqa: E402

from tests.app.world import PASS, World  # noqa: E402
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.test_phone import fields  # noqa: E402

GOAL_BYTES = 150 * 1024
GOAL_RENDER_MS = 1000.0
PHOTO_BYTES = 450_000  # a 2000x1500 JPEG of a printed form at quality 0.85 is ~300-600 KB
READY_JS = """() => new Promise((ok) => {
  const done = () => ok(performance.now());
  if (document.getElementById('secret')) return done();
  new MutationObserver((_, o) => {
    if (document.getElementById('secret')) { o.disconnect(); done(); }
  }).observe(document.documentElement, {childList: true, subtree: true});
})"""


COOKIES: dict[int, str] = {}


def call(port: int, method: str, path: str, token: str, body: bytes | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    hdrs = {"Host": f"127.0.0.1:{port}", "X-Estafet-Token": token}
    if port in COOKIES:
        hdrs["Cookie"] = COOKIES[port]
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if cookie := resp.getheader("Set-Cookie"):
        COOKIES[port] = cookie.split(";", 1)[0]
    assert resp.status == 200, (resp.status, data[:200])
    return json.loads(data) if data.startswith(b"{") else data


def browser_figures(url: str, loads: int) -> tuple[int, list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        size = 0
        app_ms: list[float] = []
        base_ms: list[float] = []
        page_bytes = b""
        for i in range(loads):
            ctx = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True,
                                      is_mobile=True)  # fmt: skip
            page = ctx.new_page()
            ctx.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 4})
            got: list[Any] = []
            page.on("response", lambda r, got=got: got.append(r))
            page.goto(url)
            app_ms.append(page.evaluate(READY_JS))
            if i == 0:
                page.wait_for_load_state("networkidle")
                size = sum(len(r.body()) for r in got)
                page_bytes = page.content().encode()
            # baseline: a static page of the same size, no script, in the same throttled tab
            static = "<!doctype html><meta charset=utf-8><p id=secret>x</p>" + "<!-- " + (
                "x" * max(0, len(page_bytes) - 80)) + " -->"  # fmt: skip
            page.goto("data:text/html;charset=utf-8," + quote(static))
            base_ms.append(page.evaluate(READY_JS))
            ctx.close()
        browser.close()
    return size, app_ms, base_ms


def sign_figures(w: World, runs: int) -> tuple[list[float], list[float]]:
    from estafet.crypto.keys import SigningKey
    from estafet.crypto.seal import seal
    from estafet.protocol.form import parse_form
    from estafet.protocol.objects import ResultBody
    from tests.kit import form_json, photo_bytes, photo_refs

    dev = w.devices["chair"]
    page = http.client.HTTPConnection("127.0.0.1", dev.app_port, timeout=10)
    page.request("GET", "/", headers={"Host": f"127.0.0.1:{dev.app_port}"})
    token = page.getresponse().read().decode().split('const TOKEN = "', 1)[1].split('"', 1)[0]
    call(dev.app_port, "POST", "/api/unlock", token, json.dumps({"secret": PASS}).encode())
    with_photos: list[float] = []
    alone: list[float] = []
    key = SigningKey.generate()
    prev = ""
    for i in range(runs):
        typed = fields()
        draft: dict[str, Any] = {"fields": typed}
        call(dev.app_port, "PUT", "/api/draft/bupati", token, json.dumps(draft).encode())
        if prev:  # each run a correction of the last: a new signed object every time
            call(dev.app_port, "POST", f"/api/correct/{prev}", token,
                 json.dumps({"reason": f"bench {i}"}).encode())  # fmt: skip
        for sheet in (1, 2, 3):
            call(dev.app_port, "PUT", f"/api/draft/bupati/photo/{sheet}", token,
                 photo_bytes(f"bench-{i}-{sheet}", PHOTO_BYTES))  # fmt: skip
        t0 = time.perf_counter()
        prev = call(dev.app_port, "POST", "/api/sign/bupati", token)["id"]
        with_photos.append((time.perf_counter() - t0) * 1000)
        photos = [photo_bytes(f"alone-{i}-{s}", PHOTO_BYTES) for s in (1, 2, 3)]
        form = parse_form(form_json())
        t0 = time.perf_counter()
        seal("result", ResultBody(form, photo_refs(photos), ()), key, int(time.time()))
        alone.append((time.perf_counter() - t0) * 1000)
    return with_photos, alone


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    loads, runs = (2, 2) if args.quick else (7, 7)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp))
        try:
            w.central()
            chair = w.device("chair", "kpps-chair", central=True)
            size, app_ms, base_ms = browser_figures(chair.app_url, loads)
            signed, alone = sign_figures(w, runs)
        finally:
            w.stop()
    q = args.quick
    render = statistics.median(app_ms)
    rows = [
        row("11a", "app first load (lock screen), bytes", float(size), "B",
            target="<= 150 KB", ok=None if q else size <= GOAL_BYTES, quick=q),
        row("11b", "first render, 360 px, CPU 4x slower", render, "ms",
            baseline=statistics.median(base_ms), target="< 1000 ms",
            ok=None if q else render < GOAL_RENDER_MS, quick=q,
            spread=(max(app_ms) - min(app_ms)) / render, note="baseline: static page, same size"),
        row("11c", "sign -> stored, 3 photos of 450 KB (app)", statistics.median(signed), "ms",
            baseline=statistics.median(alone), target="report", ok=None, quick=q,
            spread=(max(signed) - min(signed)) / statistics.median(signed),
            note="baseline: seal() alone"),
    ]  # fmt: skip
    print_rows(rows, "figure 11: the officer's phone app")
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
