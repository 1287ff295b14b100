"""Issue 11, item 6, at a relay: a refusal that is not the sender's fault does not penalise it.

Two real nodes on loopback. Peer B's clock is three days ahead of ours (a phone whose clock ran
fast, or ours that ran slow): B holds a result its chair signed under a certificate that begins
two days from our "now". Our node refuses that result as ``not-yet-valid`` (signed in our
future), which depends only on time: ``relay/sync.py: _accept`` must neither fail the session
nor penalise or back off B (``PeerTable`` state), and once our clock reaches B's the very next
session takes the result. Before ``Outcome.final`` the refusal was counted as misbehaviour: B was
penalised with a ten-minute backoff, and the result stayed away that long after the clocks agreed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from estafet.relay.accept import accept_batch
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import World
from tests.relay.nodes import Clock, make_node

pytestmark = pytest.mark.usefixtures("manual_sync")
DAY = 86_400


@dataclass
class Scene:
    world: World
    clock: Clock
    ours: Node
    b: Node
    result: bytes

    @property
    def b_url(self) -> str:
        return f"http://127.0.0.1:{self.b.port}"


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    world = World()
    clock = Clock(world.now)
    ahead = Clock(world.now + 3 * DAY)
    ours = make_node(world, tmp_path, "ours", clock=clock)
    b = make_node(world, tmp_path, "b", clock=ahead)
    key, cert = world.officer("late-chair", not_before=world.now + 2 * DAY,
                              not_after=world.now + 60 * DAY)  # fmt: skip
    env, _ = world.result(key, cert, created=world.now + 3 * DAY)
    [stored] = await b.store.write(accept_batch, b.trust, [env.encode()], peer="",
                                   origin="local", scope=b.scope, now=b.now())  # fmt: skip
    assert stored.status == "stored", stored  # valid at B's clock
    await ours.start()
    await b.start()
    try:
        yield Scene(world, clock, ours, b, env.id)
    finally:
        await b.stop()
        await ours.stop()


async def test_a_not_final_refusal_does_not_penalise_the_peer_and_the_result_comes_later(
    scene: Scene,
) -> None:
    s = scene
    rep = await s.ours.sync_now(s.b_url)
    assert rep.ok, rep.error  # the session is not failed for it
    assert rep.rejected == 0
    # refused: signed in our future
    assert await s.ours.store.read(StoreDB.has, [s.result]) == set()
    events = await s.ours.store.read(StoreDB.events)
    assert any(e["reason"].startswith("rejected not-yet-valid") for e in events), events
    peer = s.ours.peers[s.b_url]
    assert peer.key == s.b.key_hex
    assert peer.penalties == 0  # not penalised ...
    assert peer.failures == 0  # ... nor counted as a failure ...
    assert peer.backoff_until <= s.clock()  # ... nor backed off
    assert peer in s.ours.peers.ready()

    s.clock.t += 3 * DAY  # our clock reaches B's: the condition clears
    rep = await s.ours.sync_now(s.b_url)
    assert rep.ok, rep.error
    assert rep.pulled >= 1
    assert await s.ours.store.read(StoreDB.has, [s.result]) == {s.result}
    assert s.ours.peers[s.b_url].penalties == 0
