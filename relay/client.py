"""The client side of the /v1/ peer API: what a sync session asks of a peer, and over HTTP.

:class:`PeerClient` is the whole interface a :class:`~.sync.SyncSession` uses, so a session can
be run against a fake peer with no sockets (as ``tests/relay/test_session.py`` does).
:class:`HttpPeerClient` is the real one: every call has a timeout and a size cap; an answer that
is not what the API promises raises :class:`PeerError` (the peer misbehaved), a transport
failure raises ``aiohttp.ClientError``, ``OSError`` or ``TimeoutError`` (it is unreachable).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp

from estafet.crypto.keys import SigningKey, key_id
from estafet.protocol.objects import CertificateBody

from . import wire
from .auth import HEADER, AuthError, Proven, check_server_proof, client_proof
from .errors import PeerError, RelayError

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5, sock_read=20)
# One photo request may take this long; what arrived is kept and the next session resumes, so a
# peer trickling bytes (or a very slow link) cannot hold the scheduler for more than this.
BLOB_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=5, sock_read=20)
HANDSHAKE_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5, sock_read=5)
"""A handshake is two small answers: a peer that accepts and never answers (a black hole) holds a
session slot for seconds, not for a whole request timeout."""
MAX_RECONCILE = 512 * 1024
MAX_INFO = 64 * 1024


class PeerFull(RelayError):
    """The peer refused a photo: its store is full (HTTP 507). The session stops offering."""


class Credentials(Protocol):
    """What the handshake needs of our node (:class:`~.node.Node` is one)."""

    key: SigningKey

    def own_certificate(self) -> bytes | None: ...

    async def check_certificate(self, raw: bytes) -> CertificateBody:
        """The certificate, checked against our pinned root and revocations (AuthError)."""
        ...


class PeerClient(Protocol):
    """One peer, as a sync session sees it."""

    token: str
    """Our session token at the peer ('' until :meth:`authenticate`)."""

    async def authenticate(self) -> tuple[Proven, str, float] | None:
        """The handshake of :mod:`.auth`: the peer's proven key, our token and its lifetime in
        seconds; None when either side has no certificate (public reads only)."""
        ...

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
        credentials: Credentials | None = None,
        token: str = "",
    ) -> None:
        self.http = http
        self.url = url
        self.label = label
        self._session_headers = headers
        self.credentials = credentials
        self.token = token

    def _headers(self) -> dict[str, str]:
        out = self._session_headers()
        if self.token:
            out[HEADER] = self.token
        return out

    async def authenticate(self) -> tuple[Proven, str, float] | None:
        creds = self.credentials
        own = creds.own_certificate() if creds is not None else None
        if creds is None or own is None:
            return None
        nonce = os.urandom(16)
        status, data = await self._raw_post(
            "/v1/hello", {"nonce": nonce}, also=(404, 405), timeout=HANDSHAKE_TIMEOUT
        )
        if status != 200:
            return None  # a peer without a certificate (or an older one): public reads only
        hello = wire.unpack(data, {"challenge": bytes, "cert": bytes, "sig": bytes})
        try:
            cert = await creds.check_certificate(hello["cert"])
            check_server_proof(cert, hello["challenge"], nonce, hello["sig"])
        except AuthError as exc:
            raise PeerError(self.label, f"handshake: {exc}") from exc
        server = key_id(cert.subject)
        proof = client_proof(creds.key, hello["challenge"], server)
        _, data = await self._raw_post(
            "/v1/auth",
            {"challenge": hello["challenge"], "cert": own, "sig": proof},
            timeout=HANDSHAKE_TIMEOUT,
        )
        got = wire.unpack(data, {"token": bytes, "ttl": int})
        self.token = got["token"].hex()
        proven = Proven(server.hex(), cert.role, cert.scope[0] if cert.scope else "")
        return proven, self.token, float(got["ttl"])

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
        headers = self._headers()  # a proven peer's reads do not spend the public budget
        if offset:
            headers["Range"] = f"bytes={offset}-"
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
        _, data = await self._raw_post(path, body)
        return wire.unpack(data, required)

    async def _raw_post(
        self,
        path: str,
        body: dict[str, Any],
        also: tuple[int, ...] = (),
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> tuple[int, bytes]:
        """POST ``body``; the status and the answer, which is 200 or one of ``also``."""
        async with self.http.post(
            self.url + path,
            data=wire.pack(body),
            headers=self._headers(),
            timeout=timeout or REQUEST_TIMEOUT,
        ) as resp:
            data = await wire.read_capped(resp.content, wire.MAX_BODY)
            if len(data) > wire.MAX_BODY:
                raise PeerError(self.label, f"{path}: response larger than {wire.MAX_BODY}")
            if resp.status != 200 and resp.status not in also:
                raise aiohttp.ClientResponseError(
                    resp.request_info,
                    (),
                    status=resp.status,
                    message=data[:200].decode(errors="replace"),
                )
            return resp.status, data
