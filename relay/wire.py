"""Message shapes of the /v1/ peer API, encoded with the protocol's canonical codec.

Every body is decoded with explicit limits; a body that does not fit its shape raises
:class:`WireError`, which the server answers with 400 and the client treats as a misbehaving
peer. See ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any, Protocol

from estafet.protocol import codec
from estafet.protocol.errors import ProtocolError

from .errors import RelayError

MAX_BODY = 8 * 1024 * 1024
MAX_IDS = 1024
MAX_OBJECTS = 512
API_LIMITS = codec.Limits(
    max_bytes=MAX_BODY,
    max_str=4096,
    max_bin=MAX_BODY,
    max_array=MAX_IDS * 2,
    max_map=32,
    max_elements=65_536,
    max_depth=8,
)
MSGPACK = "application/msgpack"


class WireError(RelayError):
    """A body that does not have the shape its endpoint expects."""


class Readable(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_capped(stream: Readable, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is larger (callers refuse it).

    aiohttp's ``StreamReader.read(n)`` returns what has arrived so far (at most ``n`` bytes), not
    ``n`` bytes: a single call truncates any body that spans more than one network read."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await stream.read(limit + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def pack(value: Any) -> bytes:
    return codec.encode(value)


def unpack(data: bytes, required: dict[str, type]) -> dict[str, Any]:
    """Decode a map body and check the types of its required keys."""
    try:
        value = codec.decode(data, API_LIMITS)
    except ProtocolError as exc:
        raise WireError(str(exc)) from exc
    if not isinstance(value, dict):
        raise WireError("body must be a map")
    for key, typ in required.items():
        if not isinstance(value.get(key), typ):
            raise WireError(f"{key!r} must be a {typ.__name__}")
    return value


def id_list(value: Any, limit: int = MAX_IDS) -> list[bytes]:
    if not isinstance(value, list) or len(value) > limit:
        raise WireError(f"expected a list of at most {limit} ids")
    if not all(isinstance(i, bytes) and len(i) == 32 for i in value):
        raise WireError("ids must be 32 bytes each")
    return value


def bin_list(value: Any, limit: int = MAX_OBJECTS) -> list[bytes]:
    if not isinstance(value, list) or len(value) > limit:
        raise WireError(f"expected a list of at most {limit} objects")
    if not all(isinstance(i, bytes) for i in value):
        raise WireError("objects must be byte strings")
    return value
