"""The app's JSON endpoints. Each handler reads a capped body, calls the port, answers JSON.

Errors the officer must read come back as ``{"error": CODE, "detail": ...}`` with a 4xx status;
the page turns CODE into plain words from its message catalog. Nothing here raises a traceback
at a hostile request: bad JSON, bad ids, bad sheet numbers and oversized bodies are refused.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from aiohttp import web

from estafet.protocol.errors import FormError, ProtocolError
from estafet.protocol.photos import MAX_PHOTO_BYTES, sniff_type
from estafet.protocol.trail import MAX_REASON as MAX_OBJECTION_REASON

from . import drafts
from .checks import run_check
from .guard import COOKIE, Guard
from .port import NodePort, PortError
from .qr import qr_svg, result_uri

log = logging.getLogger("estafet.app")
MAX_JSON = 32_000
MAX_TRAIL_JSON = 6_000_000
"""An objection or admission with one photo, base64 in JSON (the app sends ~2,000 px JPEGs)."""


def _fail(status: int, code: str, detail: Any = "") -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


async def read_capped(request: web.Request, cap: int) -> bytes | None:
    """The whole body, or None when it is over ``cap`` bytes (read no further than that).
    ``StreamReader.read(n)`` returns what has arrived so far: loop until the end."""
    if (request.content_length or 0) > cap:
        return None
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(min(cap + 1 - size, 1 << 16)):
        parts.append(chunk)
        size += len(chunk)
        if size > cap:
            return None
    return b"".join(parts)


async def _json_body(request: web.Request, cap: int = MAX_JSON) -> dict[str, Any]:
    raw = await read_capped(request, cap)
    if raw is None:
        raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=cap + 1)
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text='{"error": "bad-json"}') from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "bad-json"}')
    return data


def _hex_id(request: web.Request, name: str = "rid") -> bytes:
    text = request.match_info[name]
    try:
        rid = bytes.fromhex(text)
    except ValueError:
        rid = b""
    if len(rid) != 32:
        raise web.HTTPBadRequest(text='{"error": "bad-id"}')
    return rid


class Api:
    """Handlers over one port and one guard."""

    def __init__(self, port: NodePort, guard: Guard) -> None:
        self.port = port
        self.guard = guard

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/state", self.state)
        r.add_post("/api/unlock", self.unlock)
        r.add_post("/api/lock", self.lock)
        r.add_post("/api/check/{election}", self.check)
        r.add_get("/api/draft/{election}", self.get_draft)
        r.add_put("/api/draft/{election}", self.put_draft)
        r.add_delete("/api/draft/{election}", self.discard_draft)
        r.add_get("/api/draft/{election}/photo/{sheet}", self.get_draft_photo)
        r.add_put("/api/draft/{election}/photo/{sheet}", self.put_draft_photo)
        r.add_post("/api/sign/{election}", self.sign)
        r.add_post("/api/correct/{rid}", self.correct)
        r.add_get("/api/results", self.results)
        r.add_get("/api/photo/{sha}", self.photo)
        r.add_post("/api/endorse/{rid}", self.endorse)
        r.add_get("/api/qr/{rid}", self.qr)
        r.add_get("/api/status", self.status)
        r.add_get("/api/keycode", self.keycode)
        r.add_post("/api/object/{rid}", self.object_to)
        r.add_post("/api/admit", self.admit)

    # --- who, and the lock -----------------------------------------------------------------
    def _election(self, request: web.Request) -> str:
        election = request.match_info["election"]
        manifest = self.port.manifest()
        ident = self.port.identity()
        if manifest is None or manifest.election(election) is None:
            raise web.HTTPNotFound(text='{"error": "election-unknown"}')
        if election not in ident["elections"]:
            raise web.HTTPForbidden(text='{"error": "out-of-scope"}')
        return election

    def _tps(self) -> str:
        scope = self.port.identity()["scope"]
        return str(scope[0]) if scope else ""

    async def state(self, request: web.Request) -> web.Response:
        manifest = self.port.manifest()
        ident = self.port.identity()
        elections = []
        if manifest is not None:
            for kind in ident["elections"]:
                el = manifest.election(kind)
                if el is not None:
                    pairs = dict(zip((str(n) for n in el.ballot_numbers), el.pairs, strict=False))
                    elections.append(
                        {"kind": kind, "ballot_numbers": list(el.ballot_numbers), "pairs": pairs}
                    )
        return web.json_response(
            {
                "locked": self.guard.key_for(request) is None,
                "retry_after": round(self.guard.lock.retry_after()),
                "idle": self.guard.lock.idle,
                "identity": ident,
                "tps": self._tps(),
                "elections": elections,
            }
        )

    async def unlock(self, request: web.Request) -> web.Response:
        wait = self.guard.lock.retry_after()
        if wait > 0:
            return _fail(429, "wait", round(wait))
        body = await _json_body(request)
        secret = body.get("secret")
        if not isinstance(secret, str) or len(secret) > 256:
            return _fail(400, "bad-secret")
        try:
            key = await self.port.unlock(secret)
        except PortError:
            self.guard.lock.failed()
            return _fail(403, "wrong-secret", round(self.guard.lock.retry_after()))
        resp = web.json_response({"locked": False})
        resp.set_cookie(COOKIE, self.guard.lock.unlocked(key), httponly=True, samesite="Strict",
                        path="/")  # fmt: skip
        return resp

    async def lock(self, request: web.Request) -> web.Response:
        self.guard.lock.lock()
        return web.json_response({"locked": True})

    # --- drafts and the live check ---------------------------------------------------------
    async def check(self, request: web.Request) -> web.Response:
        election = self._election(request)
        body = await _json_body(request)
        fields = body.get("fields")
        if not isinstance(fields, dict):
            return _fail(400, "bad-json")
        draft = await self.port.read_db(drafts.load, election)
        return web.json_response(await self._check(election, fields, draft))

    async def _check(
        self, election: str, fields: dict[str, Any], draft: dict[str, Any]
    ) -> dict[str, Any]:
        manifest = self.port.manifest()
        assert manifest is not None
        res = await run_check(
            manifest, election, self._tps(), fields, draft, self.port.previous_result
        )
        out = res.to_json()
        out["photos"] = len(draft.get("photos", []))
        return out

    async def get_draft(self, request: web.Request) -> web.Response:
        election = self._election(request)
        return web.json_response(await self.port.read_db(drafts.load, election))

    async def put_draft(self, request: web.Request) -> web.Response:
        election = self._election(request)
        body = await _json_body(request)
        fields = body.get("fields")
        if not isinstance(fields, dict) or len(fields) > 64:
            return _fail(400, "bad-json")
        clean = {str(k)[:32]: str(v)[:8] for k, v in fields.items()}
        draft = await self.port.read_db(drafts.load, election)
        draft["fields"] = clean
        await self.port.write_db(drafts.save, election, draft, self.port.now())
        return web.json_response({"saved": True})

    async def discard_draft(self, request: web.Request) -> web.Response:
        election = self._election(request)
        await self.port.write_db(drafts.discard, election)
        return web.json_response({"discarded": True})

    def _sheet(self, request: web.Request) -> int:
        sheet = request.match_info["sheet"]
        if sheet not in ("1", "2", "3"):
            raise web.HTTPBadRequest(text='{"error": "bad-sheet"}')
        return int(sheet)

    async def get_draft_photo(self, request: web.Request) -> web.Response:
        election, sheet = self._election(request), self._sheet(request)
        data = await self.port.read_db(drafts.photo, election, sheet)
        if data is None:
            return _fail(404, "no-photo")
        return web.Response(body=data, content_type="image/jpeg")

    async def put_draft_photo(self, request: web.Request) -> web.Response:
        election, sheet = self._election(request), self._sheet(request)
        data = await read_capped(request, MAX_PHOTO_BYTES)
        if data is None:
            return _fail(413, "photo-too-big")
        if sniff_type(data[:16]) is None:
            return _fail(400, "photo-type")
        await self.port.write_db(drafts.save_photo, election, sheet, data, self.port.now())
        return web.json_response({"sheet": sheet, "size": len(data)})

    # --- signing ---------------------------------------------------------------------------
    async def sign(self, request: web.Request) -> web.Response:
        election = self._election(request)
        key = self.guard.key_for(request)
        if key is None:
            return _fail(423, "locked")
        draft = await self.port.read_db(drafts.load, election)
        manifest = self.port.manifest()
        assert manifest is not None
        checked = await run_check(
            manifest, election, self._tps(), draft["fields"], draft, self.port.previous_result
        )
        if not checked.signable or checked.form is None:
            return web.json_response({"error": "form", **checked.to_json()}, status=400)
        photos = await self.port.read_db(drafts.photos, election)
        if len(photos) != 3:
            return _fail(400, "photos-missing", len(photos))
        try:
            rid, warnings = await self.port.submit(key, checked.form, photos)
        except FormError as exc:
            return _fail(400, "form", [v.rule for v in exc.violations])
        except (PortError, ProtocolError) as exc:
            log.warning("signing refused: %s", exc)
            return _fail(400, "sign-refused", str(exc))
        await self.port.write_db(drafts.discard, election)
        log.info("result %s signed in the app", rid[:16])
        return web.json_response({"id": rid, "warnings": [w.rule for w in warnings]})

    async def correct(self, request: web.Request) -> web.Response:
        """Start a correction: a new draft with the signed numbers and photos, revision + 1."""
        rid = _hex_id(request)
        body = await _json_body(request)
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            return _fail(400, "reason-needed")
        mine = [r for r in await self.port.results(self._tps()) if r["id"] == rid.hex()]
        if not mine:
            return _fail(404, "no-result")
        old = mine[0]
        if old["election"] not in self.port.identity()["elections"]:
            return _fail(403, "out-of-scope")
        fields = _flatten(old["form"])
        draft = {"fields": fields, "revision": old["form"]["revision"] + 1,
                 "supersedes": old["id"], "reason": reason.strip()}  # fmt: skip
        now = self.port.now()
        await self.port.write_db(drafts.save, old["election"], draft, now)
        for p in old["photos"]:
            data = await self.port.photo(bytes.fromhex(p["sha256"]))
            if data is not None:
                await self.port.write_db(drafts.save_photo, old["election"], p["sheet"], data, now)
        return web.json_response({"election": old["election"], "revision": draft["revision"]})

    # --- results, photos, endorsements -----------------------------------------------------
    async def results(self, request: web.Request) -> web.Response:
        ident = self.port.identity()
        tps = None if ident["role"] in ("relay", "gateway") else self._tps()
        return web.json_response(
            {"results": await self.port.results(tps), "status": await self.port.status()}
        )

    async def photo(self, request: web.Request) -> web.Response:
        sha = _hex_id(request, "sha")
        data = await self.port.photo(sha)
        if data is None:
            return _fail(404, "no-photo")
        kind = "image/png" if sniff_type(data[:16]) == "png" else "image/jpeg"
        return web.Response(
            body=data, content_type=kind, headers={"Cache-Control": "private, max-age=86400"}
        )

    async def endorse(self, request: web.Request) -> web.Response:
        rid = _hex_id(request)
        key = self.guard.key_for(request)
        if key is None:
            return _fail(423, "locked")
        try:
            eid = await self.port.endorse(key, rid)
        except (PortError, ProtocolError) as exc:
            return _fail(400, "endorse-refused", str(exc))
        return web.json_response({"id": eid})

    async def qr(self, request: web.Request) -> web.Response:
        rid = _hex_id(request)
        mine = [r for r in await self.port.results(None) if r["id"] == rid.hex()]
        if not mine:
            return _fail(404, "no-result")
        svg = qr_svg(result_uri(rid.hex(), mine[0]["tps"], mine[0]["election"]))
        return web.Response(text=svg, content_type="image/svg+xml")

    async def keycode(self, request: web.Request) -> web.Response:
        return await keycode(self, request)

    async def object_to(self, request: web.Request) -> web.Response:
        return await object_to(self, request)

    async def admit(self, request: web.Request) -> web.Response:
        return await admit(self, request)

    async def status(self, request: web.Request) -> web.Response:
        st = await self.port.status()
        st["errors"] = await self.port.recent_errors()
        st["identity"] = self.port.identity()
        return web.json_response(st)


def _flatten(form: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in form.items():
        if k in ("election", "tps", "revision", "supersedes") and not prefix:
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def _photo_field(data: dict[str, Any], name: str) -> bytes | None:
    """An optional base64 JPEG/PNG in a JSON body; ValueError when it is not one."""
    value = data.get(name)
    if value in (None, ""):
        return None
    photo = base64.b64decode(str(value), validate=True)  # binascii.Error is a ValueError
    if not photo or sniff_type(photo[:16]) is None:
        raise ValueError("not a JPEG or PNG")
    return photo


async def keycode(api: Api, request: web.Request) -> web.Response:
    return web.json_response({"code": api.port.key_code()})


async def object_to(api: Api, request: web.Request) -> web.Response:
    rid = _hex_id(request)
    key = api.guard.key_for(request)
    if key is None:
        return _fail(423, "locked")
    data = await _json_body(request, MAX_TRAIL_JSON)
    reason = str(data.get("reason", "")).strip()
    if not 0 < len(reason) <= MAX_OBJECTION_REASON:
        return _fail(400, "objection-reason")
    try:
        photo = _photo_field(data, "photo")
    except ValueError:
        return _fail(400, "bad-photo")
    try:
        oid = await api.port.object_to(key, rid, reason, [photo] if photo else [])
    except (PortError, ProtocolError) as exc:
        return _fail(400, "object-refused", str(exc))
    return web.json_response({"id": oid})


async def admit(api: Api, request: web.Request) -> web.Response:
    key = api.guard.key_for(request)
    if key is None:
        return _fail(423, "locked")
    data = await _json_body(request, MAX_TRAIL_JSON)
    role = data.get("role", "witness")
    pair, seat, election = data.get("pair", 0), data.get("seat", 1), data.get("election", "")
    if role not in ("witness", "ptps") or not isinstance(pair, int) or not isinstance(seat, int):
        return _fail(400, "bad-admission")
    elections = (str(election),) if role == "witness" else tuple(api.port.identity()["elections"])
    try:
        mandate = _photo_field(data, "mandate")
    except ValueError:
        return _fail(400, "bad-photo")
    try:
        aid = await api.port.admit(
            key,
            str(data.get("code", "")),
            role,
            pair,
            seat,
            elections,
            str(data.get("name", ""))[:200],
            mandate,
        )
    except (PortError, ProtocolError) as exc:
        return _fail(400, "admit-refused", str(exc))
    return web.json_response({"id": aid})
