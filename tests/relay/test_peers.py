"""The peer table alone: no node, no sockets, a settable clock."""

from __future__ import annotations

from estafet.relay.peers import MAX_BACKOFF, MAX_PEERS, PENALTY_BACKOFF, PeerTable
from tests.relay.nodes import Clock

OWN = "aa" * 16
KEY = "bb" * 16


def table() -> tuple[PeerTable, Clock, list[int]]:
    clock = Clock(1_000_000)
    wakes: list[int] = []
    return PeerTable(OWN, clock, lambda: wakes.append(1)), clock, wakes


def test_ourselves_is_never_a_peer_and_a_walking_device_keeps_its_history() -> None:
    t, _clock, wakes = table()
    t.add("http://10.0.0.5:8470", "beacon", key=OWN)
    assert len(t) == 0 and not wakes
    p = t.add("http://10.0.0.7:8470", "mdns", proven=True, key=KEY, role="relay")
    p.penalties = 2
    moved = t.add("http://192.168.1.9:8470", "beacon", proven=True, key=KEY)
    assert moved is p and list(t) == ["http://192.168.1.9:8470"]
    assert (moved.penalties, moved.role, moved.failures) == (2, "relay", 0)


def test_an_unproven_key_only_proposes_an_address() -> None:
    """Issue 11, item 2: an advert (mDNS TXT ``key``, a beacon, ``/v1/info``) claiming a known
    key used to move that key's entry to the advertiser's address."""
    t, _clock, _ = table()
    p = t.add("http://10.0.0.7:8470", "mdns", proven=True, key=KEY)
    other = t.add("http://10.6.6.6:8470", "mdns", key=KEY)
    assert p.url == "http://10.0.0.7:8470" and other is not p and other.key == ""
    assert set(t) == {"http://10.0.0.7:8470", "http://10.6.6.6:8470"}


def test_static_and_central_entries_never_move() -> None:
    t, _clock, _ = table()
    central = t.add("https://kpu.example", "central")
    central.is_central = True
    central.key = KEY
    gw = t.add("http://10.0.0.1:8470", "static")
    gw.key = "cc" * 16
    t.add("http://10.6.6.6:8470", "inbound", proven=True, key=KEY)
    t.contact("cc" * 16, ":8470", "10.6.6.7", True)
    assert central.url == "https://kpu.example" and gw.url == "http://10.0.0.1:8470"
    assert t["https://kpu.example"] is central


def test_the_table_is_capped_and_configured_entries_always_fit() -> None:
    """2,000 forged beacons once made 1,585 entries (saved on shutdown)."""
    t, _clock, _ = table()
    reached = t.add("http://10.0.0.2:8470", "mdns", proven=True, key=KEY)
    reached.last_ok = 1.0
    for i in range(2000):
        t.add(f"http://10.1.{i // 250}.{i % 250}:8470", "beacon")
    assert len(t) == MAX_PEERS
    assert "http://10.0.0.2:8470" in t  # reached once: not evicted by strangers
    t.add("http://10.0.0.1:8470", "static")
    assert "http://10.0.0.1:8470" in t


def test_backoff_grows_is_capped_and_a_penalty_is_longer() -> None:
    t, clock, _ = table()
    p = t.add("http://10.0.0.7:8470", "static")
    waits = []
    for _ in range(12):
        t.failed(p, "timeout")
        waits.append(p.backoff_until - clock.t)
    assert 1 <= waits[0] <= 2 and all(w <= MAX_BACKOFF for w in waits)
    assert waits[-1] >= MAX_BACKOFF / 2
    assert t.ready() == []
    t.failed(p, "forged", penalise=True)
    assert p.penalties == 1 and p.backoff_until - clock.t >= PENALTY_BACKOFF / 2
    t.succeeded(p)
    assert p.failures == 0 and p.last_ok == clock.t


def test_a_neighbour_with_an_uplink_clears_the_central_backoff_and_wakes() -> None:
    t, _clock, wakes = table()
    central = t.add("https://kpu.example", "central")
    central.is_central = True
    t.failed(central, "down")
    wakes.clear()
    t.add("http://10.0.0.7:8470", "beacon", key=KEY, central_ok=True)
    assert central.backoff_until == 0 and wakes
    assert [p.url for p in t.ready()] == ["https://kpu.example", "http://10.0.0.7:8470"]
    assert not t.uplink_ok()
    t.succeeded(central)
    assert t.uplink_ok()


def test_an_inbound_contact_is_remembered_only_with_a_valid_listen_header() -> None:
    t, _, _ = table()
    t.contact(KEY, ":http", "10.0.0.7", False)
    t.contact(KEY, ":0", "10.0.0.7", False)
    t.contact(KEY, ":99999", "10.0.0.7", False)
    t.contact("", ":8470", "10.0.0.7", False)
    assert len(t) == 0
    t.contact(KEY, ":8470", "10.0.0.7", True)
    assert [(p.url, p.source, p.key, p.central_ok) for p in t.values()] == [
        ("http://10.0.0.7:8470", "inbound", KEY, True)
    ]


def test_retry_all_clears_every_backoff() -> None:
    t, _clock, _ = table()
    a = t.add("http://10.0.0.7:8470", "static")
    b = t.add("http://10.0.0.8:8470", "static")
    t.failed(a, "x")
    t.failed(b, "y", penalise=True)
    t.retry_all()
    assert {p.url for p in t.ready()} == {a.url, b.url}
