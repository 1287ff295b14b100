"""Canonical msgpack: the only module in Estafet that knows msgpack.

Canonical form: maps have ``str`` keys, sorted by their UTF-8 bytes, never duplicated; integers
use msgpack's shortest encoding; strings are UTF-8 ``str``, byte strings are ``bin``; no floats,
no ext types. :func:`decode` enforces explicit size limits and rejects any input that is not
exactly the canonical encoding of what it decodes to, so one value has exactly one byte string
and signatures are always checked over the bytes received. Every malformed input raises
:class:`~estafet.protocol.errors.DecodeError`, whatever msgpack itself raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import DecodeError

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


OBJECT_LIMITS = Limits()
"""Results, receipts, endorsements, certificates, revocations and API messages."""

MANIFEST_LIMITS = Limits(
    max_bytes=32 * 1024 * 1024, max_str=4096, max_bin=32 * 1024 * 1024, max_array=2_000_000
)
"""Manifests list every TPS of a region, so they may be large."""


def _canonical(value: Value, depth: int = 0) -> Value:
    if depth > 32:
        raise DecodeError("value nested too deeply")
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise DecodeError(f"integer out of range: {value}")
        return value
    if isinstance(value, list | tuple):
        return [_canonical(v, depth + 1) for v in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise DecodeError(f"map key must be str, not {type(key).__name__}")
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        return {k: _canonical(value[k], depth + 1) for k in keys}
    raise DecodeError(f"type not allowed in canonical encoding: {type(value).__name__}")


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises DecodeError for values with no canonical form."""
    try:
        out: bytes = msgpack.packb(_canonical(value), use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - guarded above
        raise DecodeError(f"cannot encode: {exc}") from exc
    return out


def _pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if not isinstance(key, str):
            raise DecodeError("map key must be a string")
        if key in out:
            raise DecodeError(f"duplicate map key {key!r}")
        out[key] = val
    return out


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"ext type {code} not allowed")


def decode(data: bytes, limits: Limits = OBJECT_LIMITS) -> Value:
    """Decode untrusted ``data`` within ``limits``; it must be canonical."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise DecodeError("empty message")
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
    try:
        again = encode(value)
    except DecodeError as exc:
        raise DecodeError(f"not canonical: {exc}") from exc
    if again != data:
        raise DecodeError("not canonical: keys unsorted, integers not shortest, or str/bin mixed")
    return value
