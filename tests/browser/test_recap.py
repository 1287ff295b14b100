"""The PPK recap at ``/`` on a gateway, in Debian's Chromium at 360 px and 1,400 px: the same
layout as the KPU overview, for the gateway's kecamatan (Hampang), computed from the signed
results the gateway holds, with no TPS links (a gateway serves no TPS pages). Screenshots go
to docs/screenshots/recap-*.png.

Real parts: a gateway node (its store, trust store and HTTP API) on a loopback port, results
signed by per-TPS chair keys and accepted through the node's own accept path, photo blobs
written to its blob store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from estafet.demo.forms import plausible_form
from estafet.demo.sheet import sheet_png
from estafet.relay.accept import accept_one
from estafet.relay.node import Node
from tests.browser.conftest import (
    SHOTS,
    VIEWPORTS,
    LoopThread,
    fits,
    no_serious_violations,
)
from tests.browser.test_overview import CLOSE, PAIRS, named_world
from tests.kit import World
from tests.relay.nodes import make_node

pytestmark = pytest.mark.browser
HAMPANG = "630214"


def fill(world: World, gateway: Node) -> int:
    """Results for three of every four Hampang TPS, with their photos; returns how many TPS."""
    sdb = gateway.store.sync_db()
    tps_all = sorted(t for t in world.manifest.tps if t.startswith(HAMPANG))
    counted = [t for i, t in enumerate(tps_all) if i % 4 != 3]
    t = CLOSE + 300
    for i, tps in enumerate(counted):
        key, cert = world.officer(f"chair-{tps}", scope=(tps,))
        for election, ballots in (("gubernur", [1, 2]), ("bupati", [1, 2, 3])):
            doc = plausible_form(election, tps, ballots, i % 12)
            photos = [sheet_png(tps, election, s, doc["votes"], doc["valid"], doc["invalid"])
                      for s in (1, 2, 3)]  # fmt: skip
            env, _ = world.result(key, cert, photos=photos, created=t, **doc)
            out = accept_one(sdb, gateway.trust, env.encode(), peer="", origin="relayed",
                             scope=HAMPANG, now=t)  # fmt: skip
            assert out.status == "stored", out
            for ref, data in zip(env.body.photos, photos, strict=True):  # type: ignore[union-attr]
                gateway.store.blobs.write_whole(ref.sha256, data)
                sdb.add_blob(ref.sha256, len(data), t)
        t += 420
    return len(counted)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    world = named_world()
    node = make_node(world, tmp_path_factory.mktemp("gw"), "gw", role="gateway", scope=(HAMPANG,))
    counted = fill(world, node)
    with LoopThread() as loop:
        loop.run(node.start())
        try:
            yield f"http://127.0.0.1:{node.port}", counted
        finally:
            loop.run(node.stop())


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_recap_has_the_overview_layout(
    browser: Any, gateway: tuple[str, int], axe_js: str, width: str
) -> None:
    url, counted = gateway
    vp = VIEWPORTS[width]
    page = browser.new_page(viewport=vp)
    page.goto(url + "/")
    fits(page)
    bupati = page.locator("#e-bupati")
    assert f"{counted} / " in bupati.locator(".big").inner_text()
    lead = bupati.locator(".pair.lead")
    assert lead.count() == 1 and any(p in lead.inner_text() for p in PAIRS["bupati"])
    assert bupati.locator("svg.chart polyline").count() == 1  # progress over time drawn
    rows = bupati.locator("details.kec")
    assert rows.count() == 1 and "Hampang" in rows.first.inner_text()
    rows.first.locator("summary").click()
    desa = rows.first.locator(".desa strong").first
    assert desa.is_visible() and not desa.inner_text().isdigit()
    assert page.locator('a[href^="/tps/"]').count() == 0  # no TPS pages on a gateway
    fits(page)
    page.screenshot(path=str(SHOTS / f"recap-{width}.png"), full_page=True)
    no_serious_violations(page, axe_js)
    page.close()
