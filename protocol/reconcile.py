"""Range-based set reconciliation (negentropy-style): a pure state machine, bytes in, bytes out.

Theory of operation
-------------------
Each side holds a set of *items* ``(timestamp, id)`` (``id`` a 32-byte SHA-256, ``timestamp``
unix seconds in ``0 .. 2**40``), ordered by ``(timestamp, id)``. The key space is cut into
half-open ranges by *bounds*; a bound is ``(timestamp, id_prefix)`` or *infinity*, and an item
lies below a bound when ``(ts, id) < (bound_ts, prefix)`` in Python tuple order (a prefix sorts
before every id that extends it). A message walks the whole key space from the bottom: it is a
list of ranges, each named by its upper bound (the lower bound is the previous range's upper
bound, or the bottom for the first) and carrying a *mode*:

* ``SKIP``: nothing to do here (already in sync, or finished);
* ``FINGERPRINT``: the sender's 16-byte fingerprint of its items in the range;
* ``IDLIST``: every id the sender has in the range;
* ``IDDIFF`` (responder only, the answer to an ``IDLIST``): the ids the responder has and the
  initiator lacks, plus a bitmap over the initiator's list marking the ids the responder lacks.

A fingerprint is ``SHA-256(sum of ids as little-endian integers mod 2**256 (32 bytes LE) ||
varint(count))[:16]``; sums come from block prefix sums, so any range costs O(1) bisections
and at most ~2x32 integer conversions.

The initiator opens with a single ``FINGERPRINT`` range covering everything (19 bytes). On a
fingerprint that differs, the receiver sends an ``IDLIST`` if it holds at most
``_IDLIST_THRESHOLD`` items in the range, else splits its items into ``_BRANCHING`` equal-count
buckets, each with its fingerprint. An ``IDLIST`` from the responder ends the range at the
initiator (it diffs locally); an ``IDLIST`` from the initiator is answered with ``IDDIFF``
(or, if the responder holds too many items there, by splitting). Matching fingerprints become
``SKIP``. The initiator is done when its next message would contain only skips. In-sync sets
cost one round trip: 19 bytes out, 3 bytes back (``version, SKIP to infinity``).

All state lives in the messages' ranges: the responder is stateless and one object may answer
any number of messages; the initiator keeps nothing between rounds either (an ``IDDIFF``
bitmap refers to the initiator's own items in the range, which it can recompute). Each range is
finished (reported as ``have``/``need``) exactly once, so ids are never reported twice.

Wire format
-----------
``message = VERSION (0x01) range* ``; the last range's bound must be infinity, so any
truncation is detected. ``range = bound header payload`` where bound is ``varint(ts_code)``
(0 = infinity, else ``1 + ts - previous bound's ts`` in this message), then a header byte
``mode << 6 | prefix_len`` (``prefix_len`` <= 32, 0 for infinity), then the prefix bytes. Payloads:
``SKIP`` none; ``FINGERPRINT`` 16 bytes; ``IDLIST`` ``varint(n)`` then ``n`` 32-byte ids;
``IDDIFF`` ``varint(n)``, ``n`` 32-byte ids, then ``ceil(k/8)`` bitmap bytes (bit ``i`` = LSB
first of byte ``i // 8``) where ``k`` is the length of the list being answered; padding bits 0.
Varints are unsigned LEB128, at most 10 bytes, minimal, below ``2**64``. Bounds must strictly
increase.

Limits and hostile input
------------------------
Incoming messages are capped by :class:`Limits` (bytes, ranges, ids), every count is checked
against the remaining bytes before anything is allocated, and anything malformed raises
:class:`ReconcileError` only. Outgoing messages respect ``frame_size_limit``: when the next
range's answer would not fit, the rest of the key space is sent as one ``FINGERPRINT`` range and
the next round resumes from there, so every message makes progress.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, islice
from operator import itemgetter

__all__ = ["ID_SIZE", "MAX_TIMESTAMP", "Limits", "ReconcileError", "Reconciler", "fingerprint"]

VERSION = 0x01
ID_SIZE = 32
FINGERPRINT_SIZE = 16
MAX_TIMESTAMP = 2**40

_SKIP, _FINGERPRINT, _IDLIST, _IDDIFF = 0, 1, 2, 3
_BRANCHING = 8
_IDLIST_THRESHOLD = 12
_MIN_FRAME = 4096
_RESERVE = 80  # room kept for the closing "rest of the key space" range
_BLOCK = 32  # stride of the prefix-sum table
_MAX_CHUNK = 128  # ids per IDDIFF answer / IDLIST chunk
_MASK = 2**256 - 1
_INF_TS = 2**64
_INF: tuple[int, bytes] = (_INF_TS, b"")
_BOTTOM: tuple[int, bytes] = (0, b"")
_from_le = partial(int.from_bytes, byteorder="little")
_get_id = itemgetter(1)

Bound = tuple[int, bytes]
Item = tuple[int, bytes]
Piece = tuple[Bound, int, bytes, int]  # bound, mode, payload, index of first item


class ReconcileError(Exception):
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

    def ids_list(self, n: int) -> list[bytes]:
        self.ids += n
        if self.ids > self.limits.max_ids_per_message:
            raise ReconcileError("too many ids in message")
        if n * ID_SIZE > self.left():
            raise ReconcileError("id count exceeds message size")
        raw = self.take(n * ID_SIZE)
        return [raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE)]

    def bound(self, prev: Bound) -> tuple[Bound, int]:
        code = self.varint()
        header = self.take(1)[0]
        mode, plen = header >> 6, header & 0x3F
        if code == 0:
            if plen:
                raise ReconcileError("infinite bound with an id prefix")
            bound = _INF
        else:
            if plen > ID_SIZE:
                raise ReconcileError("id prefix longer than an id")
            ts = prev[0] + code - 1
            if ts > MAX_TIMESTAMP:
                raise ReconcileError("bound timestamp out of range")
            bound = (ts, self.take(plen))
        if bound <= prev:
            raise ReconcileError("bounds not strictly increasing")
        return bound, mode


class _Writer:
    __slots__ = ("active", "buf", "limit", "pending", "prev_ts")

    def __init__(self, limit: int) -> None:
        self.buf = bytearray((VERSION,))
        self.prev_ts = 0
        self.pending: Bound | None = None  # upper bound of skipped ranges not yet written
        self.limit = limit
        self.active = False  # has a non-skip range been written?

    def skip(self, bound: Bound) -> None:
        self.pending = bound

    def _encode(self, out: bytearray, bound: Bound, mode: int, ts: int) -> int:
        if bound[0] == _INF_TS:
            out += b"\x00"
            out.append(mode << 6)
            return ts
        out += _varint(bound[0] - ts + 1)
        out.append(mode << 6 | len(bound[1]))
        out += bound[1]
        return bound[0]

    def add(self, bound: Bound, mode: int, payload: bytes, force: bool = False) -> bool:
        """Append one range unless it would overflow the frame; returns whether it was."""
        tmp = bytearray()
        ts = self.prev_ts
        if self.pending is not None:
            ts = self._encode(tmp, self.pending, _SKIP, ts)
        ts = self._encode(tmp, bound, mode, ts)
        tmp += payload
        if not force and self.active and len(self.buf) + len(tmp) + _RESERVE > self.limit:
            return False
        self.buf += tmp
        self.prev_ts = ts
        self.pending = None
        self.active = True
        return True

    def finish(self) -> bytes:
        if self.pending is not None:
            self._encode(self.buf, self.pending, _SKIP, self.prev_ts)
        return bytes(self.buf)


class Reconciler:
    """One side of a reconciliation over a fixed, sorted set of items.

    As initiator: :meth:`initiate`, then feed each reply to :meth:`reconcile` until it returns
    ``None`` as the next message. As responder: :meth:`respond` to each message (stateless).
    """

    def __init__(
        self,
        items: Sequence[tuple[int, bytes]],
        *,
        frame_size_limit: int = 60_000,
        limits: Limits = Limits(),
    ) -> None:
        if frame_size_limit < _MIN_FRAME:
            raise ValueError(f"frame_size_limit must be at least {_MIN_FRAME}")
        copied = list(items)
        prev: tuple[int, bytes] = (-1, b"")
        try:
            for item in copied:
                ts, id_ = item
                if not (
                    prev < item
                    and type(item) is tuple
                    and type(ts) is int
                    and type(id_) is bytes
                    and len(id_) == ID_SIZE
                ):
                    raise ValueError
                prev = item
        except (TypeError, ValueError):
            raise ValueError(
                "items must be (int timestamp, 32-byte id) tuples, strictly sorted"
            ) from None
        if copied and not (copied[0][0] >= 0 and copied[-1][0] <= MAX_TIMESTAMP):
            raise ValueError("timestamps must lie in 0 .. 2**40")
        self._items: list[Item] = copied
        self._frame = frame_size_limit
        self._limits = limits
        self._chunk = max(_IDLIST_THRESHOLD, min(_MAX_CHUNK, (frame_size_limit - 256) // 64))
        self._blocks: list[int] | None = None

    # -- fingerprints ---------------------------------------------------------------------------

    def _sum(self, lo: int, hi: int) -> int:
        return sum(map(_from_le, map(_get_id, self._items[lo:hi])))

    def _fingerprint(self, lo: int, hi: int) -> bytes:
        if hi - lo <= _BLOCK:
            return _fp(self._sum(lo, hi), hi - lo)
        blocks = self._blocks
        if blocks is None:  # prefix sums of every _BLOCK-th item, built once
            sums = accumulate(map(_from_le, map(_get_id, self._items)))
            blocks = self._blocks = [0, *islice(sums, _BLOCK - 1, None, _BLOCK)]
        a, b = lo // _BLOCK, hi // _BLOCK
        total = blocks[b] - blocks[a] + self._sum(b * _BLOCK, hi) - self._sum(a * _BLOCK, lo)
        return _fp(total, hi - lo)

    # -- building answers -----------------------------------------------------------------------

    def _bound_at(self, end: int, hi: int, upper: Bound) -> Bound:
        items = self._items
        return upper if end == hi else _minimal_bound(items[end - 1], items[end])

    def _idlists(self, lo: int, hi: int, upper: Bound, size: int) -> Iterator[Piece]:
        """Our ids in the range as IDLIST ranges of at most ``size`` ids each."""
        for start in range(lo, max(hi, lo + 1), size):
            end = min(start + size, hi)
            ids = b"".join(map(_get_id, self._items[start:end]))
            yield self._bound_at(end, hi, upper), _IDLIST, _varint(end - start) + ids, start

    def _split(self, lo: int, hi: int, upper: Bound) -> Iterator[Piece]:
        """Answer a mismatched range: our ids if few, else fingerprints of equal buckets."""
        n = hi - lo
        if n <= _IDLIST_THRESHOLD:
            yield from self._idlists(lo, hi, upper, _IDLIST_THRESHOLD)
            return
        buckets = min(_BRANCHING, n)
        size, extra = divmod(n, buckets)
        start = lo
        for b in range(buckets):
            end = start + size + (1 if b < extra else 0)
            yield self._bound_at(end, hi, upper), _FINGERPRINT, self._fingerprint(start, end), start
            start = end

    def _iddiff(self, theirs: list[bytes], lo: int, hi: int, upper: Bound) -> Iterator[Piece]:
        """Answer the initiator's IDLIST: what it lacks and a bitmap of what we lack."""
        if hi - lo > self._chunk:  # we hold many it lacks: send all ours, chunked
            yield from self._idlists(lo, hi, upper, self._chunk)
            return
        mine = [item[1] for item in self._items[lo:hi]]
        their_set = set(theirs)
        need = [i for i in mine if i not in their_set]
        mine_set = set(mine)
        bits = bytearray((len(theirs) + 7) // 8)
        for k, id_ in enumerate(theirs):
            if id_ not in mine_set:
                bits[k >> 3] |= 1 << (k & 7)
        yield upper, _IDDIFF, _varint(len(need)) + b"".join(need) + bytes(bits), lo

    # -- the state machine ----------------------------------------------------------------------

    def _process(self, msg: bytes, initiator: bool) -> tuple[_Writer, list[bytes], list[bytes]]:
        limits = self._limits
        if len(msg) > limits.max_message_bytes:
            raise ReconcileError("message too large")
        if not msg or msg[0] != VERSION:
            raise ReconcileError("unknown protocol version")
        reader = _Reader(msg, limits)
        writer = _Writer(self._frame)
        have: list[bytes] = []
        need: list[bytes] = []
        items = self._items
        prev, lo, ranges, full = _BOTTOM, 0, 0, False
        while prev != _INF:
            if not reader.left():
                raise ReconcileError("message does not reach infinity (truncated?)")
            ranges += 1
            if ranges > limits.max_ranges:
                raise ReconcileError("too many ranges in message")
            bound, mode = reader.bound(prev)
            hi = len(items) if bound == _INF else bisect_left(items, bound, lo)
            n = hi - lo
            if mode == _FINGERPRINT:
                theirs = [reader.take(FINGERPRINT_SIZE)]
            elif mode == _IDLIST:
                theirs = reader.ids_list(reader.varint())
            elif mode == _IDDIFF:
                if not initiator:
                    raise ReconcileError("IDDIFF sent to a responder")
                theirs = reader.ids_list(reader.varint())
                bits = reader.take((n + 7) // 8)
                if n % 8 and bits[-1] >> (n % 8):
                    raise ReconcileError("IDDIFF bitmap padding not zero")
            pieces: Iterator[Piece] | None = None
            if full or mode == _SKIP:  # once the frame is full, the rest is only validated
                pass
            elif mode == _FINGERPRINT:
                if theirs[0] != self._fingerprint(lo, hi):
                    pieces = self._split(lo, hi, bound)
            elif mode == _IDDIFF:
                need.extend(theirs)
                have.extend(items[lo + k][1] for k in range(n) if bits[k >> 3] >> (k & 7) & 1)
            elif not initiator:
                pieces = self._iddiff(theirs, lo, hi, bound)
            else:
                mine = [item[1] for item in items[lo:hi]]
                their_set, mine_set = set(theirs), set(mine)
                have.extend(i for i in mine if i not in their_set)
                need.extend(i for i in dict.fromkeys(theirs) if i not in mine_set)
            if full:
                pass
            elif pieces is None:
                writer.skip(bound)
            else:
                for piece_bound, piece_mode, payload, start in pieces:
                    if not writer.add(piece_bound, piece_mode, payload):
                        # Frame full: hand back the rest of the key space as one fingerprint.
                        rest = self._fingerprint(start, len(items))
                        writer.add(_INF, _FINGERPRINT, rest, force=True)
                        full = True
                        break
            prev, lo = bound, hi
        if reader.left():
            raise ReconcileError("trailing bytes after the infinite bound")
        return writer, have, need

    def _guarded(self, msg: bytes, initiator: bool) -> tuple[_Writer, list[bytes], list[bytes]]:
        data = bytes(msg)
        try:
            return self._process(data, initiator)
        except ReconcileError:
            raise
        except (IndexError, ValueError, OverflowError, KeyError) as exc:
            raise ReconcileError(f"malformed message: {exc}") from exc

    def initiate(self) -> bytes:
        """The first message: one fingerprint over the whole key space."""
        writer = _Writer(self._frame)
        writer.add(_INF, _FINGERPRINT, self._fingerprint(0, len(self._items)), force=True)
        return writer.finish()

    def reconcile(self, msg: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """Process the responder's reply. Returns (next_message or None when done, have_ids,
        need_ids): have_ids the initiator has and the responder lacks, need_ids the responder
        has and the initiator lacks (both found in this round)."""
        writer, have, need = self._guarded(msg, True)
        return (writer.finish() if writer.active else None), have, need

    def respond(self, msg: bytes) -> bytes:
        """Answer one initiator message (stateless: all state is in the message)."""
        return self._guarded(msg, False)[0].finish()
