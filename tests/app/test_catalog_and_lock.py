"""The message catalogs and the idle lock, without a server: every language has every key,
every rule of protocol/form.py and every key the page asks for has words, and the key is
dropped after idle time and after repeated wrong PINs the wait grows."""

from __future__ import annotations

import re
from importlib import resources

from estafet.app.guard import FREE_TRIES, Lock
from estafet.app.server import catalogs, render_page
from estafet.crypto.keys import SigningKey
from estafet.protocol.form import RULES


def test_catalogs_have_the_same_keys_and_every_rule() -> None:
    cats = catalogs()
    assert set(cats) == {"id", "en"}
    assert set(cats["id"]) == set(cats["en"])
    for rule in [*RULES, "out-of-scope", "wrong-role"]:
        assert f"rule.{rule}" in cats["id"], rule
    assert all(v.strip() for c in cats.values() for v in c.values())
    assert cats["id"]["rule.votes-exceed-turnout"] != cats["en"]["rule.votes-exceed-turnout"]


def test_every_literal_key_the_page_uses_is_in_the_catalog() -> None:
    js = (resources.files("estafet.app") / "static" / "app.js").read_text("utf-8")
    used = set(re.findall(r'\bt\("([a-z_.\-]+)"', js))
    assert len(used) > 60
    keys = set(catalogs()["id"])
    prefixes = {u for u in used if u.endswith(".")}  # t("role." + role) and the like
    assert not (used - prefixes) - keys, (used - prefixes) - keys
    for p in prefixes:
        assert any(k.startswith(p) for k in keys), p
    page = render_page("tok").decode()
    assert "/*JS*/" not in page and "/*CATALOGS*/" not in page and '"tok"' in page


def test_idle_lock_and_slowing_wrong_guesses() -> None:
    now = [1000.0]
    lock = Lock(idle=600, clock=lambda: now[0])
    key = SigningKey.generate()
    session = lock.unlocked(key)
    assert len(session) >= 40 and lock.current("") is None and lock.current("x" * 43) is None
    now[0] += 599
    assert lock.current(session) is key
    lock.touch(session)
    now[0] += 599
    assert lock.current(session) is key  # touched: idle counts from the last use
    now[0] += 2
    assert lock.current(session) is None  # idle: dropped
    assert lock.key is None and lock.unlocked(key) != session  # a new unlock, a new session
    for _ in range(FREE_TRIES - 1):
        lock.failed()
    assert lock.retry_after() == 0
    lock.failed()
    first = lock.retry_after()
    lock.failed()
    assert 0 < first < lock.retry_after()
    lock.unlocked(key)
    assert lock.failures == 0
