"""The app's one door into the relay layer: everything the phone app needs from a running node.

Every call from ``estafet.app`` into ``estafet.relay`` goes through :class:`NodePort`, so when
the node's insides move (store, peer table, scheduler) only this file follows. The port hands
out plain dicts and bytes, never relay objects; blocking store work runs on the store's own
threads (writes on its one writer thread).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from estafet.crypto.keys import SigningKey, key_id
from estafet.protocol.errors import ProtocolError, Violation
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import CertificateBody, EndorsementBody, ResultBody, decode_envelope
from estafet.protocol.trail import AdmissionBody, ObjectionBody, key_code, parse_key_code
from estafet.relay import plenary
from estafet.relay.enrollment import install, request_enrollment
from estafet.relay.errors import ConfigError, RelayError
from estafet.relay.home import Home
from estafet.relay.local import endorse, submit_result_data
from estafet.relay.node import Node
from estafet.relay.store import StoreDB, receipt_summary

PortError = RelayError
"""What the port raises for a refusal the officer must read (translated by the server)."""


class WrongSecret(RelayError):
    """The PIN or passphrase does not open the device key."""


NEARBY_SECONDS = 120
"""A peer heard from within this many seconds counts as a device nearby."""


def _signer(chain: tuple[bytes, ...]) -> dict[str, str]:
    if not chain:
        return {"role": "root", "label": ""}
    try:
        body = decode_envelope(chain[0]).body
    except ProtocolError:
        return {"role": "?", "label": ""}
    if isinstance(body, CertificateBody | AdmissionBody):
        return {"role": body.role, "label": body.label}
    return {"role": "?", "label": ""}


def _result_view(sdb: StoreDB, row: dict[str, Any]) -> dict[str, Any] | None:
    raw = sdb.get_raw([row["id"]])
    if not raw:
        return None
    env = decode_envelope(raw[0])
    body = env.body
    if not isinstance(body, ResultBody):
        return None
    receipts = sdb.db.execute(
        "SELECT log_index, status, reason, photos_complete FROM receipts WHERE object = ?"
        " ORDER BY log_index",
        [row["id"]],
    ).fetchall()
    holders = sdb.db.execute("SELECT count(*) FROM holders WHERE object = ?", [row["id"]])
    return {
        "id": env.id.hex(),
        "tps": env.tps,
        "election": env.election,
        "created": env.created,
        "origin": row["origin"],
        "state": row["state"] or "carried",
        "reason": row["reason"] or "",
        "form": body.form.to_json(),
        "warnings": list(body.warnings),
        "signer": _signer(env.chain),
        "receipt": receipt_summary(sdb.receipt_raw(row["id"])),
        "receipts": [
            {"log_index": i, "status": s, "reason": r, "photos_complete": bool(pc)}
            for i, s, r, pc in receipts
        ],
        "handed_on": int(holders.fetchone()[0]),
        "photos": [
            {"sheet": s, "sha256": sha.hex(), "size": n, "held": held}
            for s, sha, n, held in sdb.photos_of(row["id"])
        ],
    }


def _endorsements(sdb: StoreDB) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in sdb.objects("endorsement"):
        raw = sdb.get_raw([row["id"]])
        env = decode_envelope(raw[0])
        body = env.body
        if isinstance(body, EndorsementBody):
            who = _signer(env.chain)
            out.setdefault(body.result.hex(), []).append(
                {"id": env.id.hex(), "statement": body.statement, "created": env.created,
                 "key": env.signer.hex(),
                 "state": row["state"] or "carried", **who}
            )  # fmt: skip
    return out


def _objections(sdb: StoreDB) -> dict[str, list[dict[str, Any]]]:
    """Objections held, by result id: who (role, label or admitted name) and why."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in sdb.objects("objection"):
        env = decode_envelope(sdb.get_raw([row["id"]])[0])
        body = env.body
        if isinstance(body, ObjectionBody):
            who = _signer(env.chain)
            out.setdefault(body.result.hex(), []).append(
                {"id": env.id.hex(), "reason": body.reason, "photos": len(body.photos),
                 "created": env.created, "key": env.signer.hex(),
                 "state": row["state"] or "carried", **who}
            )  # fmt: skip
    return out


def results_view(sdb: StoreDB, tps: str | None) -> list[dict[str, Any]]:
    """Every result held (of ``tps`` if given), newest first, each with its endorsements and
    objections."""
    ends = _endorsements(sdb)
    objs = _objections(sdb)
    out = []
    for row in sdb.objects("result"):
        if tps and row["tps"] != tps:
            continue
        view = _result_view(sdb, row)
        if view is not None:
            view["endorsements"] = ends.get(view["id"], [])
            view["objections"] = objs.get(view["id"], [])
            out.append(view)
    out.sort(key=lambda v: (v["created"], v["id"]), reverse=True)
    return out


class NodePort:
    """A running :class:`Node` as the app sees it."""

    def __init__(self, node: Node, root_public: bytes) -> None:
        self._node = node
        self._root = root_public
        self._home = Home(node.home.path)

    # --- who we are ------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self._home.path

    def identity(self) -> dict[str, Any]:
        cert = self._node.replica.cert
        body = cert.body if cert is not None else None
        scope, elections, label = [], [], ""
        if isinstance(body, CertificateBody):
            scope, elections, label = list(body.scope), list(body.elections), body.label
        return {
            "key": self._node.key_hex,
            "role": self._node.replica.role,
            "scope": scope,
            "elections": elections,
            "label": label,
            "name": self._node.config.name,
            "enrolled": cert is not None,
        }

    def manifest(self) -> Manifest | None:
        return self._node.replica.trust.manifest

    def now(self) -> int:
        return self._node.now()

    # --- the key ---------------------------------------------------------------------------
    async def unlock(self, secret: str) -> SigningKey:
        """Decrypt the device key with the officer's PIN or passphrase (scrypt: off the loop).
        Raises :class:`PortError` when it is wrong."""

        def load() -> SigningKey:
            pw = secret if self._home.key_is_encrypted() else None
            return self._home.load_key(pw)

        try:
            key = await asyncio.to_thread(load)
        except ConfigError as exc:
            raise WrongSecret(str(exc)) from exc
        if key.id != self._node.key.id:
            raise PortError("the key file does not belong to this running node")
        return key

    # --- store -----------------------------------------------------------------------------
    async def write_db(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(sqlite_db, *args)`` on the store's writer thread (the app's own tables)."""
        return await self._node.store.write(lambda sdb: fn(sdb.db, *args))

    async def read_db(self, fn: Any, *args: Any) -> Any:
        return await self._node.store.read(lambda sdb: fn(sdb.db, *args))

    async def previous_result(self, oid: bytes) -> tuple[str, str, int] | None:
        def look(sdb: StoreDB) -> tuple[str, str, int] | None:
            raws = sdb.get_raw([oid])
            body = decode_envelope(raws[0]).body if raws else None
            if not isinstance(body, ResultBody):
                return None
            return body.form.tps, body.form.election, body.form.revision

        result: tuple[str, str, int] | None = await self._node.store.read(look)
        return result

    async def results(self, tps: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = await self._node.store.read(results_view, tps)
        return out

    async def photo(self, sha: bytes) -> bytes | None:
        """A held photo's bytes (only photos of results held here)."""

        def get(sdb: StoreDB) -> bytes | None:
            if sdb.photo(sha) is None or not sdb.has_blob(sha):
                return None
            return sdb.blobs.path(sha).read_bytes()

        data: bytes | None = await self._node.store.read(get)
        return data

    # --- signing ---------------------------------------------------------------------------
    async def submit(
        self, key: SigningKey, form: dict[str, Any], photos: list[bytes]
    ) -> tuple[str, list[Violation]]:
        """Check, sign and store a result with the officer's unlocked key; wake the sync. The
        node's own trust store is used (and learns what is signed), on the writer thread."""
        node, now, trust = self._node, self._node.now(), self._node.replica.trust
        sub = await node.store.write(
            lambda _sdb: submit_result_data(node.store, key, self._root, form, photos, now,
                                            trust=trust)
        )  # fmt: skip
        node.changed()
        return sub.id.hex(), sub.warnings

    async def endorse(self, key: SigningKey, result_id: bytes) -> str:
        node, now, trust = self._node, self._node.now(), self._node.replica.trust
        env = await node.store.write(
            lambda _sdb: endorse(node.store, key, self._root, result_id, now, "agree", trust=trust)
        )
        node.changed()
        return env.id.hex()

    # --- the paper trail (issue 13) -----------------------------------------------------------
    def key_code(self) -> str:
        """This phone's public key as the code a KPPS chair types to admit it."""
        return key_code(self._node.key.public)

    async def object_to(
        self, key: SigningKey, result_id: bytes, reason: str, photos: list[bytes]
    ) -> str:
        """Sign an objection (member, witness or PTPS) to a held result, with its photos."""
        node, now, trust = self._node, self._node.now(), self._node.replica.trust
        env = await node.store.write(
            lambda _sdb: plenary.object_to(node.store, key, self._root, result_id, reason,
                                           photos, now, trust=trust)
        )  # fmt: skip
        node.changed()
        return env.id.hex()

    async def admit(
        self,
        key: SigningKey,
        code: str,
        role: str,
        pair: int,
        seat: int,
        elections: tuple[str, ...],
        name: str,
        mandate: bytes | None,
    ) -> str:
        """(Chair) admit the key behind ``code`` at this TPS for today."""
        try:
            subject = parse_key_code(code)
        except ProtocolError as exc:
            raise PortError(str(exc)) from exc
        node, now, trust = self._node, self._node.now(), self._node.replica.trust
        env = await node.store.write(
            lambda _sdb: plenary.admit(node.store, key, self._root, subject, role=role,
                                       pair=pair, seat=seat, elections=elections, label=name,
                                       mandate=mandate, now=now, trust=trust)
        )  # fmt: skip
        node.changed()
        return env.id.hex()

    # --- the node's surroundings -----------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Uplink, peers nearby, disk: what the status card and the keeper screen show."""
        st = await self._node.status()
        now = time.time()
        nearby = [
            {"key": p["key"][:12], "role": p["role"], "last_ok": p["last_ok"]}
            for p in st["peers"]
            if p["last_ok"] and now - p["last_ok"] < NEARBY_SECONDS
        ]
        last_contact = max([p["last_ok"] for p in st["peers"]] + [0])
        return {
            "objects": st["objects"],
            "storage": st["storage"],
            "uplink": st["uplink"],
            "last_contact": last_contact,
            "nearby": nearby,
            "peers_known": len(st["peers"]),
        }

    async def recent_errors(self, limit: int = 5) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._node.store.read(StoreDB.events, limit)
        return [{"at": r["at"], "level": r["level"], "reason": r["reason"]} for r in rows]


# --- before enrollment: no node runs yet ----------------------------------------------------
PROVISION_FILE = "provision.json"


def read_provision(home: Path) -> dict[str, str]:
    """The KPU's provisioning file, ``<home>/provision.json``: ``central`` (URL) and
    ``root_id`` (the root key's fingerprint, 32 hex digits), optionally ``root_public`` (then
    pinned outright) and ``name``. Raises :class:`PortError` with the reason."""
    path = home / PROVISION_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PortError(f"no provisioning file {path}: ask the KPU IT officer for one") from exc
    except (OSError, ValueError) as exc:
        raise PortError(f"{path} is not a provisioning file: {exc}") from exc
    if not isinstance(doc, dict):
        raise PortError(f"{path} is not a provisioning file")
    central, root_id = doc.get("central"), str(doc.get("root_id", "")).lower()
    if not isinstance(central, str) or not central.startswith(("http://", "https://")):
        raise PortError(f"{path}: central must be an http(s) URL")
    if len(root_id) != 32 or any(c not in "0123456789abcdef" for c in root_id):
        raise PortError(f"{path}: root_id must be the root key's fingerprint (32 hex digits)")
    out = {"central": central.rstrip("/"), "root_id": root_id, "name": str(doc.get("name", ""))}
    if doc.get("root_public"):
        try:
            public = bytes.fromhex(str(doc["root_public"]))
        except ValueError as exc:
            raise PortError(f"{path}: root_public is not hex") from exc
        if key_id(public).hex() != root_id:
            raise PortError(f"{path}: root_public does not match root_id")
        out["root_public"] = public.hex()
    return out


def is_enrolled(home: Path) -> bool:
    return Home(home).load_trust() is not None


async def enroll_device(home: Path, secret: str, code: str) -> dict[str, Any]:
    """Enroll this device's key with a one-time code, the central server and root fingerprint
    coming from the provisioning file: the root the server sends must have that fingerprint."""
    h = Home(home)
    prov = read_provision(home)

    def load() -> SigningKey:
        return h.load_key(secret if h.key_is_encrypted() else None)

    try:
        key = await asyncio.to_thread(load)
    except ConfigError as exc:
        raise WrongSecret(str(exc)) from exc
    materials = await request_enrollment(prov["central"], code, key)
    if (
        not isinstance(materials.root_public, bytes)
        or key_id(materials.root_public).hex() != (prov["root_id"])
    ):
        raise PortError("the server's root key is not the one in the provisioning file: refused")
    pinned = bytes.fromhex(prov["root_public"]) if "root_public" in prov else materials.root_public
    body = await asyncio.to_thread(install, home, key, materials, pinned)
    cfg = h.load_config()
    if not cfg.central:
        cfg.central = prov["central"]
        h.save_config(cfg)
    return {"role": body.role, "scope": list(body.scope), "elections": list(body.elections)}
