"""Range-based set reconciliation (negentropy-style): a pure state machine, bytes in, bytes out.

Theory of operation
-------------------
Each side holds a set of *items* ``(timestamp, id)`` (``id`` a 32-byte SHA-256, unique;
``timestamp`` unix seconds in ``0 .. 2**40``), ordered by ``(timestamp, id)``. The key space is
cut into half-open ranges by *bounds*: a bound is ``(timestamp, id_prefix)`` or *infinity*, and
an item lies below a bound when ``(ts, id) < (bound_ts, prefix)`` in Python tuple order (a
prefix sorts before every id extending it). A message walks the whole key space from the
bottom: a list of ranges, each named by its upper bound (its lower bound is the previous
range's upper bound, or the bottom) and carrying a *mode*:

* ``SKIP``: nothing to do here (in sync, finished, or not being worked on in this round);
* ``FINGERPRINT``: the sender's 16-byte fingerprint of its items in the range;
* ``IDLIST``: every id the sender has in the range;
* ``IDDIFF`` (reply to an ``IDLIST``): the ids the responder has and the initiator lacks, plus a
  bitmap over the initiator's list marking those the responder lacks;
* ``DEFER`` (reply only, always last, up to infinity): "my frame is full; everything you asked
  from here up was not looked at, ask again".

A fingerprint is ``SHA-256(sum of ids as little-endian integers mod 2**256, 32 bytes LE ||
varint(count))[:16]``. Sums come from prefix sums kept for every 32nd item (built once, lazily),
so a range costs two bisections and at most ~64 integer conversions, never O(N).

The initiator opens with one ``FINGERPRINT`` over everything (19 bytes). A receiver whose
fingerprint differs answers with an ``IDLIST`` if it holds at most ``_IDLIST_THRESHOLD`` items
in the range, else splits its items into ``_BRANCHING`` equal-count buckets, each with its
fingerprint; equal fingerprints become ``SKIP``. An ``IDLIST`` from the responder finishes the
range at the initiator (which diffs locally); one from the initiator is answered by ``IDDIFF``,
or, when the responder holds many more items there, by all of them as ``IDLIST`` chunks. So
every ``IDLIST`` finishes its range, each range is finished exactly once, and every id is
reported exactly once as ``have`` or ``need``. Sets in sync cost one round trip of 22 bytes.
With d differences among N items the exchange takes O(log N) round trips and roughly
O(d log N) fingerprints.

The responder is stateless: all it needs is in the message, and one object may answer any
number of interleaved sessions. The initiator keeps two small lists between rounds: the ranges
it asked about in its last message (a reply may only work on those, which bounds what a
hostile responder can make it report) and a backlog of ranges that did not fit in its frame.
An ``IDDIFF`` bitmap refers to the initiator's own items in the range, which it recomputes.
Frames: a side adds ranges only while they fit ``frame_size_limit`` (each message carries at
least one, so every round makes progress); the initiator keeps the rest in its backlog and
sends ``SKIP`` for them meanwhile; a responder ends with ``DEFER`` and the initiator asks again.

Wire format
-----------
``message = 0x01 range*`` whose last range is bounded by infinity (so truncation is always
detected). ``range = varint(ts_code) varint(prefix_len << 3 | mode) prefix payload``:
``ts_code`` 0 is infinity (prefix_len 0), else ``1 + ts - ts of the previous bound`` (0 for
the first); ``prefix_len <= 32``; modes SKIP 0, FINGERPRINT 1, IDLIST 2, IDDIFF 3, DEFER 4.
Payloads: SKIP and DEFER none; FINGERPRINT 16 bytes; IDLIST ``varint(n)`` + n 32-byte ids;
IDDIFF ``varint(n)`` + n 32-byte ids + ``ceil(k/8)`` bitmap bytes, bit ``i`` (LSB first of byte
``i // 8``) for the initiator's ``i``-th id in the range, k its count there, padding bits 0.
Varints are unsigned LEB128, minimal, at most 10 bytes, below ``2**64``; bounds strictly
increase. Incoming messages are capped by :class:`Limits` (which also cap what we send); every
count is checked against the remaining bytes before allocating; anything malformed raises
:class:`ReconcileError` only.

Caveats: sum fingerprints are not collision resistant for crafted ids (``{1, 4}`` and
``{2, 3}`` sum alike; negentropy shares this); with SHA-256 ids nobody controls the chance is
negligible, but a party able to grind many ids could hide differences in a range. A hostile
responder can keep an initiator busy (or lie about what it has): callers cap round trips.
"""

from __future__ import annotations

import copy
import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from heapq import merge
from itertools import accumulate, islice
from operator import itemgetter

from .errors import ProtocolError

__all__ = ["ID_SIZE", "MAX_TIMESTAMP", "Limits", "ReconcileError", "Reconciler", "fingerprint"]

VERSION = 0x01
ID_SIZE = 32
FINGERPRINT_SIZE = 16
MAX_TIMESTAMP = 2**40

_SKIP, _FINGERPRINT, _IDLIST, _IDDIFF, _DEFER = 0, 1, 2, 3, 4
_REQUEST_MODES = frozenset((_SKIP, _FINGERPRINT, _IDLIST))
_REPLY_MODES = frozenset((_SKIP, _FINGERPRINT, _IDLIST, _IDDIFF, _DEFER))
_BRANCHING = 8  # buckets per split (measured: fewer bytes than 16 at equal round trips)
_IDLIST_THRESHOLD = 12  # at most this many items: send ids rather than split
_MAX_CHUNK = 128  # ids per IDDIFF answer / IDLIST chunk
_MIN_FRAME = 4096
_RESERVE = 64  # frame room kept for the closing DEFER or SKIP range
_BLOCK = 32  # stride of the prefix-sum table
_MASK = 2**256 - 1
_INF_TS = 2**64
_INF: tuple[int, bytes] = (_INF_TS, b"")
_BOTTOM: tuple[int, bytes] = (0, b"")
_from_le = partial(int.from_bytes, byteorder="little")
_get_id = itemgetter(1)

Bound = tuple[int, bytes]
Item = tuple[int, bytes]
Piece = tuple[Bound, Bound, int, bytes]  # lower, upper, mode, payload: one range to send
Parsed = tuple[Bound, Bound, int, int, int, list[bytes], bytes]  # lower, upper, lo, hi, mode...


class ReconcileError(ProtocolError):
    """Malformed or hostile reconciliation message."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps for decoding untrusted messages."""

    max_message_bytes: int = 512 * 1024
    max_ranges: int = 4096
    max_ids_per_message: int = 16384


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fp(total: int, count: int) -> bytes:
    data = (total & _MASK).to_bytes(32, "little") + _varint(count)
    return hashlib.sha256(data).digest()[:FINGERPRINT_SIZE]


def fingerprint(items: Iterable[tuple[int, bytes]]) -> bytes:
    """The 16-byte fingerprint of a set of items (order does not matter; only ids count)."""
    ids = [item[1] for item in items]
    return _fp(sum(map(_from_le, ids)), len(ids))


def _minimal_bound(prev: Item, cur: Item) -> Bound:
    """The shortest bound ``b`` with ``prev < b <= cur``."""
    if prev[0] != cur[0]:
        return (cur[0], b"")
    a, b = prev[1], cur[1]
    k = 0
    while a[k] == b[k]:
        k += 1
    return (cur[0], b[: k + 1])


class _Reader:
    __slots__ = ("buf", "ids", "limits", "pos")

    def __init__(self, buf: bytes, limits: Limits) -> None:
        self.buf = buf
        self.pos = 1  # after the version byte
        self.limits = limits
        self.ids = 0

    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise ReconcileError("message truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        value = shift = 0
        for i in range(10):
            if self.pos >= len(self.buf):
                raise ReconcileError("message truncated inside a varint")
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise ReconcileError("non-minimal varint")
                if value >= 2**64:
                    raise ReconcileError("varint out of range")
                return value
        raise ReconcileError("varint longer than 10 bytes")

    def ids_list(self) -> list[bytes]:
        n = self.varint()
        self.ids += n
        if self.ids > self.limits.max_ids_per_message:
            raise ReconcileError("too many ids in message")
        raw = self.take(n * ID_SIZE)
        return [raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE)]

    def bound(self, prev: Bound) -> tuple[Bound, int]:
        code = self.varint()
        header = self.varint()
        mode, plen = header & 7, header >> 3
        if plen > ID_SIZE:
            raise ReconcileError("id prefix longer than an id")
        if code == 0:
            if plen:
                raise ReconcileError("infinite bound with an id prefix")
            bound = _INF
        else:
            ts = prev[0] + code - 1
            if ts > MAX_TIMESTAMP:
                raise ReconcileError("bound timestamp out of range")
            bound = (ts, self.take(plen))
        if bound <= prev:
            raise ReconcileError("bounds not strictly increasing")
        return bound, mode


class _Writer:
    __slots__ = ("active", "buf", "ids", "last", "limit", "limits", "prev_ts", "ranges")

    def __init__(self, limit: int, limits: Limits) -> None:
        self.buf = bytearray((VERSION,))
        self.prev_ts = 0
        self.last = _BOTTOM  # upper bound of the last range written
        self.limit = min(limit, limits.max_message_bytes)
        self.limits = limits
        self.ranges = self.ids = 0
        self.active = False  # has a non-skip range been written?

    def _range(self, out: bytearray, bound: Bound, mode: int, ts: int) -> int:
        if bound[0] == _INF_TS:
            out += b"\x00" + _varint(mode)
            return ts
        out += _varint(bound[0] - ts + 1) + _varint(len(bound[1]) << 3 | mode) + bound[1]
        return bound[0]

    def add(self, piece: Piece, force: bool = False) -> bool:
        """Append one range (skipping up to it) unless it would overflow the frame."""
        lower, upper, mode, payload = piece
        tmp = bytearray()
        ts, ranges, ids = self.prev_ts, self.ranges + 1, self.ids + len(payload) // ID_SIZE
        if lower != self.last:
            ts, ranges = self._range(tmp, lower, _SKIP, ts), ranges + 1
        ts = self._range(tmp, upper, mode, ts)
        tmp += payload
        full = len(self.buf) + len(tmp) + _RESERVE > self.limit  # keep room to close:
        full |= ranges >= self.limits.max_ranges or ids > self.limits.max_ids_per_message
        if full and self.active and not force:
            return False
        self.buf += tmp
        self.prev_ts, self.last, self.active = ts, upper, True
        self.ranges, self.ids = ranges, ids
        return True

    def defer(self, lower: Bound) -> None:
        """Close with DEFER from ``lower`` (from the last range if no room for a skip)."""
        lower = lower if self.ranges + 2 <= self.limits.max_ranges else self.last
        self.add((lower, _INF, _DEFER, b""), force=True)

    def finish(self) -> bytes:
        if self.last != _INF:
            self._range(self.buf, _INF, _SKIP, self.prev_ts)
        return bytes(self.buf)


class Reconciler:
    """One side of a reconciliation over a fixed, sorted set of items.

    As initiator: :meth:`initiate`, then feed each reply to :meth:`reconcile` until it returns
    ``None`` as the next message (one session at a time; :meth:`initiate` starts afresh). As
    responder: :meth:`respond` to each message (stateless; sessions may interleave freely).
    """

    def __init__(
        self,
        items: Sequence[tuple[int, bytes]],
        *,
        frame_size_limit: int = 60_000,
        limits: Limits = Limits(),
    ) -> None:
        if min(frame_size_limit, limits.max_message_bytes) < _MIN_FRAME:
            raise ValueError(f"frame_size_limit and max_message_bytes must be >= {_MIN_FRAME}")
        if limits.max_ranges < 3 or limits.max_ids_per_message < _IDLIST_THRESHOLD:
            raise ValueError("limits too small to make progress")
        copied = list(items)
        prev: tuple[int, bytes] = (-1, b"")
        try:
            for item in copied:
                ts, id_ = item
                if not (prev < item and type(item) is tuple and type(ts) is int):
                    raise ValueError
                if type(id_) is not bytes or len(id_) != ID_SIZE:
                    raise ValueError
                prev = item
        except (TypeError, ValueError):
            raise ValueError("items must be sorted (int, 32-byte id) tuples") from None
        if copied and not (copied[0][0] >= 0 and copied[-1][0] <= MAX_TIMESTAMP):
            raise ValueError("timestamps must lie in 0 .. 2**40")
        self._items: list[Item] = copied
        self._frame = frame = min(frame_size_limit, limits.max_message_bytes)
        self._limits = limits
        room = min(_MAX_CHUNK, (frame - 256) // 64, limits.max_ids_per_message)
        self._chunk = max(_IDLIST_THRESHOLD, room)
        self._blocks: list[int] | None = None
        self._sent: list[Piece] = []  # initiator: the ranges asked about in the last message
        self._backlog: list[Piece] = []  # initiator: ranges that did not fit in a frame yet

    # -- fingerprints and range descriptions ----------------------------------------------------

    def _sum(self, lo: int, hi: int) -> int:
        return sum(map(_from_le, map(_get_id, self._items[lo:hi])))

    def _fingerprint(self, lo: int, hi: int) -> bytes:
        if hi - lo <= _BLOCK:
            return _fp(self._sum(lo, hi), hi - lo)
        blocks = self._blocks
        if blocks is None:  # prefix sums at every _BLOCK-th item, built once
            sums = accumulate(map(_from_le, map(_get_id, self._items)))
            blocks = self._blocks = [0, *islice(sums, _BLOCK - 1, None, _BLOCK)]
        a, b = lo // _BLOCK, hi // _BLOCK
        total = blocks[b] - blocks[a] + self._sum(b * _BLOCK, hi) - self._sum(a * _BLOCK, lo)
        return _fp(total, hi - lo)

    def _index(self, bound: Bound) -> int:
        return len(self._items) if bound == _INF else bisect_left(self._items, bound)

    def _bound_at(self, end: int, hi: int, upper: Bound) -> Bound:
        items = self._items
        return upper if end == hi else _minimal_bound(items[end - 1], items[end])

    def _idlists(self, lo: int, hi: int, lower: Bound, upper: Bound, size: int) -> Iterator[Piece]:
        """Our ids in the range as IDLIST ranges of at most ``size`` ids each."""
        for start in range(lo, max(hi, lo + 1), size):
            end = min(start + size, hi)
            bound = self._bound_at(end, hi, upper)
            ids = b"".join(map(_get_id, self._items[start:end]))
            yield lower, bound, _IDLIST, _varint(end - start) + ids
            lower = bound

    def _split(self, lo: int, hi: int, lower: Bound, upper: Bound) -> Iterator[Piece]:
        """Answer a mismatched range: our ids if few, else fingerprints of equal buckets."""
        n = hi - lo
        if n <= _IDLIST_THRESHOLD:
            yield from self._idlists(lo, hi, lower, upper, _IDLIST_THRESHOLD)
            return
        buckets = min(_BRANCHING, n)
        size, extra = divmod(n, buckets)
        start = lo
        for b in range(buckets):
            end = start + size + (1 if b < extra else 0)
            bound = self._bound_at(end, hi, upper)
            yield lower, bound, _FINGERPRINT, self._fingerprint(start, end)
            start, lower = end, bound

    def _describe(self, lower: Bound, upper: Bound) -> Piece:
        """Our view of a range, to ask about it again."""
        lo, hi = self._index(lower), self._index(upper)
        if hi - lo <= _IDLIST_THRESHOLD:
            return next(self._idlists(lo, hi, lower, upper, _IDLIST_THRESHOLD))
        return lower, upper, _FINGERPRINT, self._fingerprint(lo, hi)

    def _iddiff(
        self, theirs: list[bytes], lo: int, hi: int, lower: Bound, upper: Bound
    ) -> Iterator[Piece]:
        """Answer the initiator's IDLIST: what it lacks and a bitmap of what we lack."""
        if max(hi - lo, len(theirs)) > self._chunk:  # it lacks most of ours: send them all
            yield from self._idlists(lo, hi, lower, upper, self._chunk)
            return
        mine = [item[1] for item in self._items[lo:hi]]
        their_set, mine_set = set(theirs), set(mine)
        need = [i for i in mine if i not in their_set]
        bits = bytearray((len(theirs) + 7) // 8)
        for k, id_ in enumerate(theirs):
            if id_ not in mine_set:
                bits[k >> 3] |= 1 << (k & 7)
        yield lower, upper, _IDDIFF, _varint(len(need)) + b"".join(need) + bytes(bits)

    # -- parsing --------------------------------------------------------------------------------

    def _parse(self, msg: bytes, modes: frozenset[int]) -> Iterator[Parsed]:
        """Validate a whole message, yielding its ranges with our item indices."""
        limits = self._limits
        if len(msg) > limits.max_message_bytes:
            raise ReconcileError("message too large")
        if not msg or msg[0] != VERSION:
            raise ReconcileError("unknown protocol version")
        reader = _Reader(msg, limits)
        items = self._items
        prev, lo, ranges = _BOTTOM, 0, 0
        while prev != _INF:
            if not reader.left():
                raise ReconcileError("message does not reach infinity (truncated?)")
            ranges += 1
            if ranges > limits.max_ranges:
                raise ReconcileError("too many ranges in message")
            bound, mode = reader.bound(prev)
            if mode not in modes or (mode == _DEFER and bound != _INF):
                raise ReconcileError(f"range mode {mode} not allowed here")
            hi = len(items) if bound == _INF else bisect_left(items, bound, lo)
            ids: list[bytes] = []
            extra = b""
            if mode == _FINGERPRINT:
                ids = [reader.take(FINGERPRINT_SIZE)]
            elif mode in (_IDLIST, _IDDIFF):
                ids = reader.ids_list()
            if mode == _IDDIFF:
                n = hi - lo
                extra = reader.take((n + 7) // 8)
                if n % 8 and extra[-1] >> (n % 8):
                    raise ReconcileError("IDDIFF bitmap padding not zero")
            yield prev, bound, lo, hi, mode, ids, extra
            prev, lo = bound, hi
        if reader.left():
            raise ReconcileError("trailing bytes after the infinite bound")

    # -- the two roles --------------------------------------------------------------------------

    def session(self) -> Reconciler:
        """A new initiator over the same items, sharing the built sums: one Reconciler may
        answer any number of responder calls while each initiator session has its own."""
        other = copy.copy(self)
        other._sent, other._backlog = [], []
        return other

    def initiate(self) -> bytes:
        """The first message: one fingerprint over the whole key space."""
        first = (_BOTTOM, _INF, _FINGERPRINT, self._fingerprint(0, len(self._items)))
        self._sent, self._backlog = [first], []
        writer = _Writer(self._frame, self._limits)
        writer.add(first, force=True)
        return writer.finish()

    def reconcile(self, msg: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """Process the responder's reply. Returns (next_message or None when done, have_ids,
        need_ids): have_ids the initiator has and the responder lacks, need_ids the responder
        has and the initiator lacks (both found in this round)."""
        try:
            return self._reconcile(bytes(msg))
        except (IndexError, ValueError, OverflowError, KeyError) as exc:
            raise ReconcileError(f"malformed message: {exc}") from exc

    def respond(self, msg: bytes) -> bytes:
        """Answer one initiator message (stateless: all state is in the message)."""
        try:
            return self._respond(bytes(msg))
        except (IndexError, ValueError, OverflowError, KeyError) as exc:
            raise ReconcileError(f"malformed message: {exc}") from exc

    def _reconcile(self, msg: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        items, sent = self._items, self._sent
        new: list[Piece] = []
        have: list[bytes] = []
        need: list[bytes] = []
        k, progress = 0, False
        for lower, upper, lo, hi, mode, ids, bits in self._parse(msg, _REPLY_MODES):
            if mode == _SKIP:
                continue
            if mode == _DEFER:
                if not progress:
                    raise ReconcileError("DEFER without progress")
                for piece in sent:  # ask again about everything not looked at
                    if piece[1] > lower:
                        new.append(piece if piece[0] >= lower else self._describe(lower, piece[1]))
                continue
            while k < len(sent) and sent[k][1] <= lower:
                k += 1
            if k == len(sent) or not sent[k][0] <= lower < upper <= sent[k][1]:
                raise ReconcileError("reply works on a range that was not asked about")
            progress = True
            if mode == _FINGERPRINT:
                if ids[0] != self._fingerprint(lo, hi):
                    new.extend(self._split(lo, hi, lower, upper))
            elif mode == _IDLIST:
                mine = [item[1] for item in items[lo:hi]]
                their_set, mine_set = set(ids), set(mine)
                have.extend(i for i in mine if i not in their_set)
                need.extend(i for i in dict.fromkeys(ids) if i not in mine_set)
            else:  # IDDIFF
                mine_set = {item[1] for item in items[lo:hi]}
                need.extend(i for i in dict.fromkeys(ids) if i not in mine_set)
                have.extend(items[lo + j][1] for j in range(hi - lo) if bits[j >> 3] >> (j & 7) & 1)
        writer = _Writer(self._frame, self._limits)
        pending = list(merge(new, self._backlog, key=itemgetter(0)))
        for n, piece in enumerate(pending):
            if not writer.add(piece):
                self._sent, self._backlog = pending[:n], pending[n:]
                break
        else:
            self._sent, self._backlog = pending, []
        return (writer.finish() if pending else None), have, need

    def _respond(self, msg: bytes) -> bytes:
        writer = _Writer(self._frame, self._limits)
        full = False
        for lower, upper, lo, hi, mode, ids, _ in self._parse(msg, _REQUEST_MODES):
            if full or mode == _SKIP:
                continue  # past a full frame the rest is only validated
            if mode == _FINGERPRINT:
                if ids[0] == self._fingerprint(lo, hi):
                    continue
                pieces = self._split(lo, hi, lower, upper)
            else:
                pieces = self._iddiff(ids, lo, hi, lower, upper)
            for piece in pieces:
                if not writer.add(piece):
                    writer.defer(piece[0])
                    full = True
                    break
        return writer.finish()
