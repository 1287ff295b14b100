"""The KPU dashboard in a real browser (Debian's headless Chromium driven by Playwright) while
results arrive: a kecamatan's count goes up on the open page without a reload, and a conflict
(two different results for one TPS, election and revision, signed by the same chair key) shows.

Everything is real: the central server made and run with the CLI, a KPPS phone enrolled with a
one-time code, results signed with `result submit` and pushed by `node run`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.clikit import (
    MANIFEST,
    Proc,
    clean_env,
    codes,
    free_port,
    get_json,
    invoke,
    ok,
    spawn,
    wait_http,
    wait_until,
    write_form,
    write_photos,
)
from tests.kit import TPS_A

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/estafet-dashboard.png")
COUNTED, CONFLICT = "counted", "conflict"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEC = TPS_A[:6]  # Hampang
REFRESH_WAIT_MS = 30_000  # the page polls /api/status every 5 s

# the text of one part of a kecamatan's row in one election's section, read from the live DOM
CELL_JS = """([kind, kec, col]) => {
  const row = document.getElementById('k-' + kind + '-' + kec);
  if (!row) return null;
  if (col === 'counted') return row.querySelector('summary .c').textContent;
  return row.querySelectorAll('summary .s > span')[1].textContent.replace('konflik ', '');
}"""
ROW_TOP_JS = """([kind, kec]) => {
  const row = document.getElementById('k-' + kind + '-' + kec);
  return row ? row.getBoundingClientRect().top + window.scrollY : null;
}"""


@pytest.fixture
def playwright_api() -> Any:
    """playwright.sync_api; started only after the CLI work, since its loop blocks asyncio.run."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    return pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing (the test extra has it)"
    )


def test_dashboard_shows_progress_and_a_conflict_live(playwright_api: Any, tmp_path: Path) -> None:
    env = clean_env()
    procs: list[Proc] = []

    def start(name: str, *args: str | Path) -> Proc:
        proc = spawn([sys.executable, "-m", "estafet.cli", *args], tmp_path / f"{name}.log", env)
        procs.append(proc)
        return proc

    pw = browser = None
    try:
        # KPU: central home, a chair code for TPS_A, the server on a free loopback port
        kpu = tmp_path / "kpu"
        ok(invoke("central", "init", "--home", kpu, "--manifest", MANIFEST))
        made = codes(kpu, "kpps-chair", "--tps", TPS_A)[0]
        code = made["code"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        central = start("central", "central", "serve", "--home", kpu, "--listen",
                        f"127.0.0.1:{port}")  # fmt: skip
        before = wait_http(central, url + "/api/status")
        assert before["conflicts"] == []

        # the KPPS chair's phone; a copy of it (the same key and certificate) will sign a
        # second, different bupati result for the same TPS and revision: a conflict
        phone = tmp_path / "phone"
        ok(invoke("node", "init", "--home", phone, "--listen", f"127.0.0.1:{free_port()}",
                  "--no-mdns", "--no-beacon", "--no-passphrase",
                  "--sync-interval", "0.3"))  # fmt: skip
        ok(invoke("node", "enroll", "--home", phone, "--central", url, "--code", code,
                  "--root-fingerprint", made["root"]))  # fmt: skip
        twin = tmp_path / "twin"
        shutil.copytree(phone, twin)
        for election in ("bupati", "gubernur"):
            form = write_form(tmp_path / f"{election}.json", election=election)
            ok(invoke("result", "submit", "--home", phone, "--form", form,
                      *write_photos(tmp_path, election)))  # fmt: skip
        other = write_form(tmp_path / "other.json", votes={"1": 100, "2": 81, "3": 23})
        ok(invoke("result", "submit", "--home", twin, "--form", other,
                  *write_photos(tmp_path, "twin")))  # fmt: skip

        pw = playwright_api.sync_playwright().start()
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []

        def on_console(m: Any) -> None:
            where = str(m.location.get("url", ""))
            if m.type == "error" and not where.endswith("/favicon.ico"):  # there is none
                errors.append(f"{m.text} ({where})")

        page.on("console", on_console)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(url + "/")
        assert page.title() == "Pilkada 2024 - Kabupaten Kotabaru"
        expected = next(
            k["tps_expected"]
            for e in before["elections"]
            if e["kind"] == "bupati"
            for k in e["kecamatan"]
            if k["code"] == KEC
        )
        assert page.evaluate(CELL_JS, ["bupati", KEC, COUNTED]) == f"0 / {expected}"
        # a mark on this very document: gone if anything reloads the page
        page.evaluate("window.__estafetMark = 'same page'")

        # results arrive: the phone reaches the central server and pushes them
        start("phone", "node", "run", "--home", phone, "--central", url)
        page.wait_for_function(
            "(a) => (" + CELL_JS + ")(a) === a[3]",
            arg=["bupati", KEC, COUNTED, f"1 / {expected}"],
            timeout=REFRESH_WAIT_MS,
        )
        assert page.evaluate(CELL_JS, ["gubernur", KEC, COUNTED]) == f"1 / {expected}"
        assert page.evaluate("window.__estafetMark") == "same page"
        assert "diperbarui" in page.inner_text("#updated")
        counted = page.inner_text("#e-gubernur .big")
        assert f"1 / {before['elections'][0]['tps_expected']} TPS" in counted

        # the twin phone pushes a different result signed by the same chair key
        start("twin", "node", "run", "--home", twin, "--central", url,
              "--listen", f"127.0.0.1:{free_port()}")  # fmt: skip
        wait_until(
            "the central server sees the conflict",
            lambda: get_json(url + "/api/status")["conflicts"],
            30,
            procs,
        )
        page.wait_for_function(
            "(a) => (" + CELL_JS + ")(a) === '1'",
            arg=["bupati", KEC, CONFLICT],
            timeout=REFRESH_WAIT_MS,
        )
        conflicts = page.locator("#conflicts")
        row = conflicts.locator("tr", has=page.locator(f'a[href="/tps/{TPS_A}"]'))
        assert row.count() == 1
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == TPS_A and cells[1] == "bupati"
        assert len(cells[2].split()) == 2  # the two result ids
        assert page.evaluate("window.__estafetMark") == "same page"
        # the picture: from the bupati section's Hampang row down to the conflicts table
        top = page.evaluate(ROW_TOP_JS, ["bupati", KEC])
        bottom = conflicts.bounding_box()
        assert top is not None and bottom is not None
        page.screenshot(
            path=str(SCREENSHOT),
            full_page=True,
            clip={"x": 0, "y": top - 40, "width": 1280,
                  "height": bottom["y"] + bottom["height"] - top + 60},
        )  # fmt: skip

        # the TPS page shows both results, one flagged
        conflicts.locator(f'a[href="/tps/{TPS_A}"]').click()
        page.wait_for_url(f"{url}/tps/{TPS_A}")
        text = page.inner_text("body")
        assert TPS_A in text and "konflik" in text
        assert not errors, errors
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
        for p in reversed(procs):
            p.stop()
