"""The scheduler alone: a real peer table, fake sessions, no sockets, no node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from estafet.relay.peers import Peer, PeerTable, Stats
from estafet.relay.scheduler import Scheduler
from tests.relay.nodes import Clock

OWN = "aa" * 16
Behaviour = Callable[[Peer], Awaitable[None]]


async def quick(peer: Peer) -> None:
    await asyncio.sleep(0)


async def black_hole(peer: Peer) -> None:
    await asyncio.Event().wait()  # accepts the connection, never answers


@dataclass
class Harness:
    """A scheduler over a real peer table; each peer's session does what ``behaviour`` says."""

    clock: Clock = field(default_factory=lambda: Clock(1_000_000))
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.peers = PeerTable(OWN, self.clock)

    def make(self, interval: float = 3600.0, **kw: float) -> Scheduler:
        self.sched = Scheduler(self.peers, self.session, self.stats, interval, **kw)
        self.peers.wake = self.sched.wake
        return self.sched

    def add(self, name: str, behaviour: Behaviour = quick, **info: object) -> Peer:
        self.behaviour[f"http://{name}"] = behaviour
        peer = self.peers.add(f"http://{name}", "static")
        for k, v in info.items():
            setattr(peer, k, v)
        return peer

    async def session(self, peer: Peer) -> None:
        self.started.append(peer.url.removeprefix("http://"))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.behaviour[peer.url](peer)
            self.peers.succeeded(peer)
        finally:
            self.running -= 1
        self.finished.append(peer.url.removeprefix("http://"))

    async def until(self, what: Callable[[], bool], timeout: float = 5.0) -> float:
        t0 = time.monotonic()
        while not what():
            assert time.monotonic() - t0 < timeout, "timed out"
            await asyncio.sleep(0.005)
        return time.monotonic() - t0


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    sched = getattr(harness, "sched", None)
    if sched is not None:
        await sched.stop()


def run(sched: Scheduler) -> asyncio.Task[None]:
    return asyncio.create_task(sched.run(), name="scheduler")


async def test_central_reaching_peers_go_first(h: Harness) -> None:
    sched = h.make(max_sessions=1)
    h.add("plain")
    h.add("neighbour-with-uplink", central_ok=True)
    h.add("kpu", is_central=True)
    task = run(sched)
    await h.until(lambda: len(h.finished) == 3)
    assert h.started == ["kpu", "neighbour-with-uplink", "plain"]
    await sched.stop()
    await asyncio.wait_for(task, 1)


async def test_at_most_max_sessions_at_once_and_every_peer_gets_its_turn(h: Harness) -> None:
    gate = asyncio.Event()

    async def slow(peer: Peer) -> None:
        await gate.wait()

    sched = h.make(max_sessions=3)
    for i in range(7):
        h.add(f"p{i}", slow)
    run(sched)
    await h.until(lambda: len(h.started) == 3)
    await asyncio.sleep(0.05)
    assert len(h.started) == 3 and h.peak == 3  # the fourth waits for a slot
    gate.set()
    await h.until(lambda: len(h.finished) == 7)
    assert h.peak == 3 and sorted(h.started) == [f"p{i}" for i in range(7)]


async def test_a_black_hole_does_not_hold_the_others(h: Harness) -> None:
    """Issue 11: black holes claiming an uplink, sorted ahead of the honest gateway."""
    sched = h.make(max_sessions=4, budget=60.0)
    for i in range(3):
        h.add(f"hole{i}", black_hole, central_ok=True)
    h.add("gateway")
    run(sched)
    took = await h.until(lambda: "gateway" in h.finished, timeout=2.0)
    assert took < 1.0 and not any(f.startswith("hole") for f in h.finished)
    assert sched.in_session == {f"http://hole{i}" for i in range(3)}


async def test_a_session_past_its_budget_is_cancelled_backed_off_and_frees_its_slot(
    h: Harness,
) -> None:
    sched = h.make(max_sessions=1, budget=0.2)
    hole = h.add("hole", black_hole, central_ok=True)
    h.add("gateway")
    run(sched)
    took = await h.until(lambda: "gateway" in h.finished)
    assert 0.15 < took < 2.0  # waited for the one slot, no longer than the budget
    assert hole.failures == 1 and hole.backoff_until > h.clock()
    assert h.running == 0 and sched.in_session == set()


async def test_a_failing_session_backs_off_and_the_loop_goes_on(h: Harness) -> None:
    async def disk_full(peer: Peer) -> None:
        raise OSError(28, "No space left on device")

    sched = h.make(interval=0.05)
    bad = h.add("bad", disk_full)
    h.add("good")
    run(sched)
    await h.until(lambda: h.finished.count("good") >= 3)  # several rounds ran after the error
    assert bad.failures == 1 and h.started.count("bad") == 1  # backing off: not retried yet
    h.clock.t = bad.backoff_until + 1
    await h.until(lambda: h.started.count("bad") == 2)


async def test_a_wake_runs_a_round_at_once_not_at_the_interval(h: Harness) -> None:
    sched = h.make(interval=3600.0)
    run(sched)
    await asyncio.sleep(0.05)
    assert h.started == []  # no peer: the loop sleeps (no tick)
    h.add("gateway")  # a new peer wakes the scheduler (PeerTable.wake)
    took = await h.until(lambda: h.finished == ["gateway"], timeout=1.0)
    assert took < 0.5
    sched.wake()  # e.g. something was stored
    await h.until(lambda: h.finished == ["gateway", "gateway"], timeout=1.0)


async def test_backoff_is_respected(h: Harness) -> None:
    sched = h.make(interval=0.02)
    peer = h.add("gateway", backoff_until=h.clock() + 30)
    run(sched)
    await asyncio.sleep(0.2)  # about ten rounds
    assert h.started == []
    h.clock.t += 31
    await h.until(lambda: h.finished == ["gateway"] or len(h.finished) > 1, timeout=1.0)
    assert peer.failures == 0 and peer.last_ok == h.clock()


async def test_never_two_sessions_with_one_peer(h: Harness) -> None:
    gate = asyncio.Event()

    async def slow(peer: Peer) -> None:
        await gate.wait()

    sched = h.make(interval=0.02)
    h.add("gateway", slow)
    run(sched)
    await h.until(lambda: h.started == ["gateway"])
    for _ in range(5):
        sched.wake()
        await asyncio.sleep(0.02)
    assert h.started == ["gateway"]
    gate.set()
    await h.until(lambda: len(h.started) >= 2)  # free again: the next round takes it


async def test_stop_cancels_running_sessions_and_ends_the_loop(h: Harness) -> None:
    sched = h.make(max_sessions=2)
    h.add("hole1", black_hole)
    h.add("hole2", black_hole)
    task = run(sched)
    await h.until(lambda: h.running == 2)
    await asyncio.wait_for(sched.stop(), 1.0)
    assert h.running == 0
    await asyncio.wait_for(task, 1.0)
    assert task.done() and task.exception() is None


async def test_uplink_state_follows_the_central_peer(h: Harness) -> None:
    async def unreachable(peer: Peer) -> None:
        raise ConnectionRefusedError

    sched = h.make()
    kpu = h.add("kpu", is_central=True)
    run(sched)
    await h.until(lambda: h.finished == ["kpu"])
    await h.until(lambda: h.stats.uplink_ok)
    h.behaviour[kpu.url] = unreachable
    kpu.backoff_until = 0
    sched.wake()
    await h.until(lambda: kpu.failures == 1)
    await h.until(lambda: not h.stats.uplink_ok)
