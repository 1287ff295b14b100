"""The central server's core: verify each pushed object, keep it, log it, answer with a receipt.

Theory of operation
-------------------
:meth:`Central.ingest` takes the raw bytes of one object and the server time. Bytes from which
no object id can be computed answer ``(None, "malformed")``; copies that fail verification for
reasons of their own (``COPY_DEPENDENT``: malformed content, a bad signature, no chain to the
root) answer ``(None, "unverified")``, and time-only failures ``(None, "not-final")``: no row,
no log entry, no receipt (issue 11). Everything else is stored (raw bytes kept exactly),
verified with the authority's :class:`TrustStore` (``allow_revoked=True``), and gets one or
more *log entries*: the append-only ingest log is a hash chain, entry ``i`` committing to entry
``i-1`` with :func:`log_entry_hash`. Each entry has a receipt signed by the
issuer key, with ``created`` = server time, so anyone holding the root key id can check that the
server said "object X had status S at position i of a chain whose head was H".

Statuses: ``accepted``; ``rejected`` (reason: the VerifyError reason and detail, ``revoked-signer``
or ``invalid-content: revision-supersedes ...``); ``conflict`` and ``superseded`` from the counting
rule in :mod:`.tally`. When a new object changes the status of older ones (a revision supersedes a
result; a second result for the same TPS, election and revision makes both conflict; a revocation
flags results received after the revocation time) those get a new log entry and receipt too.

Idempotence: an object id already held answers its latest receipt without writing. An id held
as *rejected* is verified again, because the id covers only the content: a copy with a broken
signature or missing chain must not shadow the genuine object; if the new copy verifies it is
processed and the rejected copy is kept in ``rejected_copies``.

Receipts are never receipted (``(None, "ignored")``), so receipts echoed back through the mesh
cannot loop. Certificates, manifests and revocation lists are acknowledged and learnt (newer
versions only) but not tallied.

Transactions: one ingest is one database transaction, or a whole pushed batch is
(:meth:`Central.batch`, group commit: one ``COMMIT`` and one fsync for up to 512 objects). Inside
a batch each object is processed exactly as it would be alone, in order, on the open transaction
(so duplicates and conflicts inside one batch end as they would one by one); its receipt exists
only in that transaction and is handed out by the caller after the batch committed. A crash
before the ``COMMIT`` loses the whole batch and nothing that was acknowledged.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estafet.crypto.errors import COPY_DEPENDENT, VerifyError
from estafet.crypto.keys import verify_signature
from estafet.crypto.seal import seal
from estafet.crypto.trust import Verified
from estafet.protocol import codec
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import (
    LOG_GENESIS,
    MAX_CHAIN,
    MAX_MANIFEST_BYTES,
    EndorsementBody,
    Envelope,
    ReceiptBody,
    ResultBody,
    RevokedEntry,
    VoidBody,
    decode_envelope,
    log_entry_hash,
    signing_message,
)
from estafet.protocol.tally import resolve_slot, supersede_problem

from . import trail, views
from .authority import Authority
from .config import open_db
from .db import Row
from .enroll import Enrollment, EnrollResult
from .errors import LogError
from .metrics import Stats

MAX_REASON = 500
PHOTO_KINDS = ("result", "admission", "objection", "correction")
"""Kinds whose receipts say ``photos_complete`` once every photo they name is here."""
SLOT_REASONS = {"accepted": "", "conflict": "equivocation", "superseded": "later-revision"}
_OUTER = codec.Limits(
    max_bytes=MAX_MANIFEST_BYTES, max_bin=MAX_MANIFEST_BYTES, max_array=MAX_CHAIN, max_map=3
)


def loose_id(raw: bytes) -> bytes | None:
    """The object id of bytes that do not decode as an object, when an id exists at all."""
    try:
        outer = codec.decode(raw, _OUTER)
    except ProtocolError:
        return None
    if isinstance(outer, dict) and isinstance(outer.get("c"), bytes):
        return hashlib.sha256(outer["c"]).digest()
    return None


NOT_FINAL = "not-final"
"""Ingest status of an object refused only for time or manifest version (issue 11, item 6)."""
UNVERIFIED = "unverified"
"""Ingest status of a copy that did not verify for reasons of its own (``COPY_DEPENDENT``): no
row, no log entry, no receipt (issue 11, item 1); the pusher gets an unsigned refusal."""
HELD_REASON = "supersedes a result not received yet: held, not counted, until it arrives"


@dataclass(frozen=True, slots=True)
class _Batch:
    """An open :meth:`Central.batch`: the trust generation its verdicts were computed at, and
    the verdicts (by the identity of the batch's envelopes)."""

    gen: int
    verdicts: dict[int, Verified]


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one ingest did: the object's latest receipt and status, and the verified object
    (None when it did not verify, or was not processed: malformed, a receipt, a duplicate)."""

    receipt: bytes | None
    status: str
    verified: Verified | None = None
    reason: str = ""
    """Why an object got no receipt (``unverified``, ``not-final``): told to the pusher only."""


class Central:
    """The central server's state: its database (central.db in ``home``, or the PostgreSQL
    database that ``home/central.toml`` names) plus the authority's keys."""

    def __init__(self, home: Path, authority: Authority, *, valid_until: int | None = None):
        self.home = Path(home)
        self.authority = authority
        self.trust = authority.trust
        self.db = open_db(self.home)
        self.stats = Stats()
        self.enrollment = Enrollment(self.db, authority, valid_until=valid_until)
        self.trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        """Reverse proxies whose X-Forwarded-For the enroll route believes (``central serve
        --trusted-proxy``); empty: the TCP peer is the client."""
        self.version = 0  # bumped on every change the status view shows (web.py caches by it)
        self._chain = (authority.issuer_cert.encode(),)
        """What every receipt carries: the issuer's certificate (encoded once)."""
        self._trust_gen = 0
        """Bumped whenever what ``trust`` believes changes in a way that can alter a verdict."""
        self._batch: _Batch | None = None
        self._sealed: dict[int, tuple[bytes, Envelope]] = {}
        """Receipts sealed by the current write, by log index, with their bytes (catch_up takes
        them instead of decoding the bytes again); cleared when a write begins."""
        self._relearn()

    def close(self) -> None:
        self.db.close()

    def refresh_trust(self) -> None:
        """Learn revocation lists and manifests that another process (``central revoke``)
        added to central.db while this server runs: a revoked key stops being trusted at the
        server's next ingest, with no restart."""
        marker = self.db.trust_marker()
        if marker != self._marker:
            self._relearn()

    def _relearn(self) -> None:
        """Learn manifests and revocation lists accepted in earlier runs (root-signed, so no
        validity window: each object's own time stands in for ``now``)."""
        self._trust_gen += 1
        self._marker = self.db.trust_marker()
        for kind in ("manifest", "revocation"):
            for raw in self.db.accepted_raw(kind):
                env = decode_envelope(raw)
                self.trust.learn(self.trust.verify(env, env.created))

    def _learn(self, v: Verified) -> bool:
        """Learn ``v``; a change that can alter another object's verdict (anything but a new
        certificate, which only turns an unknown signer into a known one) voids the verdicts
        a batch computed in advance."""
        changed = self.trust.learn(v)
        if changed and v.kind != "certificate":
            self._trust_gen += 1
        return changed

    # --- ingest -------------------------------------------------------------------------------
    def ingest(self, raw: bytes, now: int) -> tuple[bytes | None, str]:
        """Verify, store and log one pushed object; return (receipt bytes, status)."""
        done = self.ingest_verified(raw, now)
        return done.receipt, done.status

    @contextmanager
    def batch(self, envs: Sequence[Envelope | None], now: int) -> Iterator[None]:
        """Group commit: every :meth:`ingest_verified` inside the block is part of one
        transaction of central.db (one ``COMMIT``, one fsync), committed when the block ends
        and rolled back, whole, if it raises. ``envs`` (the batch's objects, decoded) are
        verified first, before the write lock is taken, so several central processes still
        verify in parallel; inside, each object uses its verdict unless what this server
        trusts changed since (a manifest, revocation or admission earlier in the batch, or
        from another process), and is verified again then. Receipts made inside the block
        exist only in the open transaction: the caller hands them out after the block."""
        with self.db.lock:
            if self._batch is not None or self.db.in_transaction():
                raise LogError(-1, "ingest batches do not nest")
            self.refresh_trust()
            verdicts = self._preverify(envs, now)
            with self.db.write():
                self.refresh_trust()  # another process may have changed it meanwhile
                self._batch = _Batch(self._trust_gen, verdicts)
                self._sealed.clear()
                try:
                    yield
                finally:
                    self._batch = None

    def _preverify(self, envs: Sequence[Envelope | None], now: int) -> dict[int, Verified]:
        out: dict[int, Verified] = {}
        for env in envs:
            if env is None or env.kind == "receipt":
                continue
            try:
                out[id(env)] = self.trust.verify(env, now, allow_revoked=True)
            except VerifyError:
                continue  # verified again in order, once the batch's own objects are learnt
        return out

    def _verify(self, env: Envelope, now: int) -> Verified:
        """``env`` verified: the batch's verdict while it still holds, else now."""
        b = self._batch
        if b is not None and b.gen == self._trust_gen:
            v = b.verdicts.get(id(env))
            if v is not None and v.envelope is env:
                return v
        return self.trust.verify(env, now, allow_revoked=True)

    def ingest_verified(
        self, raw: bytes, now: int, *, env: Envelope | None = None, tries: int = 3
    ) -> Ingested:
        """:meth:`ingest`, also handing back the verified object (verified once, here; again
        if another process accepted a revocation or manifest while it was being verified).
        ``env``: ``raw`` already decoded by the caller (saves a decode). Inside :meth:`batch`
        nothing is committed until the batch ends."""
        with self.db.lock:
            if self._batch is None:
                self.refresh_trust()
            self.stats.bytes += len(raw)
            env, oid, error = (env, env.id, "") if env is not None else self._decode(raw)
            if oid is None:
                self.stats.received("unknown", "malformed")
                self.stats.failed("malformed")
                return Ingested(None, "malformed")
            kind = env.kind if env is not None else ""
            if kind == "receipt":
                self.stats.received(kind, "ignored")
                return Ingested(None, "ignored")
            known = self.db.object_state(oid)
            if known is not None and (known["status"] != "rejected" or known["verified"]):
                return self._duplicate(oid, kind, known["status"])
            if env is None:
                self.stats.failed("malformed")
                self.stats.received(kind or "unknown", UNVERIFIED)
                return Ingested(None, UNVERIFIED, reason=error)
            verified = None
            try:
                verified = self._verify(env, now)
            except VerifyError as exc:
                error = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
                self.stats.failed(exc.reason)
                if not exc.final:  # time or manifest version only: no row, no final receipt
                    self.stats.received(kind, NOT_FINAL)
                    return Ingested(None, NOT_FINAL, reason=error)
                if exc.reason in COPY_DEPENDENT:  # this copy's fault, not the signer's
                    self.stats.received(kind, UNVERIFIED)
                    return Ingested(None, UNVERIFIED, reason=error)
            if known is not None and verified is None:
                return self._duplicate(oid, kind, known["status"])
            if self._batch is not None:  # the batch's write lock is held since before `known`
                self._keep(oid, env, raw, now, verified, error)
            else:
                with self.db.write():
                    self._sealed.clear()
                    stale = tries > 1 and self.db.trust_marker() != self._marker
                    raced = None if stale else self._raced(oid, verified is not None)
                    if raced is None and not stale:
                        self._keep(oid, env, raw, now, verified, error)
                if stale:  # verified against trust another process has changed since: again
                    self._relearn()
                    return self.ingest_verified(raw, now, env=env, tries=tries - 1)
                if raced is not None:
                    return self._duplicate(oid, kind, raced)
            state = self.db.object_state(oid)
            assert state is not None
            self.stats.received(kind or "unknown", state["status"])
            return Ingested(self.db.latest_receipt(oid), state["status"], verified)

    def _keep(
        self, oid: bytes, env: Envelope, raw: bytes, now: int, v: Verified | None, error: str
    ) -> None:
        """Inside the write: store the object and log what it does."""
        self.db.put_object(self._object_row(oid, env, raw, now, v is not None))
        if v is None:  # correctly signed, breaks a hard rule: final, receipted
            self._record(oid, env.kind, env.tps, env.election, "rejected", error, now)
        else:
            self._handle(v, now)

    def _raced(self, oid: bytes, ok: bool) -> str | None:
        """Inside the write: the status another process gave ``oid`` since we looked (several
        central processes share one database), when that makes this copy a duplicate."""
        known = self.db.object_state(oid)
        if known is None or (known["status"] == "rejected" and not known["verified"] and ok):
            return None
        return str(known["status"])

    @staticmethod
    def _decode(raw: bytes) -> tuple[Envelope | None, bytes | None, str]:
        try:
            env = decode_envelope(raw)
        except ProtocolError as exc:
            return None, loose_id(raw), f"malformed: {exc}"
        return env, env.id, ""

    @staticmethod
    def _object_row(oid: bytes, env: Envelope | None, raw: bytes, now: int, ok: bool) -> Row:
        return {
            "id": oid,
            "kind": env.kind if env else "",
            "tps": env.tps if env else "",
            "election": env.election if env else "",
            "size": len(raw),
            "raw": raw,
            "received": now,
            "verified": int(ok),
        }

    def _duplicate(self, oid: bytes, kind: str, status: str) -> Ingested:
        self.stats.duplicates += 1
        self.stats.received(kind or "unknown", "duplicate")
        return Ingested(self.db.latest_receipt(oid), status)

    def _handle(self, v: Verified, now: int) -> None:
        if v.kind == "result":
            self._on_result(v, now)
        elif v.kind == "endorsement":
            self._on_endorsement(v, now)
        elif v.kind == "void":
            self._on_void(v, now)
        elif v.kind in trail.TRAIL_KINDS:
            if trail.handle(self.db, self._record, v, now) and v.kind == "admission":
                self._learn(v)  # the witness's later objects verify without the chain
        else:
            self._on_trust_object(v, now)

    def _record(
        self, oid: bytes, kind: str, tps: str, election: str, status: str, reason: str, now: int
    ) -> None:
        """Append a log entry for ``oid`` with a signed receipt, and set its status. A result
        whose photos are all here carries ``photos_complete`` in every later receipt."""
        done = False
        if kind in PHOTO_KINDS and status != "rejected":
            photos = self.db.photos_of(oid)
            done = bool(photos) and all(p["present"] for p in photos)
        reason = reason[:MAX_REASON]
        index, head = self.db.log_head()
        prev = head or LOG_GENESIS
        digest = log_entry_hash(prev, index, oid, status, reason, now, done)
        body = ReceiptBody(oid, kind, tps, election, status, reason, index, prev, digest, done)
        receipt = seal(
            "receipt",
            body,
            self.authority.issuer_key,
            now,
            self._chain,
            check=False,
        )
        raw = receipt.encode()
        entry = {
            "idx": index,
            "object": oid,
            "status": status,
            "reason": reason,
            "server_time": now,
            "prev": prev,
            "hash": digest,
            "photos": int(done),
        }
        self.db.append_log(entry, receipt.id, raw)
        self._sealed[index] = (raw, receipt)
        self.db.set_status(oid, status, reason, done)
        self.version += 1

    # --- per kind -----------------------------------------------------------------------------
    def _revoked(self, v: Verified, now: int) -> bool:
        """The signer is revoked for this object: it was signed at or after the stated
        compromise time (``TrustStore`` sets ``revoked`` only then)."""
        return v.revoked is not None

    def _on_result(self, v: Verified, now: int) -> None:
        body = v.envelope.body
        assert isinstance(body, ResultBody) and v.signer.cert is not None
        assert v.signer.cert_envelope is not None
        form = body.form
        self.db.put_result(
            {
                "id": v.id,
                "tps": form.tps,
                "election": form.election,
                "revision": form.revision,
                "supersedes": form.supersedes,
                "signer": v.signer.key_id,
                "signer_serial": v.signer.cert.serial,
                "issuer": v.signer.cert_envelope.signer,
                "signer_label": v.signer.cert.label,
                "received": now,
                "votes": dict(form.votes),
                "valid": form.valid,
                "invalid": form.invalid,
                "warnings": sorted(set(body.warnings) | set(v.warnings)),
            },
            [
                {
                    "result": v.id,
                    "sheet": p.sheet,
                    "sha256": p.sha256,
                    "size": p.size,
                    "type": p.type,
                }
                for p in body.photos
            ],
        )
        void = self.db.void_for(v.id)
        reason = "revoked-signer" if self._revoked(v, now) else ""
        if void is not None:
            self._record(v.id, "result", form.tps, form.election, "voided", void["reason"], now)
        elif not reason and form.supersedes is not None and not self.db.result_key(form.supersedes):
            self._record(v.id, "result", form.tps, form.election, "held", HELD_REASON, now)
        else:
            reason = reason or self._supersede_problem(v.id)
            if reason:
                self._record(v.id, "result", form.tps, form.election, "rejected", reason, now)
            else:
                self._settle_slot(form.tps, form.election, now, first=v.id)
        self._release_held(v.id, now)

    def _supersede_problem(self, rid: bytes) -> str:
        row = self.db.result_key(rid)
        sup = self.db.supersedes_of(rid)
        if row is None or sup is None:
            return ""
        prev = self.db.result_key(sup)
        key = (prev["tps"], prev["election"], prev["revision"]) if prev else None
        problem = supersede_problem(row["tps"], row["election"], row["revision"], key)
        return f"invalid-content: revision-supersedes: {problem}" if problem else ""

    def _release_held(self, rid: bytes, now: int) -> None:
        """The result ``rid`` arrived: revisions held because they supersede it are judged now
        (issue 11, item 8: an unresolved ``supersedes`` is held, never counted blind)."""
        for r in self.db.held_naming(rid):
            problem = self._supersede_problem(r["id"])
            if problem:
                self._record(r["id"], "result", r["tps"], r["election"], "rejected", problem, now)
            else:
                self._settle_slot(r["tps"], r["election"], now, first=r["id"])

    def _on_void(self, v: Verified, now: int) -> None:
        """The KPU voids a result: never counted, kept as evidence, its receipt says voided.
        A void for a result not yet here is applied when the result arrives."""
        body = v.envelope.body
        assert isinstance(body, VoidBody)
        reason = f"voided by the KPU: {body.reason}"[:MAX_REASON]
        self.db.put_void({"id": v.id, "result": body.result, "reason": reason, "received": now})
        self._record(v.id, "void", body.tps, body.election, "accepted", "", now)
        target = self.db.result_key(body.result)
        state = self.db.object_state(body.result)
        if target is None or state is None or state["status"] in ("voided", "rejected"):
            return
        self._record(body.result, "result", target["tps"], target["election"], "voided",
                     reason, now)  # fmt: skip
        self._settle_slot(target["tps"], target["election"], now, first=None)

    def _settle_slot(self, tps: str, election: str, now: int, first: bytes | None) -> None:
        """Apply the counting rule to one TPS and election; log every status that changed."""
        rows = self.db.slot(tps, election)
        statuses = resolve_slot((r["id"], r["revision"]) for r in rows)
        for r in sorted(rows, key=lambda r: r["id"] != first):
            status = statuses[r["id"]]
            if status != r["status"]:
                self._record(r["id"], "result", tps, election, status, SLOT_REASONS[status], now)

    def _on_endorsement(self, v: Verified, now: int) -> None:
        body = v.envelope.body
        assert isinstance(body, EndorsementBody) and v.signer.cert is not None
        assert v.signer.cert_envelope is not None
        self.db.put_endorsement(
            {
                "id": v.id,
                "result": body.result,
                "tps": body.tps,
                "election": body.election,
                "signer": v.signer.key_id,
                "signer_serial": v.signer.cert.serial,
                "issuer": v.signer.cert_envelope.signer,
                "role": v.signer.role,
                "statement": body.statement,
                "received": now,
            }
        )
        reason = "revoked-signer" if self._revoked(v, now) else ""
        target = self.db.result_key(body.result)
        if (
            not reason
            and target
            and (target["tps"], target["election"])
            != (
                body.tps,
                body.election,
            )
        ):
            reason = "invalid-content: the endorsed result is for another TPS or election"
        status = "rejected" if reason else "accepted"
        self._record(v.id, "endorsement", body.tps, body.election, status, reason, now)

    def _on_trust_object(self, v: Verified, now: int) -> None:
        if self._revoked(v, now):
            self._record(v.id, v.kind, "", "", "rejected", "revoked-signer", now)
            return
        changed = self._learn(v)
        stale = not changed and v.kind in ("manifest", "revocation")
        self._record(v.id, v.kind, "", "", "accepted", "stale" if stale else "", now)
        if v.kind == "revocation":
            self._apply_revocations(now)

    def _revocation_for(self, signer: bytes, serial: int, issuer: bytes) -> RevokedEntry | None:
        rev = self.trust.revocation
        if rev is None:
            return None
        found = rev.revokes(serial, signer)
        issuer_cert = self.trust.certificate_for(issuer)
        if found is None and issuer_cert is not None:
            found = rev.revokes(issuer_cert.serial, issuer)
        return found

    def _signed_at(self, oid: bytes) -> int:
        state = self.db.object_state(oid)
        assert state is not None
        return decode_envelope(bytes(state["raw"])).created

    def _apply_revocations(self, now: int) -> None:
        """Flag results and endorsements signed at or after their signer's compromise time
        (the revocation's ``since``, else its time), whenever they were received; results
        signed before it stand (issue 11, item 8)."""
        slots = set()
        for r in self.db.live_results():
            entry = self._revocation_for(r["signer"], r["signer_serial"], r["issuer"])
            if entry is not None and entry.covers(self._signed_at(r["id"])):
                self._record(
                    r["id"], "result", r["tps"], r["election"], "rejected", "revoked-signer", now
                )
                slots.add((r["tps"], r["election"]))
        for tps, election in sorted(slots):
            self._settle_slot(tps, election, now, first=None)
        for e in self.db.accepted_endorsements():
            entry = self._revocation_for(e["signer"], e["signer_serial"], e["issuer"])
            if entry is not None and entry.covers(self._signed_at(e["id"])):
                self._record(
                    e["id"],
                    "endorsement",
                    e["tps"],
                    e["election"],
                    "rejected",
                    "revoked-signer",
                    now,
                )

    # --- queries ------------------------------------------------------------------------------
    def receipts_after(self, index: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        """(log index, receipt bytes) of the log entries after ``index``, in order: the one
        outbox from which the central node takes every receipt it serves."""
        with self.db.lock:
            return self.db.receipts_after(index, limit)

    def sealed_receipt(self, index: int, raw: bytes) -> Envelope | None:
        """The receipt of log entry ``index`` as this process sealed it in its latest write,
        when ``raw`` is exactly its bytes (else None: decode ``raw``)."""
        found = self._sealed.get(index)
        return found[1] if found is not None and found[0] == raw else None

    def receipt_for(self, object_id: bytes) -> bytes | None:
        """The latest receipt issued for ``object_id``."""
        with self.db.lock:
            return self.db.latest_receipt(object_id)

    def note_blob(self, sha256: bytes, now: int) -> list[bytes]:
        """A photo blob arrived (the caller checked its hash). Every result whose three photos
        are now all here gets a new receipt (same status and reason, ``photos_complete`` set), so
        the devices that carry it learn they may stop carrying the photos. Returns those
        receipts."""
        if len(sha256) != 32:
            raise ValueError("a blob is named by its 32-byte SHA-256")
        out: list[bytes] = []
        with self.db.write():
            self._sealed.clear()
            self.db.add_blob(sha256)
            self.version += 1
            for r in self.db.results_naming(sha256):
                if r["status"] == "rejected" or r["photos"]:
                    continue
                if not all(p["present"] for p in self.db.photos_of(r["id"])):
                    continue
                self._record(r["id"], r["kind"], r["tps"], r["election"], r["status"],
                             r["reason"] or "", now)  # fmt: skip
                receipt = self.db.latest_receipt(r["id"])
                if receipt is not None:
                    out.append(receipt)
        return out

    def verify_log(self) -> None:
        """Recompute the whole chain and check every receipt; raise LogError at the first fault."""
        issuer_public = self.authority.issuer_key.public
        prev, expected = LOG_GENESIS, 0
        with self.db.lock:
            for row in self.db.iter_log():
                index = row["idx"]
                if index != expected:
                    raise LogError(expected, "entry missing")
                if row["prev"] != prev:
                    raise LogError(index, "does not commit to the previous entry")
                digest = log_entry_hash(
                    prev, index, row["object"], row["status"], row["reason"], row["server_time"],
                    bool(row["photos"]),
                )  # fmt: skip
                if digest != row["hash"]:
                    raise LogError(index, "hash does not match the entry")
                _check_receipt(index, row, issuer_public)
                prev, expected = digest, expected + 1

    def status(self) -> dict[str, Any]:
        """The /api/status view: progress, tally, conflicts, revoked results, log head."""
        with self.db.lock:
            return views.status(self.db, self.trust)

    def tps_detail(self, tps: str) -> dict[str, Any]:
        """Everything known about one TPS, for the dashboard's TPS page."""
        with self.db.lock:
            return views.tps_detail(self.db, self.trust, tps)

    def metrics(self) -> str:
        """Prometheus text exposition."""
        with self.db.lock:
            return self.stats.render(self.db)

    def enroll(self, code: str, public_key: bytes, now: int, client: str) -> EnrollResult:
        """See :meth:`Enrollment.enroll`; counted in the metrics."""
        try:
            result = self.enrollment.enroll(code, public_key, now, client)
        except Exception as exc:
            self.stats.enrolled(getattr(exc, "reason", "error"))
            raise
        self.stats.enrolled("ok")
        return result


def _check_receipt(index: int, row: Row, issuer_public: bytes) -> None:
    raw = row["receipt"]
    if raw is None:
        raise LogError(index, "no receipt")
    try:
        env = decode_envelope(raw)
    except ProtocolError as exc:
        raise LogError(index, f"receipt does not decode: {exc}") from exc
    body = env.body
    if not isinstance(body, ReceiptBody) or not verify_signature(
        issuer_public, signing_message("receipt", env.content), env.signature
    ):
        raise LogError(index, "receipt is not signed by the issuer")
    fields = (body.log_index, body.log_prev, body.log_hash, body.object, body.status, body.reason,
              body.photos_complete)  # fmt: skip
    want = (index, row["prev"], row["hash"], row["object"], row["status"], row["reason"],
            bool(row["photos"]))  # fmt: skip
    if fields != want or env.created != row["server_time"]:
        raise LogError(index, "receipt does not match the entry")
