"""The overview and TPS pages in a real browser (Debian's Chromium via Playwright) at a phone's
360x740 and a laptop's 1400x1000, on a central server holding most of Kotabaru: nothing runs off
the screen sideways, the tally, the chart and the kecamatan rows are on screen at a readable
size, a kecamatan row opens to desa names, the TPS page shows three readable photos, and axe-core
finds no serious or critical accessibility violation. Screenshots go to docs/screenshots/.

The central server is real (central.db, ingest, the aiohttp routes on a loopback port in a
thread); results are signed by per-TPS chair keys with demo C.Hasil sheets as photos. The one
stand-in is ``/v1/blobs/{sha}``, which the node API serves in production: here a small handler
serves the same files from the central's blob directory. The TPS's verify zip is downloaded and
checked with ``estafet verify`` in a subprocess.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from estafet.central.ingest import Central
from estafet.central.web import add_central_routes
from estafet.crypto.seal import seal
from estafet.demo.forms import plausible_form
from estafet.demo.sheet import sheet_png
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.objects import ResultBody
from estafet.relay.blobs import BlobDir
from tests.browser.conftest import (
    SHOTS,
    VIEWPORTS,
    LoopThread,
    fits,
    no_serious_violations,
    serve_app,
)
from tests.central.conftest import world_authority
from tests.kit import NOW, World, kotabaru_manifest, photo_refs

pytestmark = pytest.mark.browser

CLOSE = NOW + 5 * 3600  # 13:00 WITA on Pilkada day
PAIRS = {
    "gubernur": ("Muhidin - Hasnuryadi Sulaiman", "Raudatul Jannah - Akhmad Rozanie Himawan"),
    "bupati": (
        "Sayed Jafar - Syairi Mukhlis",
        "Andi Rudi Latif - Sumarlin",
        "H. Abdul Ghani - Ahmad",
    ),
}  # illustrative names for the screenshots, not the fixture's
CENTRAL = web.AppKey("central", Central)


def central_app(central: Central, blobs: BlobDir) -> web.Application:
    """The central's routes plus the blob handler the node API provides in production."""
    app = web.Application()
    app[CENTRAL] = central
    add_central_routes(app, CENTRAL, clock=lambda: CLOSE + 7200)

    async def blob(request: web.Request) -> web.StreamResponse:
        sha = bytes.fromhex(request.match_info["sha"])
        return web.FileResponse(blobs.path(sha), headers={"Content-Type": "image/png"})

    app.router.add_get(r"/v1/blobs/{sha:[0-9a-f]{64}}", blob)
    return app


def named_world() -> World:
    base = kotabaru_manifest()
    elections = tuple(dataclasses.replace(e, pairs=PAIRS[e.kind]) for e in base.elections)
    regions = {**base.regions, "63": "Kalimantan Selatan", "6302": "Kabupaten Kotabaru"}
    return World(manifest=dataclasses.replace(base, elections=elections, regions=regions))


def fill(central: Central, world: World, blobs: BlobDir) -> dict[str, Any]:
    """Results for about 70% of Kotabaru's TPS (both elections), arriving over three hours
    after polls close, most with photos; one conflict. Returns facts the test checks."""
    tps_all = sorted(world.manifest.tps)
    counted = [t for i, t in enumerate(tps_all) if i % 10 < 7]
    t = CLOSE + 600
    for i, tps in enumerate(counted):
        key, cert = world.officer(f"chair-{tps}", scope=(tps,))
        for election, ballots in (("gubernur", [1, 2]), ("bupati", [1, 2, 3])):
            doc = plausible_form(election, tps, ballots, i % 12)
            form = parse_form(doc)
            photos = [sheet_png(tps, election, s, doc["votes"], doc["valid"], doc["invalid"])
                      for s in (1, 2, 3)]  # fmt: skip
            warn = tuple(sorted(w.rule for w in check_form(form, world.manifest)[1]))
            env = seal("result", ResultBody(form, photo_refs(photos), warn), key, t,
                       chain=world.chain(cert))  # fmt: skip
            assert central.ingest(env.encode(), t)[1] == "accepted"
            if i % 9:  # every ninth TPS still waits for its photos
                for ref, data in zip(photo_refs(photos), photos, strict=True):
                    path = blobs.path(ref.sha256)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    central.note_blob(ref.sha256, t)
        t += int(10800 / len(counted))
    twin = counted[3]
    key, cert = world.officer(f"chair-{twin}", scope=(twin,))
    doc = plausible_form("bupati", twin, [1, 2, 3], 7)
    form = parse_form(doc)
    photos = [
        sheet_png(twin, "bupati", s, doc["votes"], doc["valid"], doc["invalid"]) for s in (1, 2, 3)
    ]
    env = seal("result", ResultBody(form, photo_refs(photos), ()), key, t, chain=world.chain(cert))
    assert central.ingest(env.encode(), t)[1] == "conflict"
    return {"tps": counted[1], "missing": tps_all[8]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    world = named_world()
    authority = world_authority(world, tmp_path_factory.mktemp("central"))
    central = Central(authority.home, authority)
    blobs = BlobDir(authority.home / "node" / "blobs")
    facts = fill(central, world, blobs)
    try:
        with LoopThread() as loop:
            runner, url = loop.run(serve_app(central_app(central, blobs)))
            try:
                yield url, facts
            finally:
                loop.run(runner.cleanup())
    finally:
        central.close()


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_overview_reads_at_a_glance(browser: Any, site: Any, axe_js: str, width: str) -> None:
    url, _ = site
    vp = VIEWPORTS[width]
    page = browser.new_page(viewport=vp)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url')}")
            if m.type == "error" and not str(m.location.get("url")).endswith("/favicon.ico")
            else None)  # fmt: skip
    page.goto(url + "/")
    fits(page)
    bupati = page.locator("#e-bupati")
    # who leads, with names and percentages, inside the screen's width
    lead = bupati.locator(".pair.lead")
    assert lead.count() == 1 and "unggul" in lead.inner_text() and "%" in lead.inner_text()
    assert any(p in lead.inner_text() for p in PAIRS["bupati"])
    for loc in (bupati.locator(".pair").first, bupati.locator("svg.chart"),
                bupati.locator("details.kec").first):  # fmt: skip
        loc.scroll_into_view_if_needed()
        box = loc.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= vp["width"]
    chart = bupati.locator("svg.chart").bounding_box()
    assert chart is not None and chart["width"] >= 280  # readable on a phone
    first_font = page.evaluate(
        "() => getComputedStyle(document.querySelector('.pair .name')).fontSize"
    )
    assert float(first_font.removesuffix("px")) >= 14
    # a kecamatan row opens to the missing TPS grouped by desa, with desa names
    row = bupati.locator("details.kec", has=page.locator(".desa a")).first
    row.locator("summary").click()
    desa = row.locator(".desa strong").first
    assert desa.is_visible() and not desa.inner_text().isdigit()
    fits(page)
    if width == "360":  # the first screen a phone shows, then the opened row
        row.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "overview-360-kecamatan.png"))
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / f"overview-{width}.png"))
    if width == "1400":
        page.screenshot(path=str(SHOTS / "overview-1400-full.png"), full_page=True)
    assert page.locator("#chase tbody tr").count() > 0
    no_serious_violations(page, axe_js)
    assert not errors, errors
    page.close()


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_tps_page_shows_readable_photos(browser: Any, site: Any, axe_js: str, width: str) -> None:
    url, facts = site
    vp = VIEWPORTS[width]
    page = browser.new_page(viewport=vp)
    page.goto(f"{url}/tps/{facts['tps']}")
    fits(page)
    imgs = page.locator("#e-bupati img")
    assert imgs.count() == 3
    for i in range(3):
        img = imgs.nth(i)
        img.scroll_into_view_if_needed()
        page.wait_for_function(
            "(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle()
        )
        box = img.bounding_box()
        assert box is not None and box["width"] >= 300 and box["x"] + box["width"] <= vp["width"]
    text = page.inner_text("body")
    assert "WITA" in text and "+08:00" in text and "posisi log" in text
    assert "estafet verify --trust" in text
    page.goto(f"{url}/tps/{facts['tps']}")
    page.screenshot(path=str(SHOTS / f"tps-{width}.png"), full_page=True)
    no_serious_violations(page, axe_js)
    page.close()


def test_the_verify_zip_checks_offline(site: Any, tmp_path: Path) -> None:
    url, facts = site
    tps = facts["tps"]
    with urllib.request.urlopen(f"{url}/tps/{tps}/tps-{tps}.zip", timeout=10) as r:
        data = r.read()
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    base = tmp_path / f"tps-{tps}"
    assert len(list((base / "estafet-bundle" / "blobs").iterdir())) == 6
    cmd = [
        sys.executable,
        "-m",
        "estafet.cli",
        "verify",
        "--trust",
        str(base / "trust.json"),
        str(base),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "INVALID" not in run.stdout and run.stdout.count("valid ") >= 4
