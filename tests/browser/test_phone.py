"""The KPPS chair's whole count night on a phone-sized Chromium (360x740, touch, CPU slowed 4x
through CDP), against real processes: the KPU central server, a village relay, the chair's
phone and a witness's phone, each an `estafet node run` with its app.

Numbers go in with a mistake (the red rule shows, signing is blocked), are fixed, three photos
go in through the file chooser (one too dark: a yellow warning), the page is reloaded mid-form
(the draft is intact), the chair signs, and the status card reaches "accepted by the KPU". The
witness's phone receives the result by sync, the witness agrees (signs an endorsement), and the
chair's screen shows it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.world import PASS, World, png
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.kit import form_json

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 360, "height": 740}, "has_touch": True, "is_mobile": True,
         "device_scale_factor": 2}  # fmt: skip
SLOW = 60_000


@pytest.fixture
def playwright_api() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        w.central()
        relay = w.device("relay", "relay", central=True)
        chair = w.device("chair", "kpps-chair", f"127.0.0.1:{relay.port}")
        w.device("witness", "witness", f"127.0.0.1:{chair.port}")
        yield w
    finally:
        w.stop()


def phone_page(browser: Any) -> Any:
    ctx = browser.new_context(**PHONE)
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def unlock(page: Any, url: str) -> None:
    page.goto(url)
    page.fill("#secret", PASS)
    page.click("#unlock")
    page.wait_for_selector("#lockbtn:not([hidden])")


def fields() -> dict[str, str]:
    f = form_json()
    out = {}
    for group in ("voters", "turnout", "ballots"):
        for k, v in f[group].items():
            if isinstance(v, dict):
                out.update({f"{group}.{k}.{s}": str(n) for s, n in v.items()})
            else:
                out[f"{group}.{k}"] = str(v)
    out.update({f"disabled.{s}": str(n) for s, n in f["disabled"].items()})
    out.update({f"votes.{k}": str(v) for k, v in f["votes"].items()})
    out.update(valid=str(f["valid"]), invalid=str(f["invalid"]))
    return out


def test_chair_flow_then_witness_agrees(playwright_api: Any, world: World, tmp_path: Path) -> None:
    chair, witness = world.devices["chair"], world.devices["witness"]
    shots = [tmp_path / f"sheet{i}.png" for i in (1, 2, 3)]
    shots[0].write_bytes(png(2400, 1800))
    shots[1].write_bytes(png(1800, 2400))
    shots[2].write_bytes(png(2400, 1800, level=12))  # taken in the dark
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = phone_page(browser)
        unlock(page, chair.app_url)
        page.click("#enter-bupati")
        typed = fields()
        for name, value in typed.items():
            page.fill(f'[id="f-{name}"]', "81" if name == "votes.2" else value)
        page.wait_for_selector('.rule.hard[data-rule="valid-sum"]', timeout=SLOW)
        assert "suara sah" in page.inner_text('.rule.hard[data-rule="valid-sum"]').lower()
        assert "bad" in page.get_attribute('[id="f-votes.2"]', "class")
        page.click("#to-photos")
        page.click("#to-review")
        page.wait_for_selector("#sign")
        assert page.is_disabled("#sign") and page.is_visible("#blocked")

        page.goto(chair.app_url + "#/form/bupati/numbers")
        page.fill('[id="f-votes.2"]', "80")
        page.wait_for_selector(".rule.ok, .rule.warn", timeout=SLOW)
        assert page.locator(".rule.hard").count() == 0
        page.wait_for_selector("#saved:has-text('Tersimpan')", timeout=SLOW)
        page.reload()  # the browser killed while the camera app was open
        page.wait_for_selector('[id="f-votes.2"]')
        for name, value in typed.items():
            assert page.input_value(f'[id="f-{name}"]') == value, name

        page.click("#to-photos")
        for n, shot in enumerate(shots, 1):
            with page.expect_file_chooser() as fc:
                page.click(f"label:has(#gal-{n})")
            fc.value.set_files(str(shot))
            page.wait_for_selector(f"img#img-{n}", timeout=SLOW)
        page.wait_for_selector("text=terlalu gelap", timeout=SLOW)
        page.click("#to-review")
        page.wait_for_selector("#sign:not([disabled])", timeout=SLOW)
        page.click("#sign")
        page.wait_for_url("**#/result/*", timeout=SLOW)
        rid = page.url.rsplit("/", 1)[1]
        page.wait_for_selector(".status .st.done >> nth=1", timeout=SLOW)
        assert "Diterima KPU" in page.inner_text(".status")
        assert "nomor urut log" in page.inner_text(".status")
        page.wait_for_selector("#qr svg")

        # the photos were shrunk in the browser to 2000 px JPEGs
        token = page.evaluate("TOKEN")
        res = page.evaluate(
            "async (t) => (await (await fetch('/api/results', {headers: {'X-Estafet-Token': t}}))"
            ".json()).results", token)  # fmt: skip
        mine = next(r for r in res if r["id"] == rid)
        assert [p["sheet"] for p in mine["photos"]] == [1, 2, 3]
        dims = page.evaluate(
            """async ([t, shas]) => Promise.all(shas.map(async (s) => {
                 const r = await fetch('/api/photo/' + s, {headers: {'X-Estafet-Token': t}});
                 const b = await r.blob();
                 const head = new Uint8Array(await b.slice(0, 4).arrayBuffer());
                 if (!r.ok || head[0] !== 0xff) return [r.status, b.type, Array.from(head)];
                 const i = await createImageBitmap(b);
                 return [b.type, i.width, i.height]; }))""",
            [token, [p["sha256"] for p in mine["photos"]]],
        )  # fmt: skip
        assert dims == [["image/jpeg", 2000, 1500], ["image/jpeg", 1500, 2000],
                        ["image/jpeg", 2000, 1500]]  # fmt: skip

        # the witness: the result arrives by sync; the witness agrees
        wpage = phone_page(browser)
        unlock(wpage, witness.app_url)
        wpage.wait_for_selector(f'.status[data-id="{rid}"] a', timeout=SLOW)
        wpage.click(f'.status[data-id="{rid}"] a')
        wpage.click("#agree")
        wpage.wait_for_selector("#agreed", timeout=SLOW)

        page.wait_for_selector(".endorsed:has-text('Saksi')", timeout=SLOW)
        page.click("#lang")
        page.wait_for_selector("text=Agreed by")
        assert page.errors == [] and wpage.errors == [], (page.errors, wpage.errors)
        browser.close()
