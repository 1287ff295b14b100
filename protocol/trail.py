"""The paper trail after the count (issue 13): admissions, objections, corrections, the D.Hasil.

Theory of operation
-------------------
Four kinds of signed object mirror the paper of count night and of the PPK plenary:

* ``admission`` (the witness's mandate letter, handed to the KPPS): a KPPS chair admits a
  witness of one candidate pair, or the PTPS, *on the spot*, by signing the key the person's
  phone shows. It is a certificate in all but name, deliberately narrower: exactly one TPS, the
  elections named, one day (``ADMISSION_MAX_SPAN``), a ``seat`` (1 or 2 per pair; the PTPS
  has seat 1 and pair 0) and an optional photo of the mandate letter.
* ``objection`` (the C.Kejadian Khusus dan/atau Keberatan): a witness, KPPS member or the
  PTPS disputes a result, with a bounded reason and up to three photos of the form. It never
  changes the count.
* ``correction``: the PPK (plenary) names a TPS result and the numbers the plenary found, with
  the reason and an optional photo of the minutes. The KPPS result and its photos stay.
* ``dhasil`` (the D.Hasil): the kecamatan totals of one election and the exact list of TPS
  results and corrections they were added up from, signed when the plenary closes.

Schemas only here; who may sign which and the rules that need a manifest or other objects
live in :mod:`estafet.crypto.trust` and in the central server.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FormError, SchemaError
from .fields import bin_field, id_list, int_field, str_field
from .form import FORM_FIELDS, ResultForm, parse_form
from .manifest import ELECTION_KINDS, is_tps_code
from .photos import PhotoRef

ID_BYTES = 32
ADMITTED_ROLES = ("witness", "ptps")
MAX_SEATS = 2
"""At most two witnesses per candidate pair per TPS (PKPU 17/2024): seats 1 and 2."""
ADMISSION_MAX_SPAN = 36 * 3600
"""An admission is valid for one election day: the count runs past midnight, so 36 hours."""
MAX_REASON = 1000
MAX_OBJECTION_PHOTOS = 3
MAX_MINUTES_PHOTOS = 1
MAX_DHASIL_RESULTS = 600
MAX_DHASIL_CORRECTIONS = 300
MAX_TOTAL = 10_000_000
CORRECTION_FORM_FIELDS = tuple(f for f in FORM_FIELDS if f not in ("revision", "supersedes"))


def _photos(m: dict[str, Any], key: str, max_n: int) -> tuple[PhotoRef, ...]:
    raw = m.get(key)
    if not isinstance(raw, list) or len(raw) > max_n:
        raise SchemaError(f"{key} must be a list of at most {max_n} photos")
    photos = tuple(PhotoRef.from_map(p) for p in raw)
    sheets = [p.sheet for p in photos]
    if sheets != list(range(1, len(photos) + 1)):
        raise SchemaError(f"{key} must be numbered 1..{len(photos)} in order")
    return photos


def _tps_election(m: dict[str, Any], kind: str) -> tuple[str, str]:
    tps, election = m.get("tps"), m.get("election")
    if not is_tps_code(tps) or election not in ELECTION_KINDS:
        raise SchemaError(f"{kind} must name a TPS and an election")
    return str(tps), str(election)


@dataclass(frozen=True, slots=True)
class AdmissionBody:
    """A chair's admission of a witness (or the PTPS) at its own TPS, for one day."""

    subject: bytes  # raw Ed25519 public key shown by the witness's phone
    role: str  # witness | ptps
    tps: str
    elections: tuple[str, ...]
    pair: int  # the candidate pair's ballot number; 0 for the PTPS
    seat: int  # 1..MAX_SEATS per pair (the PTPS: 1)
    not_before: int
    not_after: int
    label: str
    mandate: tuple[PhotoRef, ...]  # photo of the mandate letter (0 or 1)

    FIELDS = (
        "subject", "role", "tps", "elections", "pair", "seat", "not_before", "not_after",
        "label", "mandate",
    )  # fmt: skip

    def to_map(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "role": self.role,
            "tps": self.tps,
            "elections": list(self.elections),
            "pair": self.pair,
            "seat": self.seat,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "label": self.label,
            "mandate": [p.to_map() for p in self.mandate],
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> AdmissionBody:
        role, tps, elections = m.get("role"), m.get("tps"), m.get("elections")
        if role not in ADMITTED_ROLES:
            raise SchemaError(f"admission role must be one of {ADMITTED_ROLES}")
        if not is_tps_code(tps):
            raise SchemaError("an admission names exactly one TPS")
        if (
            not isinstance(elections, list)
            or not elections
            or not all(e in ELECTION_KINDS for e in elections)
            or elections != sorted(set(elections))
        ):
            raise SchemaError("elections must be a sorted, non-empty list of election kinds")
        pair = int_field(m, "pair", 0, 99)
        seat = int_field(m, "seat", 1, MAX_SEATS)
        if role == "ptps" and (pair, seat) != (0, 1):
            raise SchemaError("the PTPS is admitted with pair 0, seat 1")
        if role == "witness" and (pair == 0 or len(elections) != 1):
            raise SchemaError("a witness is admitted for one candidate pair of one election")
        body = cls(
            subject=bin_field(m, "subject", 32) or b"",
            role=str(role),
            tps=str(tps),
            elections=tuple(elections),
            pair=pair,
            seat=seat,
            not_before=int_field(m, "not_before"),
            not_after=int_field(m, "not_after"),
            label=str_field(m, "label", allow_empty=True),
            mandate=_photos(m, "mandate", 1),
        )
        span = body.not_after - body.not_before
        if not 0 < span <= ADMISSION_MAX_SPAN:
            raise SchemaError(
                f"an admission lasts one election day: 1..{ADMISSION_MAX_SPAN} seconds"
            )
        return body

    @property
    def seat_key(self) -> tuple[str, str, int, int]:
        """(tps, first election, pair, seat): two admissions with the same key compete."""
        return (self.tps, self.elections[0] if self.role == "witness" else "", self.pair,
                self.seat)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ObjectionBody:
    """A signed objection (C.Kejadian Khusus dan/atau Keberatan) to one result."""

    result: bytes
    tps: str
    election: str
    reason: str
    photos: tuple[PhotoRef, ...]

    FIELDS = ("result", "tps", "election", "reason", "photos")

    def to_map(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "tps": self.tps,
            "election": self.election,
            "reason": self.reason,
            "photos": [p.to_map() for p in self.photos],
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> ObjectionBody:
        tps, election = _tps_election(m, "objection")
        return cls(
            bin_field(m, "result", ID_BYTES) or b"",
            tps,
            election,
            str_field(m, "reason", MAX_REASON),
            _photos(m, "photos", MAX_OBJECTION_PHOTOS),
        )


@dataclass(frozen=True, slots=True)
class CorrectionBody:
    """The PPK's correction of one TPS result: the numbers the plenary found."""

    result: bytes
    form: ResultForm  # revision 0, supersedes None: only the numbers count
    reason: str
    photos: tuple[PhotoRef, ...]  # the plenary minutes (0 or 1)

    FIELDS = ("result", *CORRECTION_FORM_FIELDS, "reason", "photos")

    @property
    def tps(self) -> str:
        return self.form.tps

    @property
    def election(self) -> str:
        return self.form.election

    def to_map(self) -> dict[str, Any]:
        m = {k: v for k, v in self.form.to_map().items() if k in CORRECTION_FORM_FIELDS}
        m.update(result=self.result, reason=self.reason, photos=[p.to_map() for p in self.photos])
        return m

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> CorrectionBody:
        part = {k: m[k] for k in CORRECTION_FORM_FIELDS if k in m}
        try:
            form = parse_form({**part, "revision": 0, "supersedes": None})
        except FormError as exc:
            raise SchemaError(f"correction numbers: {exc}") from exc
        return cls(
            bin_field(m, "result", ID_BYTES) or b"",
            form,
            str_field(m, "reason", MAX_REASON),
            _photos(m, "photos", MAX_MINUTES_PHOTOS),
        )


def _votes(m: dict[str, Any]) -> dict[str, int]:
    votes = m.get("votes")
    if not isinstance(votes, dict) or not 1 <= len(votes) <= 99:
        raise SchemaError("votes must map ballot numbers to totals")
    out: dict[str, int] = {}
    for k in votes:
        if not isinstance(k, str) or not k.isascii() or not k.isdigit() or k != str(int(k)):
            raise SchemaError("votes keys must be ballot numbers")
        out[k] = int_field(votes, k, 0, MAX_TOTAL)
    if list(out) != sorted(out, key=int):
        raise SchemaError("votes must be sorted by ballot number")
    return out


@dataclass(frozen=True, slots=True)
class DHasilBody:
    """The kecamatan recap (D.Hasil) of one election, signed by the PPK at the plenary's close."""

    kecamatan: str
    election: str
    votes: Mapping[str, int]
    valid: int
    invalid: int
    results: tuple[bytes, ...]
    corrections: tuple[bytes, ...]

    FIELDS = ("kecamatan", "election", "votes", "valid", "invalid", "results", "corrections")

    def to_map(self) -> dict[str, Any]:
        return {
            "kecamatan": self.kecamatan,
            "election": self.election,
            "votes": dict(sorted(self.votes.items(), key=lambda kv: int(kv[0]))),
            "valid": self.valid,
            "invalid": self.invalid,
            "results": list(self.results),
            "corrections": list(self.corrections),
        }

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> DHasilBody:
        kec, election = m.get("kecamatan"), m.get("election")
        if not isinstance(kec, str) or len(kec) != 6 or not kec.isascii() or not kec.isdigit():
            raise SchemaError("kecamatan must be a 6-digit code")
        if election not in ELECTION_KINDS:
            raise SchemaError("a D.Hasil names one election")
        return cls(
            kec,
            str(election),
            _votes(m),
            int_field(m, "valid", 0, MAX_TOTAL),
            int_field(m, "invalid", 0, MAX_TOTAL),
            id_list(m, "results", MAX_DHASIL_RESULTS),
            id_list(m, "corrections", MAX_DHASIL_CORRECTIONS),
        )


TRAIL_BODIES: dict[str, Any] = {
    "admission": AdmissionBody,
    "objection": ObjectionBody,
    "correction": CorrectionBody,
    "dhasil": DHasilBody,
}


def object_photos(body: object) -> tuple[PhotoRef, ...]:
    """The photos a trail object names (they travel as blobs, like a result's sheets)."""
    if isinstance(body, AdmissionBody):
        return body.mandate
    if isinstance(body, ObjectionBody | CorrectionBody):
        return body.photos
    return ()


KEY_CODE_GROUP = 4


def key_code(public: bytes) -> str:
    """The witness's public key as a code a chair can type: base32 of the 32-byte key and a
    4-character check, in groups of four (``ABCD-EFGH-...``, 14 groups)."""
    if len(public) != 32:
        raise SchemaError("a public key is 32 bytes")
    check = hashlib.sha256(b"estafet/key-code\x00" + public).digest()[:3]
    text = base64.b32encode(public + check).decode("ascii")
    return "-".join(text[i : i + KEY_CODE_GROUP] for i in range(0, len(text), KEY_CODE_GROUP))


def parse_key_code(code: str) -> bytes:
    """The public key of a typed :func:`key_code`; spaces, dashes and case are ignored, and a
    mistyped character fails the check (SchemaError) instead of admitting the wrong key."""
    text = "".join(c for c in code.upper() if c not in " -\t")
    if len(text) != 56 or not text.isascii():
        raise SchemaError("a key code has 56 letters and digits (14 groups of 4)")
    try:
        raw = base64.b32decode(text)
    except ValueError as exc:
        raise SchemaError("a key code uses the letters A-Z and digits 2-7") from exc
    public = raw[:32]
    if key_code(public).replace("-", "") != text:
        raise SchemaError("the key code's check does not match: a character is mistyped")
    return public
