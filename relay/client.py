"""The client side of the /v1/ peer API: what a sync session asks of a peer, and over HTTP.

:class:`PeerClient` is the whole interface a :class:`~.sync.SyncSession` uses, so a session can
be run against a fake peer with no sockets (as ``tests/relay/test_session.py`` does).
:class:`HttpPeerClient` is the real one: every call has a timeout and a size cap; an answer that
is not what the API promises raises :class:`PeerError` (the peer misbehaved), a transport
failure raises ``aiohttp.ClientError``, ``OSError`` or ``TimeoutError`` (it is unreachable).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp

from . import wire
from .errors import PeerError, RelayError

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5, sock_read=20)
# One photo request may take this long; what arrived is kept and the next session resumes, so a
# peer trickling bytes (or a very slow link) cannot hold the scheduler for more than this.
BLOB_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=5, sock_read=20)
MAX_RECONCILE = 512 * 1024
MAX_INFO = 64 * 1024


class PeerFull(RelayError):
    """The peer refused a photo: its store is full (HTTP 507). The session stops offering."""


class PeerClient(Protocol):
    """One peer, as a sync session sees it."""

    async def info(self) -> dict[str, Any]:
        """``/v1/info``: at least ``key`` (bytes), ``role`` and ``scope``."""
        ...

    async def reconcile(self, scope: str, message: bytes) -> bytes:
        """One reconciliation message in, the peer's reply out."""
        ...

    async def get_objects(self, ids: list[bytes]) -> list[bytes]: ...

    async def put_objects(self, raws: list[bytes]) -> dict[str, Any]:
        """``{"results": [{id, status, reason}], "receipts": [raw]}``."""
        ...

    async def want_blobs(self, shas: list[bytes]) -> list[Any]:
        """``[[sha256, offset held]]`` for the blobs the peer wants (unchecked: the caller
        checks every item)."""
        ...

    def get_blob(
        self, sha: bytes, offset: int
    ) -> contextlib.AbstractAsyncContextManager[tuple[int, wire.Readable] | None]:
        """The blob from ``offset``: (the offset the bytes start at, the stream), or None when
        the peer does not hold it."""
        ...

    async def put_blob(
        self, sha: bytes, offset: int, size: int, chunks: AsyncIterator[bytes]
    ) -> bool:
        """Upload ``chunks`` (the blob from ``offset``, ``size`` bytes in all). True when the
        peer holds it complete. Raises :class:`PeerFull` when the peer has no room."""
        ...


class HttpPeerClient:
    """:class:`PeerClient` over an aiohttp session (shared, owned by the node)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        label: str,
        headers: Callable[[], dict[str, str]],
    ) -> None:
        self.http = http
        self.url = url
        self.label = label
        self._headers = headers

    async def info(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/v1/info", timeout=REQUEST_TIMEOUT) as resp:
            data = await wire.read_capped(resp.content, MAX_INFO)
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        out: dict[str, Any] = wire.unpack(data, {"key": bytes, "role": str, "scope": str})
        return out

    async def reconcile(self, scope: str, message: bytes) -> bytes:
        async with self.http.post(
            self.url + "/v1/reconcile",
            params={"scope": scope},
            data=message,
            headers=self._headers(),
            timeout=REQUEST_TIMEOUT,
        ) as resp:
            reply = await wire.read_capped(resp.content, MAX_RECONCILE)
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        if len(reply) > MAX_RECONCILE:
            raise PeerError(self.label, f"reconcile reply larger than {MAX_RECONCILE}")
        return reply

    async def get_objects(self, ids: list[bytes]) -> list[bytes]:
        body = await self._post("/v1/objects/get", {"ids": ids}, {"objects": list})
        return wire.bin_list(body["objects"], wire.MAX_IDS)

    async def put_objects(self, raws: list[bytes]) -> dict[str, Any]:
        body: dict[str, Any] = await self._post(
            "/v1/objects/put", {"objects": raws}, {"results": list}
        )
        body["receipts"] = wire.bin_list(body.get("receipts", []))
        return body

    async def want_blobs(self, shas: list[bytes]) -> list[Any]:
        body = await self._post("/v1/blobs/want", {"blobs": shas}, {"want": list})
        want: list[Any] = body["want"]
        return want

    @contextlib.asynccontextmanager
    async def get_blob(
        self, sha: bytes, offset: int
    ) -> AsyncIterator[tuple[int, wire.Readable] | None]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.http.get(
            f"{self.url}/v1/blobs/{sha.hex()}", headers=headers, timeout=BLOB_TIMEOUT
        ) as resp:
            if resp.status == 404:
                yield None
                return
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            yield (0 if resp.status == 200 else offset), resp.content

    async def put_blob(
        self, sha: bytes, offset: int, size: int, chunks: AsyncIterator[bytes]
    ) -> bool:
        async with self.http.put(
            f"{self.url}/v1/blobs/{sha.hex()}",
            data=chunks,
            headers={
                **self._headers(),
                "X-Estafet-Offset": str(offset),
                "Content-Length": str(size - offset),
            },
            timeout=BLOB_TIMEOUT,
        ) as resp:
            data = await wire.read_capped(resp.content, MAX_INFO)
            if resp.status == 507:
                raise PeerFull(self.label)
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        return wire.unpack(data, {}).get("complete") is True

    async def _post(self, path: str, body: dict[str, Any], required: dict[str, type]) -> Any:
        async with self.http.post(
            self.url + path,
            data=wire.pack(body),
            headers=self._headers(),
            timeout=REQUEST_TIMEOUT,
        ) as resp:
            data = await wire.read_capped(resp.content, wire.MAX_BODY)
            if len(data) > wire.MAX_BODY:
                raise PeerError(self.label, f"{path}: response larger than {wire.MAX_BODY}")
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info,
                    (),
                    status=resp.status,
                    message=data[:200].decode(errors="replace"),
                )
            return wire.unpack(data, required)
