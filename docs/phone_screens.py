"""Screenshots of every screen of the officer's phone app, in Bahasa Indonesia and English, at
360 px (a cheap phone) and 1280 px (a laptop), into docs/phone/. Run from the repository:

    .venv/bin/python docs/phone_screens.py

It starts a real world (central server, relay, chair's and witness's phones) in a temporary
folder, walks the chair's flow and the witness's, and saves one PNG per screen.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright

from tests.app.world import PASS, World, png
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_phone import fields

OUT = Path(__file__).resolve().parent / "phone"
WIDTHS = {"360": {"width": 360, "height": 740}, "desktop": {"width": 1280, "height": 900}}


def shoot(page: object, name: str, lang: str, width: str) -> None:
    page.wait_for_timeout(400)  # type: ignore[attr-defined]
    page.screenshot(path=str(OUT / f"{name}-{lang}-{width}.png"), full_page=True)  # type: ignore[attr-defined]


def open_locked(page: object, url: str) -> None:
    """Open ``url`` on the lock screen (lock first if an earlier run left it unlocked)."""
    page.goto(url)  # type: ignore[attr-defined]
    page.wait_for_selector("#secret, #lockbtn:not([hidden])")  # type: ignore[attr-defined]
    if page.is_visible("#lockbtn"):  # type: ignore[attr-defined]
        page.click("#lockbtn")  # type: ignore[attr-defined]
    page.wait_for_selector("#secret")  # type: ignore[attr-defined]


def unlock(page: object, url: str) -> None:
    open_locked(page, url)
    page.fill("#secret", PASS)  # type: ignore[attr-defined]
    page.click("#unlock")  # type: ignore[attr-defined]
    page.wait_for_selector("#lockbtn:not([hidden])")  # type: ignore[attr-defined]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        w = World(base)
        try:
            w.central()
            relay = w.device("relay", "relay", central=True)
            chair = w.device("chair", "kpps-chair", f"127.0.0.1:{relay.port}")
            witness = w.device("witness", "witness", f"127.0.0.1:{chair.port}")
            fresh = w.unenrolled("newphone")
            shots = []
            for i, level in ((1, None), (2, None), (3, 10)):
                f = base / f"s{i}.png"
                f.write_bytes(png(2400, 1800, level))
                shots.append(f)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                run(browser, chair.app_url, witness.app_url, relay.app_url, shots)
                for lang in ("id", "en"):
                    for width, vp in WIDTHS.items():
                        ctx = browser.new_context(viewport=vp)
                        ctx.add_init_script(f"localStorage.setItem('estafet-lang', '{lang}')")
                        page = ctx.new_page()
                        page.goto(fresh.app_url)
                        page.wait_for_selector("#prov-root")
                        shoot(page, "00-enroll", lang, width)
                        ctx.close()
                browser.close()
        finally:
            w.stop()


def run(browser: object, chair: str, witness: str, relay: str, shots: list[Path]) -> None:
    typed = fields()
    rid = ""
    for lang in ("id", "en"):
        for width, vp in WIDTHS.items():
            ctx = browser.new_context(viewport=vp, device_scale_factor=1)  # type: ignore[attr-defined]
            ctx.add_init_script(f"localStorage.setItem('estafet-lang', '{lang}')")
            page = ctx.new_page()
            open_locked(page, chair)
            shoot(page, "01-lock", lang, width)
            unlock(page, chair)
            shoot(page, "02-home", lang, width)
            if not rid:
                page.click("#enter-bupati")
                for name, value in typed.items():
                    page.fill(f'[id="f-{name}"]', "81" if name == "votes.2" else value)
                page.wait_for_selector(".rule.hard")
                shoot(page, "03-numbers-red", lang, width)
                page.fill('[id="f-votes.2"]', "80")
                page.wait_for_selector(".rule.warn, .rule.ok")
                page.click("#to-photos")
                for n, shot in enumerate(shots, 1):
                    page.set_input_files(f"#gal-{n}", str(shot))
                    page.wait_for_selector(f"img#img-{n}")
                page.wait_for_selector(".warntxt")
                shoot(page, "04-photos", lang, width)
                page.click("#to-review")
                page.wait_for_selector("#sign:not([disabled])")
                shoot(page, "05-review", lang, width)
                page.click("#sign")
                page.wait_for_url("**#/result/*")
                rid = page.url.rsplit("/", 1)[1]
                page.wait_for_selector(".status .st.done >> nth=1", timeout=60_000)
            page.goto(chair + "#/result/" + rid)
            page.wait_for_selector("#qr svg", timeout=60_000)
            shoot(page, "06-result-chair", lang, width)
            page.goto(chair + "#/form/bupati/numbers")
            page.wait_for_selector('[id="f-valid"]')
            shoot(page, "03-numbers-empty", lang, width)
            wpage = ctx.new_page()
            unlock(wpage, witness)
            wpage.wait_for_selector(f'.status[data-id="{rid}"]', timeout=60_000)
            shoot(wpage, "07-witness-home", lang, width)
            wpage.goto(witness + "#/result/" + rid)
            wpage.wait_for_selector("#agree, #agreed")
            shoot(wpage, "08-witness-result", lang, width)
            wpage.fill("#objection", "Satu suara paslon 2 dihitung untuk paslon 1 (lembar 2).")
            wpage.set_input_files("#objection-photo", str(shots[0]))
            shoot(wpage, "10-witness-objection", lang, width)
            if (lang, width) == ("en", "desktop"):  # object once, after every shot of the form
                wpage.click("#object")
                wpage.wait_for_selector("#objected")
            rpage = ctx.new_page()
            unlock(rpage, relay)
            rpage.wait_for_selector("#keeper")
            shoot(rpage, "09-relay-keeper", lang, width)
            ctx.close()
    trail(browser, chair, rid)


def trail(browser: object, chair: str, rid: str) -> None:
    """The chair sees who objected (issue 13), and admits a witness by key code."""
    for lang in ("id", "en"):
        for width, vp in WIDTHS.items():
            ctx = browser.new_context(viewport=vp, device_scale_factor=1)  # type: ignore[attr-defined]
            ctx.add_init_script(f"localStorage.setItem('estafet-lang', '{lang}')")
            page = ctx.new_page()
            unlock(page, chair)
            page.goto(chair + "#/result/" + rid)
            page.wait_for_selector(".objected", timeout=60_000)
            shoot(page, "11-chair-objected", lang, width)
            page.goto(chair + "#/")
            page.wait_for_selector("#admit-box")
            page.click("#admit-box summary")
            page.fill("#admit-code", "3XFN-BWMS-PTY2-TNJH-KVRP-LMND-C634-EA3A-EP3D-WKLE-OPYB-QKJL")
            page.fill("#admit-pair", "2")
            page.fill("#admit-name", "Siti Rahmah")
            shoot(page, "12-chair-admit", lang, width)
            ctx.close()


if __name__ == "__main__":
    main()
