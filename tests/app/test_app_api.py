"""The phone app's API against a real node process (and a real central server): the guard
refuses other origins, foreign Host headers and token-less requests, the port is loopback only,
the PIN unlocks, the live check names protocol/form.py's rules, drafts survive, and signing
stores a result that the central server receipts."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ifaddr
import pytest

from estafet.app.guard import GuardError, loopback_listen
from tests.app.world import PASS, Device, World, png, wait_page
from tests.cli.clikit import codes, free_port, invoke, ok, wait_until
from tests.kit import TPS_A, form_json


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("appworld"))
    # a stand-in for Termux:API's termux-notification on PATH: a real program that records
    # the arguments the daemon gives it
    tools = w.base / "bin"
    tools.mkdir()
    tool = tools / "termux-notification"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {w.base / "notified.txt"}\n')
    tool.chmod(0o755)
    w.env["PATH"] = f"{tools}:{os.environ['PATH']}"
    try:
        w.central()
        w.device("chair", "kpps-chair", central=True)
        yield w
    finally:
        w.stop()


class Client:
    """A browser stand-in: the session token from the page, and the session cookie it gets."""

    def __init__(self, dev: Device, token: str = "") -> None:
        self.port = dev.app_port
        self.token = token
        self.cookie = ""

    def call(
        self, method: str, path: str, body: Any = None, *, host: str = "", **headers: str
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        hdrs = {"Host": host or f"127.0.0.1:{self.port}", **headers}
        if self.token:
            hdrs.setdefault("X-Estafet-Token", self.token)
        if self.cookie:
            hdrs.setdefault("Cookie", self.cookie)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        if set_cookie := resp.getheader("Set-Cookie"):
            assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
            self.cookie = set_cookie.split(";", 1)[0]
        conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(raw)
        return resp.status, raw


def token_of(dev: Device) -> str:
    status, page = Client(dev).call("GET", "/")
    assert status == 200
    text = page.decode()
    return text.split('const TOKEN = "', 1)[1].split('"', 1)[0]


def test_page_is_served_with_a_token_and_no_outside_asset(world: World) -> None:
    dev = world.devices["chair"]
    status, page = Client(dev).call("GET", "/")
    assert status == 200
    text = page.decode()
    assert len(token_of(dev)) >= 40
    for outside in ("http://", "https://", "//cdn", 'src="/', 'href="/'):
        assert outside not in text.replace("http://www.w3.org/2000/svg", ""), outside
    assert len(page) < 150_000


def test_foreign_host_is_refused_before_the_page_is_served(world: World) -> None:
    dev = world.devices["chair"]
    c = Client(dev)
    for host in (f"evil.example:{dev.app_port}", "127.0.0.1", f"127.0.0.1:{dev.app_port + 1}"):
        status, body = c.call("GET", "/", host=host)
        assert status == 403, host
        assert body == {"error": "foreign-host"}
    status, body = Client(dev, token_of(dev)).call("GET", "/api/state", host="attacker.test")
    assert status == 403


def test_requests_without_the_token_or_from_another_origin_are_refused(world: World) -> None:
    dev = world.devices["chair"]
    anon = Client(dev)
    assert anon.call("GET", "/api/state")[1] == {"error": "no-token"}
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, body = anon.call("POST", "/api/unlock", {"secret": PASS}, **evil)
    assert status == 403
    status, body = anon.call("POST", "/api/unlock", {"secret": PASS})
    assert (status, body["error"]) == (403, "no-token")
    good = Client(dev, token_of(dev))
    status, body = good.call("POST", "/api/lock", {}, Origin="http://evil.example")
    assert (status, body["error"]) == (403, "foreign-origin")
    status, body = good.call("POST", "/api/lock", {}, **{"Sec-Fetch-Site": "cross-site"})
    assert (status, body["error"]) == (403, "cross-site")
    status, body = good.call("GET", "/api/state", **{"X-Estafet-Token": "x" * 43})
    assert status == 403
    # and no CORS grant is ever sent, even to a preflight
    conn = http.client.HTTPConnection("127.0.0.1", dev.app_port, timeout=5)
    conn.request("OPTIONS", "/api/sign/bupati", headers={
        "Host": f"127.0.0.1:{dev.app_port}", "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST"})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 403 and resp.getheader("Access-Control-Allow-Origin") is None
    assert resp.getheader("X-Frame-Options") == "DENY"


def test_app_port_answers_on_loopback_only(world: World) -> None:
    dev = world.devices["chair"]
    addrs = [
        ip.ip for a in ifaddr.get_adapters() for ip in a.ips
        if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
    ]  # fmt: skip
    for addr in addrs:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, dev.app_port)) != 0, f"app answers on {addr}"
    # whatever addresses this machine has: the listening socket itself is bound to 127.0.0.1
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if int(port_hex, 16) == dev.app_port and state == "0A":
            listening.append(socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1]))
    assert listening == ["127.0.0.1"]
    v6 = Path("/proc/net/tcp6")
    if v6.exists():
        assert f":{dev.app_port:04X} " not in v6.read_text()
    for bad in ("0.0.0.0", "192.168.43.1", "::", "phone.local"):
        with pytest.raises(GuardError):
            loopback_listen(bad)


def test_unlock_check_draft_sign_and_receipt(world: World) -> None:
    dev = world.devices["chair"]
    c = Client(dev, token_of(dev))
    assert c.call("GET", "/api/results") == (423, {"error": "locked"})
    status, body = c.call("POST", "/api/unlock", {"secret": "wrong"})
    assert (status, body["error"]) == (403, "wrong-secret")
    assert c.call("POST", "/api/unlock", {"secret": PASS})[0] == 200
    state = c.call("GET", "/api/state")[1]
    assert state["identity"]["role"] == "kpps-chair" and state["locked"] is False
    for el in state["elections"]:  # pair names by ballot number (none in the Kotabaru fixture)
        assert el["pairs"] == {} and el["ballot_numbers"]
    # another app on the phone can read the page and its token, but not use this unlock
    other = Client(dev, token_of(dev))
    assert other.call("GET", "/api/state")[1]["locked"] is True
    assert other.call("POST", "/api/sign/bupati")[0] == 423
    other.cookie = "estafet_session=" + "A" * 43
    assert other.call("GET", "/api/results")[0] == 423

    good = _flat(form_json())
    typed = {**good, "votes.2": "81"}  # 105 read as 905, in small: valid-sum breaks
    assert c.call("PUT", "/api/draft/bupati", {"fields": typed})[0] == 200
    check = c.call("POST", "/api/check/bupati", {"fields": typed})[1]
    assert [r["rule"] for r in check["hard"]] == ["valid-sum"]
    assert {"valid", "votes.2"} <= set(check["hard"][0]["fields"]) and check["ok"] is False
    half = {k: v for k, v in good.items() if not k.startswith("ballots.")}
    check = c.call("POST", "/api/check/bupati", {"fields": half})[1]
    assert len(check["blank"]) == 4 and not any(
        r["rule"] == "ballots-balance" for r in check["hard"]
    )
    status, body = c.call("POST", "/api/sign/bupati")
    assert status == 400 and body["error"] == "form"

    assert c.call("PUT", "/api/draft/bupati", {"fields": good})[0] == 200
    assert c.call("POST", "/api/sign/bupati")[1]["error"] == "photos-missing"
    assert c.call("PUT", "/api/draft/bupati/photo/1", b"not a photo")[1]["error"] == "photo-type"
    assert c.call("PUT", "/api/draft/bupati/photo/4", png(8, 8))[0] == 400
    for sheet in (1, 2, 3):
        big = png(1500, 900 + sheet)  # well over one read's worth of bytes
        assert c.call("PUT", f"/api/draft/bupati/photo/{sheet}", big)[1]["size"] == len(big)
    draft = c.call("GET", "/api/draft/bupati")[1]
    assert draft["fields"] == good and [p["sheet"] for p in draft["photos"]] == [1, 2, 3]
    status, body = c.call("POST", "/api/sign/bupati")
    assert status == 200, body
    rid = body["id"]
    assert c.call("GET", "/api/draft/bupati")[1]["fields"] == {}

    def accepted() -> Any:
        rs = c.call("GET", "/api/results")[1]["results"]
        return [
            r for r in rs if r["id"] == rid and (r["receipt"] or {}).get("status") == "accepted"
        ]

    (res,) = wait_until("the KPU's receipt", accepted, 30, world.procs)
    assert res["receipt"]["log_index"] >= 0 and res["form"]["valid"] == 204
    for p in res["photos"]:
        status, data = c.call("GET", f"/api/photo/{p['sha256']}")
        assert status == 200 and data.startswith(b"\x89PNG") and len(data) == p["size"]
    notified = world.base / "notified.txt"
    wait_until("a receipt notification", notified.exists, 20, world.procs)
    # the receipt read above, or a later one of the same result (photos complete) when the
    # photos arrived before the notification was posted
    text = notified.read_text()
    assert f"TPS {TPS_A} bupati: diterima KPU #" in text, text
    assert int(text.rsplit("#", 1)[1].split()[0]) >= res["receipt"]["log_index"], text
    status, svg = c.call("GET", f"/api/qr/{rid}")
    assert status == 200 and svg.startswith(b"<svg")

    # a correction: a new draft at revision 1 that supersedes it, photos carried over
    assert c.call("POST", f"/api/correct/{rid}", {"reason": ""})[1]["error"] == "reason-needed"
    body = c.call("POST", f"/api/correct/{rid}", {"reason": "salah ketik paslon 2"})[1]
    assert body == {"election": "bupati", "revision": 1}
    draft = c.call("GET", "/api/draft/bupati")[1]
    assert draft["supersedes"] == rid and len(draft["photos"]) == 3
    assert c.call("POST", "/api/sign/bupati")[0] == 200

    # hostile inputs: bad ids, bad JSON, oversized bodies: clear refusals
    assert c.call("POST", "/api/endorse/zz")[0] == 400
    assert c.call("POST", "/api/check/bupati", b"{not json")[0] == 400
    assert c.call("POST", "/api/check/bupati", b"x" * 40_000)[0] == 413
    assert c.call("GET", "/api/draft/presiden")[0] == 404
    assert c.call("POST", "/api/lock", {})[0] == 200
    assert c.call("POST", "/api/sign/bupati")[0] == 423


def _flat(form: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in form.items():
        if not prefix and k in ("election", "tps", "revision", "supersedes"):
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = str(v)
    return out


def test_enroll_from_the_app_with_a_provisioning_file(world: World) -> None:
    """`node run` on a device that is not enrolled serves the enrollment screen; with the PIN
    and the code, the device enrolls (the root must have the provisioning file's fingerprint)
    and the same process goes on to run the node and the full app on the same port."""
    home = world.base / "newphone"
    app_port = free_port()
    ok(invoke("node", "init", "--home", home, "--listen", f"127.0.0.1:{free_port()}",
              "--no-mdns", "--no-beacon"))  # fmt: skip
    trust = json.loads(ok(invoke("central", "trust", "--home", world.base / "kpu")))
    code = codes(world.base / "kpu", "kpps-chair", "--tps", TPS_A)[0]["code"]
    proc = world.start("newphone", "node", "run", "--home", home, "--app-listen",
                       f"127.0.0.1:{app_port}")  # fmt: skip
    dev = Device(home, 0, app_port)
    wait_page(proc, dev.app_url)
    c = Client(dev, token_of(dev))
    state = c.call("GET", "/api/state")[1]
    assert state["enrolled"] is False and "no provisioning file" in state["problem"]

    # an impostor server (its own root): its answer is refused, nothing is installed
    fake = World(world.base / "impostor")
    fake.base.mkdir()
    try:
        fake.central()
        fake_code = codes(fake.base / "kpu", "kpps-chair", "--tps", TPS_A)[0]["code"]
        bad = {"central": fake.central_url, "root_id": trust["root_id"]}
        (home / "provision.json").write_text(json.dumps(bad))
        assert c.call("GET", "/api/state")[1]["provision"]["central"] == fake.central_url
        status, body = c.call("POST", "/api/enroll", {"secret": "nope", "code": fake_code})
        assert (status, body["error"]) == (403, "wrong-secret")
        status, body = c.call("POST", "/api/enroll", {"secret": PASS, "code": fake_code})
        assert status == 400 and "provisioning file" in body["detail"], body
        assert not (home / "trust.json").exists()
    finally:
        fake.stop()

    good = {"central": world.central_url, "root_id": trust["root_id"], "name": "KPU Kotabaru"}
    (home / "provision.json").write_text(json.dumps(good))
    status, body = c.call("POST", "/api/enroll", {"secret": PASS, "code": code})
    assert status == 200 and body["role"] == "kpps-chair", body

    def full_app() -> bool:
        try:
            tok = token_of(dev)
        except (OSError, AssertionError, IndexError):
            return False
        st = Client(dev, tok).call("GET", "/api/state")[1]
        return st.get("identity", {}).get("role") == "kpps-chair"

    wait_until("the node and its full app", full_app, 30, [proc])
    assert proc.popen.poll() is None


def test_estafet_app_prints_the_url_and_opens_it(world: World, tmp_path: Path) -> None:
    """`estafet app` prints the configured URL, opens it with termux-open-url when that is on
    PATH, and says so when no node serves it."""
    dev = world.devices["chair"]
    home = tmp_path / "home"
    ok(invoke("node", "init", "--home", home, "--no-passphrase"))
    cfg = (
        (home / "config.toml")
        .read_text()
        .replace('app = "127.0.0.1:7421"', f'app = "127.0.0.1:{dev.app_port}"')
    )
    (home / "config.toml").write_text(cfg)
    opened = tmp_path / "opened.txt"
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "termux-open-url").write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    (tools / "termux-open-url").chmod(0o755)
    path = f"{tools}:{os.environ['PATH']}"
    out = invoke("app", "--home", home, env={"PATH": path})
    assert out.exit_code == 0 and out.stdout.strip() == dev.app_url
    assert "not running" not in out.output
    assert opened.read_text().strip() == dev.app_url
    idle = free_port()
    (home / "config.toml").write_text(cfg.replace(str(dev.app_port), str(idle)))
    out = invoke("app", "--home", home, "--no-open", env={"PATH": path})
    assert out.exit_code == 0 and "not running" in out.output
    assert opened.read_text().strip() == dev.app_url  # --no-open: not opened again
