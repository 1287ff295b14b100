"""The /v1/ peer API served by every node (and by the central server, which adds its own routes).

Endpoints (msgpack bodies, see ``docs/api.md``)::

    GET  /v1/info                 who am I: key id, role, scope, fingerprint, central reachable
    POST /v1/hello                {"nonce"} -> {"challenge", "cert", "sig"}: the handshake (.auth)
    POST /v1/auth                 {"challenge", "cert", "sig"} -> {"token", "ttl"}
    POST /v1/reconcile?scope=S    one range-reconciliation message in, the reply out
    POST /v1/objects/get          {"ids"} -> {"objects"}
    POST /v1/objects/put          {"objects"} -> {"results": [{id, status, reason}], "receipts"}
    POST /v1/receipts             {"ids"} -> {"receipts"}: the latest receipt held for each id
    POST /v1/blobs/want           {"blobs": [sha256]} -> {"want": [[sha256, offset]]}
    GET  /v1/blobs/{sha256}       photo bytes, with HTTP Range
    PUT  /v1/blobs/{sha256}       upload from ``X-Estafet-Offset`` (resumable)
    GET  /v1/status               JSON for people and the testbed

Every body read has a size cap and a timeout; every handler has an overall deadline. Malformed
input gets a 4xx with a reason; the server keeps serving.

Who may do what (issue 11, item 2): a caller proves its enrolled key with the handshake of
:mod:`.auth` and sends the token in ``X-Estafet-Auth``. Only a proven peer may push objects or
photos, see which photos are wanted, or enter our peer table (``X-Estafet-Listen`` is read only
with a token; ``X-Estafet-Node`` is never believed). Everyone else gets the public reads (info,
reconcile, objects/get, receipts, blobs), limited per address (429).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, Protocol

from aiohttp import web

from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import CertificateBody
from estafet.protocol.reconcile import ReconcileError, Reconciler

from . import wire
from .accept import Sink, accept_batch
from .auth import HEADER, TOKEN_TTL, AuthError, Budget, Gate, check_client_proof
from .budgets import PeerBudgets
from .errors import BlobMismatch, StoreFull
from .peers import PeerTable
from .receiver import BlobReceiver, ResumeMismatch
from .store import Store, StoreDB, session_scope
from .stream import ReadAhead


class Served(Protocol):
    """What the handlers need of the node serving them (:class:`~.node.Node` is one)."""

    store: Store
    trust: TrustStore
    scope: str
    sink: Sink
    peers: PeerTable
    key: SigningKey
    gate: Gate
    public_budget: Budget
    auth_budget: Budget
    peer_budgets: PeerBudgets
    decoder: Executor

    def now(self) -> int: ...

    def own_certificate(self) -> bytes | None: ...

    async def check_certificate(self, raw: bytes) -> CertificateBody: ...

    def changed(self) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    async def info(self) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...

    async def reconciler(self, scope: str, *, initiator: bool = False) -> Reconciler: ...

    def note_bad_request(self, peer: str, path: str, remote: str | None, reason: str) -> None: ...

    receiver: BlobReceiver


log = logging.getLogger("estafet.api")
NODE: web.AppKey[Served] = web.AppKey("node")
PEER: web.RequestKey[str | None] = web.RequestKey("peer", str)
"""The caller's proven key id (hex), or None (set by :func:`guard`)."""
READ_TIMEOUT = 30.0
CHUNK_TIMEOUT = 20.0
HANDLER_DEADLINE = 300.0
INLINE_DECODE = 64 * 1024
"""Bodies up to this size are decoded on the event loop (cheaper than a thread hop)."""
ID_BODY = wire.MAX_IDS * 40 + 64
"""Body cap of the endpoints that take only a list of ids (objects/get, receipts, blobs/want)."""
RESPONSE_CAP = 4 * 1024 * 1024
"""Bytes of objects one ``objects/get`` answer carries at most."""


def _msgpack(value: object, status: int = 200) -> web.Response:
    return web.Response(body=wire.pack(value), status=status, content_type=wire.MSGPACK)


def _error(status: int, reason: str) -> web.Response:
    return _msgpack({"error": reason}, status)


async def _body(request: web.Request, limit: int = wire.MAX_BODY) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            data = await wire.read_capped(request.content, limit)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="body not received in time") from exc
    if len(data) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    return data


async def _unpack(node: Served, data: bytes, required: dict[str, type]) -> dict[str, Any]:
    """:func:`wire.unpack`, off the event loop for a body above ``INLINE_DECODE`` bytes (on the
    node's small decoder pool): a hostile 4 MiB body must not stall every other request."""
    if len(data) <= INLINE_DECODE:
        return wire.unpack(data, required)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(node.decoder, wire.unpack, data, required)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Translate bad input to 4xx, put a deadline on every handler, never leak a traceback."""
    node = request.app[NODE]
    request[PEER] = node.gate.bearer(request.remote, request.headers.get(HEADER, ""))
    if request[PEER] is None and not node.public_budget.spend(request.remote or ""):
        return _error(429, "too many requests from this address: authenticate (POST /v1/hello)")
    try:
        async with asyncio.timeout(HANDLER_DEADLINE):
            return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        _bad(node, request, f"body too large: {exc.text}")
        raise
    except web.HTTPUnauthorized:
        _bad(node, request, "not authenticated")
        raise
    except web.HTTPException:
        raise
    except (wire.WireError, ProtocolError, ReconcileError) as exc:
        _bad(node, request, str(exc))
        return _error(400, str(exc))
    except TimeoutError:
        return _error(408, "request took too long")
    except StoreFull as exc:
        return _error(507, str(exc))
    except (sqlite3.DatabaseError, OSError) as exc:
        # a full disk or a damaged store: one line and 507, never a traceback and 500
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        line = f"store unusable ({type(exc).__name__}: {exc}): disk full or damaged"
        log.error("%s %s: %s", request.method, request.path, line)
        return _error(507, line)


def _peer_label(request: web.Request) -> str:
    """The caller's proven key id (hex), else its address: never a header it chose."""
    return request.get(PEER) or f"addr:{request.remote}"


def _proven(request: web.Request) -> str:
    """The caller's proven key id; 401 for a caller without a valid token."""
    peer: str | None = request.get(PEER)
    if peer is None:
        raise web.HTTPUnauthorized(text="authenticate first: POST /v1/hello, then /v1/auth")
    return peer


def _bad(node: Served, request: web.Request, reason: str) -> None:
    node.note_bad_request(_peer_label(request), request.path, request.remote, reason)


def _contact(node: Served, request: web.Request) -> None:
    """Remember a proven peer that called (its listening port from ``X-Estafet-Listen``)."""
    if (peer := request.get(PEER)) is None:
        return
    h = request.headers
    node.peers.contact(peer, h.get("X-Estafet-Listen", ""), request.remote,
                       h.get("X-Estafet-Central-OK") == "1")  # fmt: skip


async def hello(request: web.Request) -> web.Response:
    """Handshake, step 1: a challenge bound to the caller's address, and our proof of key."""
    node = request.app[NODE]
    body = wire.unpack(await _body(request, 4096), {"nonce": bytes})
    if len(body["nonce"]) != 16:
        raise wire.WireError("nonce must be 16 bytes")
    cert = node.own_certificate()
    if cert is None:
        raise web.HTTPNotFound(text="this node has no certificate to authenticate with")
    ch, sig = node.gate.challenge(request.remote or "", body["nonce"])
    return _msgpack({"challenge": ch, "cert": cert, "sig": sig})


async def auth(request: web.Request) -> web.Response:
    """Handshake, step 2: the caller's certificate and signature over our challenge -> token.
    Each costs a chain and a signature check: limited per address."""
    node = request.app[NODE]
    remote = request.remote or ""
    if not node.auth_budget.spend(remote):
        return _error(429, "too many handshakes from this address")
    need: dict[str, type] = {"challenge": bytes, "cert": bytes, "sig": bytes}
    body = wire.unpack(await _body(request, 64 * 1024), need)
    try:
        node.gate.check_challenge(remote, body["challenge"])
        cert = await node.check_certificate(body["cert"])
        check_client_proof(cert, body["challenge"], node.key.id, body["sig"])
    except AuthError as exc:
        _bad(node, request, f"handshake refused: {exc}")
        return _error(403, str(exc))
    kid = key_id(cert.subject)
    if kid == node.key.id:
        return _error(403, "that is our own key")
    request[PEER] = kid.hex()
    _contact(node, request)
    return _msgpack({"token": node.gate.token(remote, kid), "ttl": TOKEN_TTL})


async def info(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return _msgpack(await node.info())


async def reconcile(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = session_scope(request.query.get("scope", ""), node.scope) or "~"
    msg = await _body(request, 512 * 1024)
    rec = await node.reconciler(scope)
    reply = await asyncio.get_running_loop().run_in_executor(None, rec.respond, msg)
    _contact(node, request)
    return web.Response(body=reply, content_type="application/octet-stream")


async def objects_get(request: web.Request) -> web.Response:
    """The objects asked for, each once, at most ``RESPONSE_CAP`` bytes of them (the caller
    asks again for the rest): 1,024 copies of one id once answered 14 MiB."""
    node = request.app[NODE]
    body = await _unpack(node, await _body(request, ID_BODY), {"ids": list})
    ids = list(dict.fromkeys(wire.id_list(body["ids"])))
    raws = await node.store.read(StoreDB.get_raw, ids)
    out: list[bytes] = []
    size = 0
    for raw in raws:
        if out and size + len(raw) > RESPONSE_CAP:
            break
        out.append(raw)
        size += len(raw)
    return _msgpack({"objects": out})


async def objects_put(request: web.Request) -> web.Response:
    """Verify and store a batch. The caller's byte and signature-check budgets
    (:mod:`.budgets`) are spent here: 429 with ``Retry-After`` once either is spent; what was
    stored before that stays stored, the rest of the batch is answered ``deferred``. One push
    per peer at a time: a flood from many connections queues behind itself, not before others."""
    node = request.app[NODE]
    peer = _proven(request)
    async with node.peer_budgets.turn(peer):  # one push per peer at a time
        return await _put(node, request, peer)


async def _put(node: Served, request: web.Request, peer: str) -> web.Response:
    budgets = node.peer_budgets
    if budgets.exhausted(peer) or not budgets.spend_bytes(peer, request.content_length or 0):
        return _over_budget(node, request, peer, "upload or signature-check budget spent")
    data = await _body(request)
    if request.content_length is None and not budgets.spend_bytes(peer, len(data)):
        return _over_budget(node, request, peer, "upload budget spent")
    body = await _unpack(node, data, {"objects": list})
    raws = wire.bin_list(body["objects"])
    outcomes = await node.store.write(
        accept_batch,
        node.trust,
        raws,
        peer=peer,
        origin="relayed",
        scope=node.scope,
        now=node.now(),
        sink=node.sink,
        spend=budgets.check_spender(peer),
    )
    _contact(node, request)
    node.changed()
    results = [{"id": o.id, "status": o.status, "reason": o.reason[:300]} for o in outcomes]
    receipts = [o.receipt for o in outcomes if o.receipt is not None]
    answer = {"results": results, "receipts": receipts}
    if any(o.status == "deferred" for o in outcomes):
        return _over_budget(node, request, peer, "signature-check budget spent", answer)
    return _msgpack(answer)


def _over_budget(
    node: Served, request: web.Request, peer: str, why: str, answer: dict[str, Any] | None = None
) -> web.Response:
    """429 with ``Retry-After`` (and what the request did get done, if anything)."""
    node.peer_budgets.refused += 1
    _bad(node, request, why)
    wait = node.peer_budgets.retry_after(peer)
    resp = _msgpack({"error": f"{why}: again in {wait} s", **(answer or {})}, 429)
    resp.headers["Retry-After"] = str(wait)
    return resp


async def receipts(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = await _unpack(node, await _body(request, ID_BODY), {"ids": list})
    ids = list(dict.fromkeys(wire.id_list(body["ids"])))

    def fetch(sdb: StoreDB) -> list[bytes]:
        return [r for i in ids if (r := sdb.receipt_raw(i)) is not None]

    return _msgpack({"receipts": await node.store.read(fetch)})


async def blobs_want(request: web.Request) -> web.Response:
    node = request.app[NODE]
    owner = _proven(request)
    body = await _unpack(node, await _body(request, ID_BODY), {"blobs": list})
    shas = list(dict.fromkeys(wire.id_list(body["blobs"])))

    def want(sdb: StoreDB) -> list[list[object]]:
        out: list[list[object]] = []
        for sha in shas:
            ref = sdb.photo(sha, node.sink.wants_every_photo)
            if ref is None or not ref[1] or sdb.has_blob(sha):
                continue
            out.append([sha, sdb.blobs.partial_size(sha, owner)])  # this uploader's own
        return out

    return _msgpack({"want": await node.store.read(want)})


def _sha(request: web.Request) -> bytes:
    try:
        sha = bytes.fromhex(request.match_info["sha"])
    except ValueError:
        sha = b""
    if len(sha) != 32:
        raise web.HTTPBadRequest(text="a blob name is 64 hex digits")
    return sha


async def blob_get(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    sha = _sha(request)
    if not await node.store.read(StoreDB.has_blob, sha):
        raise web.HTTPNotFound(text="blob not held here")
    path = node.store.blobs.path(sha)
    if not path.exists():
        raise web.HTTPNotFound(text="blob not held here")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def blob_put(request: web.Request) -> web.Response:
    node = request.app[NODE]
    _proven(request)
    sha = _sha(request)
    try:
        offset = int(request.headers.get("X-Estafet-Offset", "0"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text="X-Estafet-Offset must be a number") from exc
    if offset < 0:
        raise web.HTTPBadRequest(text="X-Estafet-Offset must not be negative")
    # aiohttp cancels the handler of a client that went away; the upload runs in a task of the
    # node's instead, so the bytes that did arrive are written and the next attempt resumes
    # after them (see .stream)
    body = node.receiver.read_ahead(request.content, request.content_length)  # first: see .stream
    task = node.spawn(_upload(request, sha, offset, body), "blob-upload")
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Task[web.Response]) -> None:
    if not task.cancelled():
        task.exception()  # the handler may be gone: the error was logged by whoever raised it


async def _upload(request: web.Request, sha: bytes, offset: int, body: ReadAhead) -> web.Response:
    try:
        return await _receive_upload(request, sha, offset, body)
    finally:
        await body.close()


async def _receive_upload(
    request: web.Request, sha: bytes, offset: int, body: ReadAhead
) -> web.Response:
    node = request.app[NODE]
    async with asyncio.timeout(HANDLER_DEADLINE):
        ref, held = await node.store.read(_photo_held, sha, node.sink.wants_every_photo)
        if ref is None:
            raise web.HTTPForbidden(text="no result held here names this blob")
        total, wanted = ref
        if not wanted or held:
            return _msgpack({"have": total, "complete": True})
        if request.content_length is not None and offset + request.content_length > total:
            raise web.HTTPRequestEntityTooLarge(max_size=total, actual_size=offset)
        peer = _proven(request)  # at most the rest of the photo is read: charged up front
        if not node.peer_budgets.spend_bytes(peer, request.content_length or total - offset):
            return _over_budget(node, request, peer, "upload budget spent")
        await node.store.write(lambda sdb: sdb.make_room(total - offset))
        try:
            have = await node.receiver.receive(sha, total, offset, body,
                                               _peer_label(request), peer)  # fmt: skip
        except ResumeMismatch as exc:  # stale earlier bytes: again from zero, nobody blamed
            raise web.HTTPConflict(text="resume from 0") from exc
        except BlobMismatch as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc)) from exc
    return _msgpack({"have": have, "complete": have == total})


def _photo_held(sdb: StoreDB, sha: bytes, central: bool) -> tuple[tuple[int, bool] | None, bool]:
    return sdb.photo(sha, central), sdb.has_blob(sha)  # one reader trip, not two


async def status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response(await node.status())


def make_app(node: Served) -> web.Application:
    app = web.Application(client_max_size=wire.MAX_BODY, middlewares=[guard])
    app[NODE] = node
    app.router.add_get("/v1/info", info)
    app.router.add_post("/v1/hello", hello)
    app.router.add_post("/v1/auth", auth)
    app.router.add_post("/v1/reconcile", reconcile)
    app.router.add_post("/v1/objects/get", objects_get)
    app.router.add_post("/v1/objects/put", objects_put)
    app.router.add_post("/v1/receipts", receipts)
    app.router.add_post("/v1/blobs/want", blobs_want)
    app.router.add_get("/v1/blobs/{sha}", blob_get)
    app.router.add_put("/v1/blobs/{sha}", blob_put)
    app.router.add_get("/v1/status", status)
    return app
