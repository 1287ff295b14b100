"""The signed-object envelope and the content of each kind of object.

Theory of operation
-------------------
Every object that travels is an *envelope*: a canonical msgpack map
``{"c": content, "s": signature, "x": [certificate envelopes]}``.

* ``c`` is the canonical msgpack encoding of the content map. It always holds ``kind``, ``v``
  (content version, 1), ``signer`` (16-byte key id) and ``created`` (unix seconds, the
  signer's clock, untrusted), plus the fields of its kind.
* The object id is ``SHA-256(c)``: the exact content bytes, nothing else.
* ``s`` is an Ed25519 signature over ``b"estafet/" + kind + b"/v2\\x00" + c`` (domain separated
  by kind and version, so a signature for one kind can never be replayed as another).
* ``x`` (optional) carries the signer's certificate chain so a result can be checked on its own,
  e.g. from a USB stick. It is routing metadata: not signed, not part of the id, and each
  certificate in it is itself a signed object checked on its own merits.

Decoding verifies structure only; signatures and trust are checked by :mod:`estafet.crypto`.
The bytes in ``c`` are kept exactly as received so signatures are checked over them, never over
a re-encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import DecodeError, FormError, ProtocolError, SchemaError
from .fields import bin_field, check_keys, int_field, str_field
from .form import FORM_FIELDS, ResultForm, parse_form
from .manifest import ELECTION_KINDS, Manifest, is_region_code, is_tps_code
from .photos import PhotoRef
from .trail import TRAIL_BODIES, AdmissionBody, CorrectionBody, DHasilBody, ObjectionBody

VERSION = 2
"""Content version; also in the signing prefix. 2: the trail kinds and the receipt's typed
``photos_complete`` (issue 13)."""
KEY_ID_BYTES = 16
ID_BYTES = 32
KINDS = (
    "revocation", "certificate", "manifest", "void", "receipt", "admission", "result",
    "endorsement", "objection", "correction", "dhasil",
)  # fmt: skip
FETCH_PRIORITY = {k: i for i, k in enumerate(KINDS)}
"""Fetch order between peers: revocations and trust first, receipts, admissions (they vouch for
witnesses), then results, endorsements, objections, corrections and D.Hasil (photos come last,
after the object naming them is verified)."""

ROLES = ("issuer", "kpps-chair", "kpps-member", "witness", "relay", "gateway", "ppk")
RECEIPT_STATUSES = ("accepted", "rejected", "conflict", "superseded", "voided", "held")
MAX_OBJECT_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
MAX_CHAIN = 3


def object_id(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def signing_message(kind: str, content: bytes) -> bytes:
    return b"estafet/" + kind.encode("ascii") + b"/v%d\x00" % VERSION + content


# --- content of each kind ---------------------------------------------------------------


_int = int_field
_str = str_field
_bin = bin_field
_keys = check_keys


@dataclass(frozen=True, slots=True)
class CertificateBody:
    serial: int
    subject: bytes  # raw Ed25519 public key, 32 bytes
    role: str
    scope: tuple[str, ...]  # region prefixes or TPS codes this key may act for
    elections: tuple[str, ...]
    not_before: int
    not_after: int
    label: str

    FIELDS = ("serial", "subject", "role", "scope", "elections", "not_before", "not_after", "label")

    def to_map(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "subject": self.subject,
            "role": self.role,
            "scope": list(self.scope),
            "elections": list(self.elections),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "label": self.label,
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> CertificateBody:
        role = _str(m, "role")
        if role not in ROLES:
            raise SchemaError(f"unknown role {role!r}")
        scope, elections = m.get("scope"), m.get("elections")
        if not isinstance(scope, list) or not all(is_region_code(s) for s in scope):
            raise SchemaError("scope must be a list of region or TPS codes")
        if not isinstance(elections, list) or not all(e in ELECTION_KINDS for e in elections):
            raise SchemaError("elections must list election kinds")
        body = cls(
            serial=_int(m, "serial"),
            subject=_bin(m, "subject", 32) or b"",
            role=role,
            scope=tuple(scope),
            elections=tuple(elections),
            not_before=_int(m, "not_before"),
            not_after=_int(m, "not_after"),
            label=_str(m, "label", allow_empty=True),
        )
        if body.not_after <= body.not_before:
            raise SchemaError("certificate not_after must be after not_before")
        return body

    def covers(self, tps: str) -> bool:
        return any(tps.startswith(s) for s in self.scope)


@dataclass(frozen=True, slots=True)
class ResultBody:
    form: ResultForm
    photos: tuple[PhotoRef, ...]
    warnings: tuple[str, ...]

    FIELDS = (*FORM_FIELDS, "photos", "warnings")

    def to_map(self) -> dict[str, Any]:
        m = self.form.to_map()
        m["photos"] = [p.to_map() for p in sorted(self.photos, key=lambda p: p.sheet)]
        m["warnings"] = sorted(self.warnings)
        return m

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> ResultBody:
        form_part = {k: m[k] for k in cls.FIELDS if k not in ("photos", "warnings") and k in m}
        try:
            form = parse_form(form_part)
        except FormError as exc:
            raise SchemaError(f"result form: {exc}") from exc
        photos, warnings = m.get("photos"), m.get("warnings")
        if not isinstance(photos, list) or len(photos) > 8:
            raise SchemaError("photos must be a list of at most 8 entries")
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise SchemaError("warnings must be a list of rule names")
        return cls(form, tuple(PhotoRef.from_map(p) for p in photos), tuple(warnings))


@dataclass(frozen=True, slots=True)
class EndorsementBody:
    result: bytes
    tps: str
    election: str
    statement: str  # "agree" or "object" (a witness may sign that they saw but dispute)

    FIELDS = ("result", "tps", "election", "statement")

    def to_map(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "tps": self.tps,
            "election": self.election,
            "statement": self.statement,
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> EndorsementBody:
        tps, election, statement = m.get("tps"), m.get("election"), m.get("statement")
        if not is_tps_code(tps) or election not in ELECTION_KINDS:
            raise SchemaError("endorsement must name a TPS and an election")
        if statement not in ("agree", "object"):
            raise SchemaError("endorsement statement must be 'agree' or 'object'")
        return cls(_bin(m, "result", ID_BYTES) or b"", str(tps), str(election), str(statement))


@dataclass(frozen=True, slots=True)
class ReceiptBody:
    object: bytes
    object_kind: str
    tps: str  # "" for objects that belong to no TPS
    election: str
    status: str
    reason: str
    log_index: int
    log_prev: bytes
    log_hash: bytes
    photos_complete: bool = False
    """The central server holds every photo the object names (a result's three sheets)."""

    FIELDS = (
        "object",
        "object_kind",
        "tps",
        "election",
        "status",
        "reason",
        "log_index",
        "log_prev",
        "log_hash",
        "photos_complete",
    )

    def to_map(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "object_kind": self.object_kind,
            "tps": self.tps,
            "election": self.election,
            "status": self.status,
            "reason": self.reason,
            "log_index": self.log_index,
            "log_prev": self.log_prev,
            "log_hash": self.log_hash,
            "photos_complete": self.photos_complete,
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> ReceiptBody:
        status = m.get("status")
        if status not in RECEIPT_STATUSES:
            raise SchemaError(f"receipt status must be one of {RECEIPT_STATUSES}")
        photos = m.get("photos_complete")
        if not isinstance(photos, bool):
            raise SchemaError("receipt photos_complete must be true or false")
        tps = _str(m, "tps", 13, allow_empty=True)
        if tps and not is_tps_code(tps):
            raise SchemaError("receipt tps must be a TPS code or empty")
        return cls(
            object=_bin(m, "object", ID_BYTES) or b"",
            object_kind=_str(m, "object_kind", 20, allow_empty=True),
            tps=tps,
            election=_str(m, "election", 20, allow_empty=True),
            status=str(status),
            reason=_str(m, "reason", 500, allow_empty=True),
            log_index=_int(m, "log_index"),
            log_prev=_bin(m, "log_prev", 32) or b"",
            log_hash=_bin(m, "log_hash", 32) or b"",
            photos_complete=photos,
        )


@dataclass(frozen=True, slots=True)
class VoidBody:
    """The KPU voids one result (issue 11, item 8): signed by the root or an issuer. The voided
    result is never counted but is kept as evidence; ``reason`` says why, for everyone."""

    result: bytes
    tps: str
    election: str
    reason: str

    FIELDS = ("result", "tps", "election", "reason")

    def to_map(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "tps": self.tps,
            "election": self.election,
            "reason": self.reason,
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> VoidBody:
        tps, election = m.get("tps"), m.get("election")
        if not is_tps_code(tps) or election not in ELECTION_KINDS:
            raise SchemaError("void must name a TPS and an election")
        return cls(
            _bin(m, "result", ID_BYTES) or b"", str(tps), str(election), _str(m, "reason", 500)
        )


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate serial or key. ``time`` is when the KPU revoked it; ``since``,
    the stated compromise time: objects the key signed at or after ``since`` are revoked, those
    signed before stay valid. ``since`` absent (None) means ``time``."""

    serial: int | None
    key: bytes | None
    reason: str
    time: int
    since: int | None = None

    @property
    def compromised_at(self) -> int:
        return self.time if self.since is None else self.since

    def covers(self, signed: int) -> bool:
        """Whether an object signed at ``signed`` falls under this revocation."""
        return signed >= self.compromised_at

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "serial": self.serial,
            "key": self.key,
            "reason": self.reason,
            "time": self.time,
        }
        if self.since is not None:
            m["since"] = self.since
        return m


@dataclass(frozen=True, slots=True)
class RevocationBody:
    version: int
    entries: tuple[RevokedEntry, ...]

    FIELDS = ("version", "entries")

    def to_map(self) -> dict[str, Any]:
        return {"version": self.version, "entries": [e.to_map() for e in self.entries]}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> RevocationBody:
        raw = m.get("entries")
        if not isinstance(raw, list):
            raise SchemaError("entries must be a list")
        entries = []
        for e in raw:
            if not isinstance(e, dict) or not (
                {"serial", "key", "reason", "time"} <= set(e) <= {"serial", "key", "reason",
                                                                   "time", "since"}
            ):  # fmt: skip
                raise SchemaError("revocation entry must have serial, key, reason, time[, since]")
            serial = None if e["serial"] is None else _int(e, "serial")
            key = _bin(e, "key", KEY_ID_BYTES, optional=True)
            if serial is None and key is None:
                raise SchemaError("revocation entry must name a serial or a key")
            since = _int(e, "since") if "since" in e else None
            entries.append(
                RevokedEntry(serial, key, _str(e, "reason", 500), _int(e, "time"), since)
            )
        return cls(_int(m, "version", 1), tuple(entries))

    def revokes(self, serial: int, key_id: bytes) -> RevokedEntry | None:
        for e in self.entries:
            if e.serial == serial or e.key == key_id:
                return e
        return None


@dataclass(frozen=True, slots=True)
class ManifestBody:
    manifest: Manifest

    FIELDS = ("name", "version", "elections", "tps", "regions")

    def to_map(self) -> dict[str, Any]:
        return self.manifest.to_map()

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> ManifestBody:
        try:
            return cls(Manifest.from_map(m))
        except ProtocolError as exc:
            raise SchemaError(str(exc)) from exc


Body = (
    CertificateBody
    | ResultBody
    | EndorsementBody
    | ReceiptBody
    | RevocationBody
    | ManifestBody
    | VoidBody
    | AdmissionBody
    | ObjectionBody
    | CorrectionBody
    | DHasilBody
)
_BODY_TYPES: dict[str, Any] = {
    **TRAIL_BODIES,
    "void": VoidBody,
    "certificate": CertificateBody,
    "result": ResultBody,
    "endorsement": EndorsementBody,
    "receipt": ReceiptBody,
    "revocation": RevocationBody,
    "manifest": ManifestBody,
}


def make_content(kind: str, signer: bytes, created: int, body: Body) -> bytes:
    """Canonical content bytes for ``body``, to be signed by the key ``signer``."""
    if kind not in _BODY_TYPES or not isinstance(body, _BODY_TYPES[kind]):
        raise SchemaError(f"body does not match kind {kind!r}")
    if len(signer) != KEY_ID_BYTES:
        raise SchemaError("signer must be a 16-byte key id")
    m = body.to_map()
    m.update({"kind": kind, "v": VERSION, "signer": signer, "created": created})
    return codec.encode(m)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded, structurally valid (but not yet verified) signed object."""

    content: bytes
    signature: bytes
    chain: tuple[bytes, ...]
    kind: str
    signer: bytes
    created: int
    body: Body
    id: bytes

    @property
    def tps(self) -> str:
        b = self.body
        if isinstance(b, ResultBody):
            return b.form.tps
        if isinstance(b, EndorsementBody | ReceiptBody | VoidBody | AdmissionBody):
            return b.tps
        if isinstance(b, ObjectionBody | CorrectionBody):
            return b.tps
        return ""

    @property
    def election(self) -> str:
        b = self.body
        if isinstance(b, ResultBody):
            return b.form.election
        if isinstance(b, EndorsementBody | ReceiptBody | VoidBody):
            return b.election
        if isinstance(b, ObjectionBody | CorrectionBody | DHasilBody):
            return b.election
        return ""

    def encode(self) -> bytes:
        return encode_envelope(self.content, self.signature, self.chain)


def encode_envelope(content: bytes, signature: bytes, chain: tuple[bytes, ...] = ()) -> bytes:
    m: dict[str, Any] = {"c": content, "s": signature}
    if chain:
        m["x"] = list(chain)
    return codec.encode(m)


def decode_envelope(data: bytes, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Envelope:
    """Decode an envelope from untrusted bytes. Raises DecodeError or SchemaError."""
    outer = codec.decode(
        data, codec.Limits(max_bytes=max_bytes, max_bin=max_bytes, max_array=MAX_CHAIN, max_map=3)
    )
    if not isinstance(outer, dict) or not {"c", "s"} <= set(outer) <= {"c", "s", "x"}:
        raise SchemaError("envelope must be a map with c, s and optional x")
    content, sig, chain = outer["c"], outer["s"], outer.get("x", [])
    if not isinstance(content, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
        raise SchemaError("envelope content must be bytes and its signature 64 bytes")
    if not isinstance(chain, list) or not all(isinstance(c, bytes) for c in chain):
        raise SchemaError("envelope chain must be a list of certificate envelopes")
    if "x" in outer and not chain:
        raise DecodeError("not canonical: empty chain must be omitted")
    # An array element takes at least one byte, so an array cap of the content's length bounds
    # memory by the (already capped) input size; per-kind caps are checked by the schemas.
    # Only a manifest may be larger than an object; its rows take at least four bytes per element
    # (a TPS row is [code, dpt]), so its element budget follows its size; anything else gets the
    # object budget, checked before the content is built.
    big = len(data) > MAX_OBJECT_BYTES
    limits = codec.Limits(
        max_bytes=len(content),
        max_str=4096,
        max_bin=64,
        max_array=min(len(content), codec.MANIFEST_LIMITS.max_array),
        max_map=64,
        max_elements=len(content) // 4 + 1024 if big else codec.OBJECT_LIMITS.max_elements,
        max_depth=codec.MANIFEST_LIMITS.max_depth if big else codec.OBJECT_LIMITS.max_depth,
    )
    # not checked canonical here: the comparison with the parsed body's encoding below is
    # stricter, so the content is encoded once, not twice
    m = codec.decode_to_reencode(content, limits)
    if not isinstance(m, dict):
        raise SchemaError("content must be a map")
    kind = m.get("kind")
    if not isinstance(kind, str) or kind not in _BODY_TYPES:
        raise SchemaError(f"unknown object kind {kind!r}")
    if kind != "manifest" and len(data) > MAX_OBJECT_BYTES:
        raise DecodeError(f"{kind} object of {len(data)} bytes exceeds {MAX_OBJECT_BYTES}")
    if m.get("v") != VERSION:
        raise SchemaError(f"unsupported content version {m.get('v')!r}")
    body_type = _BODY_TYPES[str(kind)]
    _keys(m, str(kind), body_type.FIELDS)
    signer = _bin(m, "signer", KEY_ID_BYTES) or b""
    created = _int(m, "created", 0, 2**40)
    body = body_type.from_map({k: m[k] for k in body_type.FIELDS})
    # One meaning, one byte string, one id: the content must be exactly what its parsed body
    # encodes to (no hex where bytes belong, no unsorted lists, no duplicate rows).
    if make_content(str(kind), signer, created, body) != content:
        raise DecodeError(f"not canonical: {kind} content differs from its canonical form")
    return Envelope(
        content=content,
        signature=sig,
        chain=tuple(chain),
        kind=str(kind),
        signer=signer,
        created=created,
        body=body,
        id=object_id(content),
    )


# --- the central server's hash-chained ingest log ----------------------------------------

LOG_GENESIS = bytes(32)


def log_entry_hash(
    prev: bytes,
    index: int,
    object_id_: bytes,
    status: str,
    reason: str,
    server_time: int,
    photos_complete: bool = False,
) -> bytes:
    """Hash of one ingest-log entry; each entry commits to the previous head ``prev``."""
    entry = [prev, index, object_id_, status, reason, server_time, photos_complete]
    return hashlib.sha256(b"estafet/log/v2\x00" + codec.encode(entry)).digest()


def receipt_log_ok(receipt: ReceiptBody, server_time: int) -> bool:
    """True when the receipt's log hash is the hash of its own entry."""
    return receipt.log_hash == log_entry_hash(
        receipt.log_prev,
        receipt.log_index,
        receipt.object,
        receipt.status,
        receipt.reason,
        server_time,
        receipt.photos_complete,
    )
