"""Field checks shared by the content schemas of every object kind (objects.py, trail.py)."""

from __future__ import annotations

from typing import Any

from .errors import SchemaError

COMMON = ("kind", "v", "signer", "created")


def int_field(m: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SchemaError(f"{key} must be an integer in {lo}..{hi}")
    return v


def str_field(m: dict[str, Any], key: str, max_len: int = 200, allow_empty: bool = False) -> str:
    v = m.get(key)
    if not isinstance(v, str) or len(v) > max_len or (not v and not allow_empty):
        raise SchemaError(f"{key} must be a string of at most {max_len} characters")
    return v


def bin_field(m: dict[str, Any], key: str, size: int, optional: bool = False) -> bytes | None:
    v = m.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, bytes) or len(v) != size:
        raise SchemaError(f"{key} must be {size} bytes")
    return v


def check_keys(m: dict[str, Any], kind: str, fields: tuple[str, ...]) -> None:
    want = set(COMMON) | set(fields)
    if set(m) != want:
        extra = sorted(set(m) - want)
        missing = sorted(want - set(m))
        raise SchemaError(f"{kind}: unknown keys {extra}, missing keys {missing}")


def id_list(m: dict[str, Any], key: str, max_len: int) -> tuple[bytes, ...]:
    """A sorted, duplicate-free list of 32-byte object ids."""
    v = m.get(key)
    if not isinstance(v, list) or len(v) > max_len:
        raise SchemaError(f"{key} must be a list of at most {max_len} object ids")
    if not all(isinstance(x, bytes) and len(x) == 32 for x in v):
        raise SchemaError(f"{key} must hold 32-byte object ids")
    if v != sorted(set(v)):
        raise SchemaError(f"{key} must be sorted without duplicates")
    return tuple(v)
