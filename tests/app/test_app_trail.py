"""The phone app and the paper trail (issue 13), against real node processes: the chair signs a
result, admits a witness by the key code its phone shows (a mistyped code is refused), a KPPS
member's phone objects with a photo through its app, and the chair's app shows who objected."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.test_app_api import Client, _flat, token_of
from tests.app.world import PASS, World, png
from tests.cli.clikit import wait_until
from tests.kit import form_json


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("trailworld"))
    try:
        w.central()
        chair = w.device("chair", "kpps-chair", central=True)
        w.device("member", "kpps-member", f"127.0.0.1:{chair.port}")
        yield w
    finally:
        w.stop()


def unlocked(world: World, name: str) -> Client:
    dev = world.devices[name]
    c = Client(dev, token_of(dev))
    assert c.call("POST", "/api/unlock", {"secret": PASS})[0] == 200
    return c


def test_admission_objection_and_the_chairs_view(world: World) -> None:
    chair, member = unlocked(world, "chair"), unlocked(world, "member")
    assert chair.call("PUT", "/api/draft/bupati", {"fields": _flat(form_json())})[0] == 200
    for sheet in (1, 2, 3):
        assert chair.call("PUT", f"/api/draft/bupati/photo/{sheet}", png(60, 40 + sheet))[0] == 200
    status, body = chair.call("POST", "/api/sign/bupati")
    assert status == 200, body
    rid = body["id"]

    # the member's phone shows its key code; the chair admits it as the PTPS would be admitted
    code = member.call("GET", "/api/keycode")[1]["code"]
    assert len(code.replace("-", "")) == 56
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    status, body = chair.call("POST", "/api/admit", {"code": typo, "role": "witness", "pair": 2,
                                                     "seat": 1, "election": "bupati"})  # fmt: skip
    assert (status, body["error"]) == (400, "admit-refused")
    status, body = chair.call("POST", "/api/admit", {
        "code": code, "role": "witness", "pair": 2, "seat": 1, "election": "bupati",
        "name": "Saksi Paslon 2",
        "mandate": base64.b64encode(png(40, 30)).decode()})  # fmt: skip
    assert status == 200, body
    status, body = chair.call("POST", "/api/admit", {"code": code, "role": "witness", "pair": 2,
                                                     "seat": 3, "election": "bupati"})  # fmt: skip
    assert status == 400  # a third seat does not exist

    def member_has_result() -> Any:
        return any(r["id"] == rid for r in member.call("GET", "/api/results")[1]["results"])

    wait_until("the member's phone holds the result", member_has_result, 30, [])
    assert member.call("POST", f"/api/object/{rid}", {"reason": ""})[1]["error"] == (
        "objection-reason"
    )
    bad = {"reason": "x", "photo": base64.b64encode(b"not a photo").decode()}
    assert member.call("POST", f"/api/object/{rid}", bad)[1]["error"] == "bad-photo"
    status, body = member.call("POST", f"/api/object/{rid}", {
        "reason": "satu suara paslon 2 dihitung untuk paslon 1",
        "photo": base64.b64encode(png(50, 50)).decode()})  # fmt: skip
    assert status == 200, body

    def chair_sees_it() -> Any:
        [r] = [r for r in chair.call("GET", "/api/results")[1]["results"] if r["id"] == rid]
        return r["objections"]

    wait_until("the chair's phone shows the objection", chair_sees_it, 30, [])
    [obj] = chair_sees_it()
    assert obj["role"] == "kpps-member" and obj["reason"].startswith("satu suara")
    assert obj["photos"] == 1
