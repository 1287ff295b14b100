"""Canonical msgpack: the only module in Estafet that knows msgpack.

Canonical form: maps have ``str`` keys, sorted by their UTF-8 bytes, never duplicated; integers
use msgpack's shortest encoding; strings are UTF-8 ``str``, byte strings are ``bin``; no floats,
no ext types. :func:`decode` enforces explicit size limits and rejects any input that is not
exactly the canonical encoding of what it decodes to, so one value has exactly one byte string
and signatures are always checked over the bytes received. Every malformed input raises
:class:`~estafet.protocol.errors.DecodeError`, whatever msgpack itself raised.

Before msgpack builds anything, :func:`scan` walks the bytes' headers and counts every element
(each scalar, array and map, map keys included) and the nesting depth; input over
``Limits.max_elements`` or ``Limits.max_depth`` raises :class:`BudgetError`. The scan stops at
the first element over budget and skips strings and byte strings by their length, so refusing
4 MiB of nested empty arrays costs a few milliseconds and no memory (issue 11, item 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BudgetError, DecodeError

__all__ = [
    "OBJECT_LIMITS",
    "MANIFEST_LIMITS",
    "BudgetError",
    "DecodeError",
    "Limits",
    "decode",
    "decode_to_reencode",
    "encode",
    "scan",
]

Value = Any  # None | bool | int | str | bytes | list[Value] | dict[str, Value]

_MAX_INT = 2**64 - 1
_MIN_INT = -(2**63)


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied while decoding untrusted bytes."""

    max_bytes: int = 64 * 1024
    max_str: int = 4096
    max_bin: int = 64 * 1024
    max_array: int = 1024
    max_map: int = 64
    max_elements: int = 16_384
    """Every scalar, array and map counts one (map keys too)."""
    max_depth: int = 32


OBJECT_LIMITS = Limits()
"""Results, receipts, endorsements, certificates, revocations and API messages."""

MANIFEST_LIMITS = Limits(
    max_bytes=32 * 1024 * 1024,
    max_str=4096,
    max_bin=32 * 1024 * 1024,
    max_array=2_000_000,
    max_elements=8_000_000,
    max_depth=6,
)
"""Manifests list every TPS of a region, so they may be large."""


# Header byte -> (fixed size after the header byte, width of a length field, children per count).
# Lengths of str/bin follow the header; arrays have ``count`` children, maps ``2 * count``.
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _over(what: str, elements: int, depth: int) -> BudgetError:
    return BudgetError(f"decoding budget exceeded: {what}", elements=elements, depth=depth)


def scan(data: bytes, limits: Limits = OBJECT_LIMITS) -> int:
    """Count the elements of ``data`` without building them; return the count.

    Raises :class:`BudgetError` as soon as the count passes ``limits.max_elements`` or the
    nesting passes ``limits.max_depth``, and :class:`DecodeError` for a header that promises
    more than the input holds. Malformed details (floats, ext, bad UTF-8) are left to
    :func:`decode`, which runs only after a successful scan."""
    n, pos, elements = len(data), 0, 0
    max_el, max_depth = limits.max_elements, limits.max_depth
    outer: list[int] = []  # children still expected at each enclosing level
    left = 1  # ... and at the current one (the root is one element)
    while True:
        if left == 0:
            if not outer:
                break
            left = outer.pop()
            continue
        left -= 1
        if pos >= n:
            raise DecodeError("truncated message")
        elements += 1
        if elements > max_el:
            raise _over(f"more than {max_el} elements", elements, len(outer) + 1)
        b = data[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0:
            continue
        if b <= 0x8F:
            children = (b & 0x0F) * 2
        elif b <= 0x9F:
            children = b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
            continue
        elif b in _FIXED:
            pos += _FIXED[b]
            continue
        elif b in _SIZED:
            w = _SIZED[b]
            pos += w + int.from_bytes(data[pos : pos + w], "big")
            continue
        elif b in _CONTAINERS:
            w, per = _CONTAINERS[b]
            children = int.from_bytes(data[pos : pos + w], "big") * per
            pos += w
        else:
            continue  # float, ext, 0xc1: sized by msgpack and refused by decode()
        if children:
            if children > n - pos:
                raise DecodeError(f"container of {children} elements in {n - pos} bytes")
            if len(outer) >= max_depth:
                raise _over(f"nested deeper than {max_depth}", elements, len(outer) + 1)
            outer.append(left)
            left = children
    return elements


def _canonical(value: Value, depth: int = 0) -> Value:
    # exact types first (the common case, and ``bool`` is not taken for ``int``), then subclasses
    t = type(value)
    if t is dict:
        if depth >= 32 and value:  # its values would lie deeper than 32
            raise DecodeError("value nested too deeply")
        for key in value:
            if type(key) is not str and not isinstance(key, str):
                raise DecodeError(f"map key must be str, not {type(key).__name__}")
        # code point order is UTF-8 byte order, so plain str sorting is the canonical order
        return {k: _canonical(value[k], depth + 1) for k in sorted(value)}
    if t is list or t is tuple:
        if depth >= 32 and value:
            raise DecodeError("value nested too deeply")
        return [_canonical(v, depth + 1) for v in value]
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not _MIN_INT <= value <= _MAX_INT:
            raise DecodeError(f"integer out of range: {value}")
        return value
    return _canonical_other(value, depth)


def _canonical_other(value: Value, depth: int) -> Value:
    """Subclasses of the allowed types (an ``IntEnum``, a ``str`` subclass), else refusal."""
    if isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise DecodeError(f"integer out of range: {value}")
        return int(value)
    if isinstance(value, list | tuple | dict):
        return _canonical(list(value) if not isinstance(value, dict) else dict(value), depth)
    raise DecodeError(f"type not allowed in canonical encoding: {type(value).__name__}")


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises DecodeError for values with no canonical form."""
    try:
        out: bytes = msgpack.packb(_canonical(value), use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - guarded above
        raise DecodeError(f"cannot encode: {exc}") from exc
    return out


def _pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Build a map, refusing non-str keys, duplicates and keys out of canonical order (so the
    decoded map re-encodes in the order it arrived in)."""
    out: dict[str, Any] = {}
    prev: str | None = None
    for key, val in pairs:
        if type(key) is not str:
            raise DecodeError("map key must be a string")
        if prev is not None and key <= prev:  # code point order is UTF-8 byte order
            if key == prev:
                raise DecodeError(f"duplicate map key {key!r}")
            raise DecodeError(f"not canonical: map key {key!r} out of order")
        out[key] = val
        prev = key
    return out


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"ext type {code} not allowed")


# Bytes that may open a container (fixmap, fixarray, array/map 16/32) or a float: at most this
# many of them in the input bounds its nesting depth, whatever the bytes mean.
_NOT_CONTAINER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))
_FLOATS = (b"\xca", b"\xcb")


def _within_budget(data: bytes, limits: Limits) -> None:
    """The budget check of :func:`scan`, skipped when the input is too small to break it: every
    element takes at least one byte, and every level of nesting one container header byte."""
    if len(data) <= limits.max_elements and (
        len(data.translate(None, _NOT_CONTAINER)) <= limits.max_depth
    ):
        return
    scan(data, limits)


def _unpack(data: bytes, limits: Limits) -> Value:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise DecodeError("empty message")
    _within_budget(data, limits)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,  # our hook checks keys and gives a clearer error
            object_pairs_hook=_pairs_hook,
            ext_hook=_no_ext,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
            timestamp=0,
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, float):
        raise DecodeError("floats are not allowed")
    return value


def decode(data: bytes, limits: Limits = OBJECT_LIMITS) -> Value:
    """Decode untrusted ``data`` within ``limits``; it must be canonical."""
    value = _unpack(data, limits)
    data = bytes(data)
    # Keys are checked str, unique and sorted while decoding, so msgpack re-encoding the value
    # as decoded gives the canonical bytes, except that it keeps a float64: only input holding
    # a float header byte can hold one, and packing floats as float32 then gives other bytes.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("not canonical: keys unsorted, integers not shortest, or str/bin mixed")
    if (_FLOATS[0] in data or _FLOATS[1] in data) and msgpack.packb(
        value, use_bin_type=True, use_single_float=True
    ) != data:
        raise DecodeError("floats are not allowed")
    return value


def decode_to_reencode(data: bytes, limits: Limits = OBJECT_LIMITS) -> Value:
    """:func:`decode` without its canonical check, for a caller that parses the value and then
    compares ``data`` with the canonical encoding of what it parsed (which is stricter, and
    refuses floats: :func:`encode` has no float). Limits, the element and depth budget, str map
    keys without duplicates, and the ban on ext types hold as in :func:`decode`."""
    return _unpack(data, limits)
