"""Cut photo transfers resume where they stopped; and what syncing costs on the wire.

Real nodes on loopback, with a small HTTP-aware TCP proxy between them that cuts the first photo
transfer after N bytes and counts the photo body bytes that crossed it, so "bytes re-sent" is
measured on the wire, not taken from the nodes' own counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from estafet.crypto.seal import seal
from estafet.protocol.objects import EndorsementBody
from estafet.relay import sync
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_bytes
from tests.relay.nodes import make_node

RESEND_BOUND = 64 * 1024
PHOTO = 300_000


async def _idle(self: Node) -> None:
    await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def _manual_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions run only when the test asks, so every byte through the proxy is accounted for."""
    monkeypatch.setattr(Node, "_scheduler", _idle)


_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
_REQUEST_LINE = re.compile(rb"[A-Z]+ /")


def _body_len(seg: bytes) -> int:
    """HTTP body bytes in ``seg`` (one message: headers excluded, capped by Content-Length)."""
    end = seg.find(b"\r\n\r\n")
    if end < 0:
        return 0
    m = _CONTENT_LENGTH.search(seg[:end])
    body = len(seg) - end - 4
    return min(body, int(m.group(1))) if m else body


def _complete(seg: bytes) -> bool:
    end = seg.find(b"\r\n\r\n")
    m = _CONTENT_LENGTH.search(seg[:end]) if end >= 0 else None
    return m is not None and len(seg) - end - 4 >= int(m.group(1))


class CutProxy:
    """TCP proxy to a node that watches HTTP/1.1 requests for ``marker`` (a photo GET or PUT).

    Each message that carries photo bytes (``direction`` "down": the response to a marked
    request; "up": the marked request itself) is recorded as a *segment*. After ``cut_after``
    such bytes the connection is cut (both sockets closed, like a dropped link), ``cuts`` times.
    ``body_bytes()`` sums the HTTP body bytes of all segments: the photo bytes on the wire.
    ``cut_all``: the cut closes every connection through the proxy at once (a dropped link),
    not only the one that crossed the count (photo bytes counted across connections).
    """

    def __init__(
        self,
        target: int,
        marker: bytes,
        direction: str,
        cut_after: int,
        cuts: int = 1,
        strip_range: bool = False,
        cut_all: bool = False,
    ) -> None:
        self.target = target
        self.cut_all = cut_all
        self.strip_range = strip_range  # play a peer that ignores Range (answers 200, all)
        self.marker = marker
        self.direction = direction
        self.cut_after = cut_after
        self.cuts = cuts
        self.remaining: int | None = cut_after if cuts > 0 else None
        self.segments: list[bytearray] = []
        self.requests: list[bytes] = []  # the head of every marked request
        self.cut_segments: list[bytearray] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body_bytes(self) -> int:
        return sum(_body_len(bytes(s)) for s in self.segments)

    def cut_body_bytes(self) -> int:
        return sum(_body_len(bytes(s)) for s in self.cut_segments)

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [cw, sw]
        current: list[bytearray | None] = [None]

        def cut() -> None:
            for w in list(self._writers) if self.cut_all else (cw, sw):
                with contextlib.suppress(Exception):
                    w.close()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(65536):
                if current[0] is not None and _complete(current[0]):
                    current[0] = None
                if up and (i := data.find(self.marker)) >= 0:
                    if self.strip_range:
                        data = re.sub(rb"(?i)\r\nrange: [^\r]*", b"", data)
                    self.requests.append(bytes(data[i : i + 4096]))
                    if self.direction == "up":
                        dst.write(data[:i])
                        data = data[i:]
                    current[0] = bytearray()
                    self.segments.append(current[0])
                elif up and self.direction == "down" and _REQUEST_LINE.match(data):
                    current[0] = None  # another request: its response carries no photo
                seg = current[0]
                if seg is not None and up == (self.direction == "up"):
                    if self.remaining is not None and len(data) >= self.remaining:
                        part = data[: self.remaining]
                        seg += part
                        dst.write(part)
                        with contextlib.suppress(Exception):
                            await dst.drain()
                        self.cut_segments.append(seg)
                        self.cuts -= 1
                        self.remaining = self.cut_after if self.cuts > 0 else None
                        cut()
                        return
                    if self.remaining is not None:
                        self.remaining -= len(data)
                dst.write(data)
                await dst.drain()
                if seg is not None and up == (self.direction == "up"):
                    seg += data  # counted once handed on: a drop loses what the proxy holds
            cut()

        with contextlib.suppress(Exception):
            await asyncio.gather(pump(cr, sw, True), pump(sr, cw, False))


class Net:
    """A phone holding a signed result with three large photos, and two empty relays."""

    def __init__(self, tmp: Path) -> None:
        from estafet.relay.local import submit_result

        self.world = World()
        self.phone = make_node(self.world, tmp, "phone", role="kpps-chair", scope=(TPS_A,))
        self.r1 = make_node(self.world, tmp, "r1")
        self.r2 = make_node(self.world, tmp, "r2")
        paths = []
        for i in (1, 2, 3):
            p = tmp / f"c1-{i}.jpg"
            p.write_bytes(photo_bytes(f"resume-{i}", PHOTO + i))
            paths.append(p)
        self.photos = [p.read_bytes() for p in paths]
        self.shas = [hashlib.sha256(d).digest() for d in self.photos]
        self.total = sum(len(d) for d in self.photos)
        sub = submit_result(
            self.phone.store,
            self.phone.key,
            self.world.root.public,
            form_json(),
            paths,
            self.world.now,
        )
        self.result = sub.id

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.phone, self.r1, self.r2)

    @staticmethod
    def url(node: Node) -> str:
        return f"http://127.0.0.1:{node.port}"

    @staticmethod
    async def blobs_held(node: Node, shas: list[bytes]) -> int:
        return sum([await node.store.read(StoreDB.has_blob, s) for s in shas])

    @staticmethod
    def partial(node: Node, sha: bytes) -> int:
        """Bytes held of ``sha`` in partial files, ours or an uploader's (one per uploader)."""
        parts = node.store.blobs.partial_dir.glob(f"{sha.hex()}*.part")
        return sum(p.stat().st_size for p in parts)


@pytest.fixture
def one_photo_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions move one photo at a time: tests that cut "N photo bytes in" count the bytes
    of one photo after another on the wire (``test_*_link_drop_*`` cut photos in flight)."""
    monkeypatch.setattr(sync, "PHOTOS_IN_FLIGHT", 1)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    for node in n.nodes:
        await node.start()
    try:
        yield n
    finally:
        for node in n.nodes:
            await node.stop()


def _cut_sha(proxy: CutProxy) -> bytes:
    """The photo whose transfer the proxy cut."""
    assert len(proxy.cut_segments) == 1
    index = next(i for i, seg in enumerate(proxy.segments) if seg is proxy.cut_segments[0])
    name = re.match(rb"[A-Z]+ /v1/blobs/([0-9a-f]{64})", proxy.requests[index])
    assert name
    return bytes.fromhex(name.group(1).decode())


async def _uploads_settled() -> None:
    """A receiving node finishes writing a cut upload after the sender has given up on it."""
    for _ in range(200):
        if not [t for t in asyncio.all_tasks() if t.get_name() == "blob-upload"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("an upload never finished")


async def _integrity(node: Node, net: Net) -> None:
    assert await net.blobs_held(node, net.shas) == 3
    for sha, data in zip(net.shas, net.photos, strict=True):
        assert node.store.blobs.path(sha).read_bytes() == data
        assert node.store.blobs.partial_size(sha) == 0
    assert await node.store.read(StoreDB.check) == []


# --- pull: GET with Range ---------------------------------------------------------------------


@pytest.mark.usefixtures("one_photo_at_a_time")
async def test_pull_cut_mid_photo_resumes_with_range(net: Net) -> None:
    # r1 gets everything from the phone; r2 then pulls from r1 through a proxy that cuts the
    # photo responses 1.5 photos in (so mid-way through the second photo)
    assert (await net.phone.sync_now(net.url(net.r1))).ok
    async with CutProxy(net.r1.port, b"GET /v1/blobs/", "down", PHOTO * 3 // 2) as proxy:
        first = await net.r2.sync_now(proxy.url)
        assert not first.ok and "unreachable" in first.error
        assert first.pulled >= 1  # the result itself arrived before its photos
        assert await net.blobs_held(net.r2, net.shas) == 1
        sha = _cut_sha(proxy)
        kept = net.partial(net.r2, sha)
        assert 0 < kept < PHOTO
        lost_in_cut = proxy.cut_body_bytes() - kept  # arrived on the wire, not on disk
        again = await net.r2.sync_now(proxy.url)
        assert again.ok, again.error
        assert again.blobs_in == 2
        assert _range_starts(proxy)[sha] == kept  # asked for the rest, from where it stopped
    await _integrity(net.r2, net)
    resent = proxy.body_bytes() - net.total
    print(f"photo bytes re-sent after a cut: {resent}")
    assert resent == lost_in_cut
    assert 0 <= resent <= RESEND_BOUND
    assert net.r2.stats.blob_bytes_resent == 0  # the peer honoured Range: nothing asked twice


@pytest.mark.usefixtures("one_photo_at_a_time")
async def test_pull_resumes_from_another_peer(net: Net) -> None:
    # the phone and r1 both hold the photos; r2 starts from r1, is cut, finishes from the phone
    assert (await net.phone.sync_now(net.url(net.r1))).ok
    async with (
        CutProxy(net.r1.port, b"GET /v1/blobs/", "down", PHOTO * 3 // 2) as cutting,
        CutProxy(net.phone.port, b"GET /v1/blobs/", "down", 0, cuts=0) as counting,
    ):
        first = await net.r2.sync_now(cutting.url)
        assert not first.ok
        sha = _cut_sha(cutting)
        kept = net.partial(net.r2, sha)
        assert 0 < kept < PHOTO
        untouched = [s for s in net.shas if s != sha and not net.r2.store.blobs.has(s)]
        assert len(untouched) == 1
        second = await net.r2.sync_now(counting.url)
        assert second.ok, second.error
        assert second.blobs_in == 2
        assert _range_starts(counting) == {sha: kept, untouched[0]: 0}
    await _integrity(net.r2, net)
    size = {s: len(p) for s, p in zip(net.shas, net.photos, strict=True)}
    assert counting.body_bytes() == size[sha] - kept + size[untouched[0]]
    resent = cutting.body_bytes() + counting.body_bytes() - net.total
    print(f"photo bytes re-sent after a cut, resumed from another peer: {resent}")
    assert resent == cutting.cut_body_bytes() - kept
    assert 0 <= resent <= RESEND_BOUND
    assert net.r2.stats.blob_bytes_resent == 0


@pytest.mark.usefixtures("one_photo_at_a_time")
async def test_a_peer_ignoring_range_costs_what_is_counted(net: Net) -> None:
    assert (await net.phone.sync_now(net.url(net.r1))).ok
    async with CutProxy(net.r1.port, b"GET /v1/blobs/", "down", PHOTO // 2) as cutting:
        assert not (await net.r2.sync_now(cutting.url)).ok
    sha = _cut_sha(cutting)
    kept = net.partial(net.r2, sha)
    assert kept > 0
    async with CutProxy(
        net.r1.port, b"GET /v1/blobs/", "down", 0, cuts=0, strip_range=True
    ) as ignoring:
        again = await net.r2.sync_now(ignoring.url)
        assert again.ok, again.error
    await _integrity(net.r2, net)
    resent = cutting.body_bytes() + ignoring.body_bytes() - net.total
    assert resent >= kept  # the whole photo came again
    assert net.r2.stats.blob_bytes_resent == kept  # and the node says so


def _range_starts(proxy: CutProxy) -> dict[bytes, int]:
    """Where each photo GET through ``proxy`` asked to start (no Range: 0)."""
    out = {}
    for head in proxy.requests:
        name = re.match(rb"GET /v1/blobs/([0-9a-f]{64})", head)
        start = re.search(rb"(?im)^range:\s*bytes=(\d+)-", head)
        assert name
        out[bytes.fromhex(name.group(1).decode())] = int(start.group(1)) if start else 0
    return out


# --- push: PUT from X-Estafet-Offset ------------------------------------------------------------


@pytest.mark.usefixtures("one_photo_at_a_time")
@pytest.mark.parametrize("cut_after", [1_000, 123_456, PHOTO - 10])
async def test_push_cut_mid_photo_resumes_from_offset(net: Net, cut_after: int) -> None:
    async with CutProxy(net.r1.port, b"PUT /v1/blobs/", "up", cut_after) as proxy:
        first = await net.phone.sync_now(proxy.url)
        assert not first.ok and "unreachable" in first.error
        assert first.pushed >= 1  # the result went ahead of its photos
        await _uploads_settled()
        sha = _cut_sha(proxy)
        kept = net.partial(net.r1, sha)
        assert kept < PHOTO
        assert kept > 0 or cut_after < 2_000  # a cut in the headers may leave nothing
        lost_in_cut = proxy.cut_body_bytes() - kept
        again = await net.phone.sync_now(proxy.url)
        assert again.ok, again.error
        assert again.blobs_out == 3
    await _integrity(net.r1, net)
    resent = proxy.body_bytes() - net.total
    print(f"photo bytes re-sent after a cut: {resent}")
    assert resent == lost_in_cut
    assert 0 <= resent <= RESEND_BOUND
    # the sender's own count of photo bytes it read and sent agrees with the wire
    assert net.phone.stats.blob_bytes_out - net.total >= resent


@pytest.mark.usefixtures("one_photo_at_a_time")
async def test_another_uploader_starts_its_own_partial_and_the_cut_one_goes(net: Net) -> None:
    """The phone's upload to r2 is cut; r1 (which got the photos from the phone) uploads it.
    Partial photos are per uploader (issue 11, item 3: anyone could overwrite a wanted partial
    at offset 0 and the honest uploader was blamed), so r1 starts from 0 in its own partial
    file; when it completes, the phone's partial is dropped. The cost: the cut bytes again."""
    assert (await net.phone.sync_now(net.url(net.r1))).ok
    async with (
        CutProxy(net.r2.port, b"PUT /v1/blobs/", "up", PHOTO * 3 // 2) as cutting,
        CutProxy(net.r2.port, b"PUT /v1/blobs/", "up", 0, cuts=0) as counting,
    ):
        first = await net.phone.sync_now(cutting.url)
        assert not first.ok
        await _uploads_settled()
        sha = _cut_sha(cutting)
        kept = net.partial(net.r2, sha)
        assert 0 < kept < PHOTO
        second = await net.r1.sync_now(counting.url)
        assert second.ok, second.error
        assert second.blobs_out == 2  # the cut photo, and the untouched one
        assert _offsets(counting)[sha] == 0  # its own partial: from zero
        assert net.partial(net.r2, sha) == 0  # complete: every partial of it is gone
    await _integrity(net.r2, net)
    resent = cutting.body_bytes() + counting.body_bytes() - net.total
    print(f"photo bytes re-sent after a cut, finished by another uploader: {resent}")
    assert 0 <= resent <= kept + RESEND_BOUND


# --- a dropped link with photos in flight ---------------------------------------------------------


def _held(node: Node, net: Net) -> tuple[dict[bytes, int], int]:
    """What ``node`` keeps after a cut: partial bytes per unfinished photo, and the bytes of
    the photos it holds complete."""
    kept = {s: net.partial(node, s) for s in net.shas if not node.store.blobs.has(s)}
    done = sum(len(p) for s, p in zip(net.shas, net.photos, strict=True) if s not in kept)
    return kept, done


@pytest.mark.parametrize("cut_after", [PHOTO + 50_000, 2 * PHOTO])
async def test_push_link_drop_with_photos_in_flight_loses_nothing(net: Net, cut_after: int) -> None:
    """Three photos upload at once; the link drops (every connection) after ``cut_after``
    photo bytes in all (more than one photo's worth). Each unfinished photo keeps every byte
    that reached the receiver, and the next session sends each from exactly there."""
    assert sync.PHOTOS_IN_FLIGHT >= 2
    async with CutProxy(net.r1.port, b"PUT /v1/blobs/", "up", cut_after, cut_all=True) as proxy:
        first = await net.phone.sync_now(proxy.url)
        assert not first.ok and "unreachable" in first.error
        await _uploads_settled()
        crossed = proxy.body_bytes()
        kept, done = _held(net.r1, net)
        assert len(proxy.segments) >= 2  # more than one photo was on its way
        assert kept and any(0 < k < PHOTO for k in kept.values())
        again = await net.phone.sync_now(proxy.url)
        assert again.ok, again.error
        offsets = _offsets(proxy)
        assert {s: offsets[s] for s in kept} == kept  # each from where it stopped
    await _integrity(net.r1, net)
    resent = proxy.body_bytes() - net.total
    print(f"photo bytes re-sent after a dropped link, 3 in flight: {resent}")
    assert resent == crossed - sum(kept.values()) - done
    assert 0 <= resent <= RESEND_BOUND


@pytest.mark.parametrize("cut_after", [PHOTO + 50_000, 2 * PHOTO])
async def test_pull_link_drop_with_photos_in_flight_loses_nothing(net: Net, cut_after: int) -> None:
    assert (await net.phone.sync_now(net.url(net.r1))).ok
    async with CutProxy(net.r1.port, b"GET /v1/blobs/", "down", cut_after, cut_all=True) as proxy:
        first = await net.r2.sync_now(proxy.url)
        assert not first.ok and "unreachable" in first.error
        crossed = proxy.body_bytes()
        kept, done = _held(net.r2, net)
        assert len(proxy.segments) >= 2
        assert kept and any(0 < k < PHOTO for k in kept.values())
        again = await net.r2.sync_now(proxy.url)
        assert again.ok, again.error
        starts = _range_starts(proxy)
        assert {s: starts[s] for s in kept} == kept
    await _integrity(net.r2, net)
    resent = proxy.body_bytes() - net.total
    print(f"photo bytes re-sent after a dropped link, 3 in flight: {resent}")
    assert resent == crossed - sum(kept.values()) - done
    assert 0 <= resent <= RESEND_BOUND
    assert net.r2.stats.blob_bytes_resent == 0


def _offsets(proxy: CutProxy) -> dict[bytes, int]:
    """The X-Estafet-Offset of each photo PUT through ``proxy``."""
    out = {}
    for head in proxy.requests:
        name = re.match(rb"PUT /v1/blobs/([0-9a-f]{64})", head)
        offset = re.search(rb"(?im)^x-estafet-offset:\s*(\d+)", head)
        assert name and offset
        out[bytes.fromhex(name.group(1).decode())] = int(offset.group(1))
    return out


# --- what reconciliation costs on the wire ------------------------------------------------------


def _filler(node: Node, n: int, now: int) -> None:
    """``n`` identical stand-in rows in ``node``'s store (reconciliation looks only at
    (created, id); an in-sync session never fetches them), inserted in one transaction."""
    rows = []
    for i in range(n):
        oid = hashlib.sha256(b"filler/%d" % i).digest()
        rows.append(
            (
                oid,
                "endorsement",
                TPS_A,
                TPS_A,
                "bupati",
                now - n + i,
                b"\0",
                1,
                "relayed",
                now,
                None,
                0,
            )
        )
    db = node.store.sync_db().db
    with db.atomic():
        db.conn.executemany(
            "INSERT INTO objects (id, kind, region, tps, election, created, raw, size, origin,"
            " received, state, revoked) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )


async def test_reconcile_bytes_at_10000_objects(tmp_path: Path) -> None:
    import random

    world = World()
    a = make_node(world, tmp_path, "ten-a")
    b = make_node(world, tmp_path, "ten-b")
    for node in (a, b):
        _filler(node, 10_000, world.now)
        await node.start()
    try:
        warm = await b.sync_now(Net.url(a))  # the two nodes' own certificates differ
        assert warm.ok, warm.error
        same = await b.sync_now(Net.url(a))
        assert same.ok and same.in_sync
        assert same.round_trips == 1
        assert same.reconcile_bytes <= 64

        rng = random.Random(20241127)
        member, cert = world.officer("member", role="kpps-member", scope=(TPS_A,))
        trust = world.trust()
        sdb = a.store.sync_db()
        diffs = []
        for t in sorted(rng.sample(range(world.now - 10_000, world.now), 100)):
            target = hashlib.sha256(b"result/%d" % t).digest()
            body = EndorsementBody(target, TPS_A, "bupati", "agree")
            env = seal("endorsement", body, member, t, chain=world.chain(cert))
            sdb.put(trust.verify(env.encode(), world.now), "relayed", None, world.now)
            diffs.append(env.id)
        # two sessions of b's at once (its scheduler and `node sync` may overlap): each keeps
        # its own initiator state, so both finish cleanly
        hundred, twin = await asyncio.gather(b.sync_now(Net.url(a)), b.sync_now(Net.url(a)))
        assert hundred.ok, hundred.error
        assert twin.ok, twin.error
        assert hundred.pulled + twin.pulled == 100
        assert await b.store.read(StoreDB.has, diffs) == set(diffs)
        assert hundred.reconcile_bytes <= 100 * 512  # measured ~340 bytes a difference
        again = await b.sync_now(Net.url(a))
        assert again.in_sync and again.reconcile_bytes == same.reconcile_bytes
        print(
            f"reconcile bytes at 10,000 objects: in sync {same.reconcile_bytes} "
            f"({same.round_trips} round trip); 100 differences {hundred.reconcile_bytes} "
            f"({hundred.round_trips} round trips)"
        )
    finally:
        for node in (a, b):
            await node.stop()


async def test_bodies_larger_than_one_network_read(tmp_path: Path) -> None:
    """300 objects (~240 KB) in one objects/get answer and one objects/put request: a body is
    read to its end, not just what the first read returned."""
    world = World()
    a = make_node(world, tmp_path, "big-a")
    b = make_node(world, tmp_path, "big-b")
    member, cert = world.officer("member", role="kpps-member", scope=(TPS_A,))
    trust = world.trust()
    ids = []
    sdb = a.store.sync_db()
    with sdb.db.atomic():
        for i in range(300):
            body = EndorsementBody(hashlib.sha256(b"big/%d" % i).digest(), TPS_A, "bupati", "agree")
            env = seal("endorsement", body, member, world.now + i, chain=world.chain(cert))
            sdb.put(trust.verify(env.encode(), world.now), "relayed", None, world.now)
            ids.append(env.id)
    c = make_node(world, tmp_path, "big-c")
    for node in (a, b, c):
        await node.start()
    try:
        pulled = await b.sync_now(Net.url(a))  # b pulls them all from a
        assert pulled.ok, pulled.error
        assert pulled.pulled >= 300
        pushed = await b.sync_now(Net.url(c))  # and pushes them all to c
        assert pushed.ok, pushed.error
        assert pushed.pushed >= 300
        assert await c.store.read(StoreDB.has, ids) == set(ids)
    finally:
        for node in (a, b, c):
            await node.stop()
