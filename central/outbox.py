"""The central server's role on its node: one outbox of receipts, the central ingest log.

Theory of operation
-------------------
``central.db`` (the hash-chained ingest log) is the only source of receipts. Every object
pushed to the central node goes to :meth:`Central.ingest_verified` (verified once, there, and
committed in ``central.db``); the node store then takes the verified object (so gateways
reconcile against it) and *catches up*: it copies every receipt of the log past its high-water
mark (``central_log_hwm`` in the node store's meta table) and moves the mark, in the node
store's transaction. The catch-up also runs when a photo arrives and when the node opens.

A batch of objects arriving (an ``objects/put`` push, or a batch pulled in a sync session) is
one transaction of ``central.db`` (:meth:`CentralSink.batch` around :meth:`Central.batch`: group
commit, one fsync per batch); the catch-up runs once, after that commit, inside the node store's
transaction for the same batch, and the pusher is answered only after both committed. The object
arrives decoded (by ``accept_batch``) and is decoded and verified once more nowhere: the central
ingest verifies it, the node store takes the central's verdict, and the catch-up takes the
receipt envelopes the ingest just sealed instead of decoding their bytes.

A crash at any instant loses no receipt: ``central.db`` commits first, the node store's copy and
mark commit together after it, and a mark left behind by a crash is caught up at the next start
(copying a receipt twice is harmless: objects are keyed by id). Receipts of *other* objects whose
status an ingest changed (a conflict, a superseded revision, a revoked signer) travel the same
way as the pushed object's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from aiohttp import web

from estafet.crypto.trust import Signer, TrustStore, Verified
from estafet.protocol.objects import Envelope, decode_envelope
from estafet.relay.accept import Outcome, accept_one, store_verified
from estafet.relay.store import StoreDB, receipt_refusal

from .ingest import NOT_FINAL, UNVERIFIED, Central

HWM = "central_log_hwm"
CATCH_UP_BATCH = 1000


class CentralSink:
    """The :class:`estafet.relay.sink.Sink` of the central node."""

    reaches_centre = True
    wants_every_photo = True

    def __init__(self, central: Central, routes: Callable[[web.Application], None]) -> None:
        self.central = central
        self._routes = routes
        issuer = central.authority.issuer_key
        cert = central.authority.issuer_cert
        # our own receipts, read from our own log: signed by the issuer key we hold
        self._signer = Signer(issuer.id, issuer.public, "issuer", None, cert)
        self._in_batch = False

    @contextmanager
    def batch(self, sdb: StoreDB, envs: Sequence[Envelope | None], now: int) -> Iterator[None]:
        """One central.db transaction for the whole batch, then the catch-up (see the module
        docstring); on an exception neither happens and the node store rolls back too."""
        with self.central.batch(envs, now):
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False
        self.catch_up(sdb)

    def accept(
        self,
        sdb: StoreDB,
        trust: TrustStore,
        raw: bytes,
        *,
        decoded: Envelope | None,
        peer: str,
        origin: str,
        scope: str,
        now: int,
    ) -> Outcome:
        done = self.central.ingest_verified(raw, now, env=decoded)
        if not self._in_batch:
            self.catch_up(sdb)
        if done.verified is not None:
            out = store_verified(
                sdb, trust, done.verified, origin=origin, peer=peer, now=now, reason=done.status
            )
            return replace(out, receipt=done.receipt or out.receipt)
        if done.status == "ignored":  # a receipt echoed back: ours, kept as a device would
            return accept_one(sdb, trust, raw, peer=peer, origin=origin, scope="", now=now,
                              decoded=decoded)  # fmt: skip
        oid = decoded.id if decoded is not None else None
        if done.status == NOT_FINAL:  # time or manifest version only: not the sender's fault
            return Outcome(oid, "rejected", done.reason or done.status, None, final=False)
        if done.status == UNVERIFIED:  # this copy's own fault: refused, unsigned, nothing kept
            return Outcome(oid, "rejected", done.reason or done.status, None)
        if done.status in ("malformed", "rejected") or oid is None:
            return Outcome(oid, "rejected", done.status, done.receipt)
        # an id the log already holds: a device may still lack the object (pruned or lost)
        out = accept_one(sdb, trust, raw, peer=peer, origin=origin, scope="", now=now,
                         decoded=decoded)  # fmt: skip
        return replace(out, reason=done.status, receipt=done.receipt or out.receipt)

    def blob_arrived(self, sdb: StoreDB, sha256: bytes, now: int) -> bool:
        if not self.central.note_blob(sha256, now):
            return False  # no receipt issued (two photos of three); leftovers wait for the next
        return self.catch_up(sdb) > 0

    def add_routes(self, app: web.Application) -> None:
        self._routes(app)

    def catch_up(self, sdb: StoreDB) -> int:
        """Copy every receipt of the log past the node store's mark into the node store and
        move the mark, in one transaction. Returns how many were copied. Blocking."""
        mark = int(sdb.get_meta(HWM) or -1)
        rows = self.central.receipts_after(mark, CATCH_UP_BATCH)
        if not rows:
            return 0  # nothing new (two photos of three): no transaction, no fsync
        copied = 0
        with sdb.db.atomic():
            while rows:
                for index, raw in rows:
                    env = self.central.sealed_receipt(index, raw) or decode_envelope(raw)
                    v = Verified(env, self._signer)
                    if not receipt_refusal(v):  # a trust object's receipt stays here
                        sdb.put(v, "local", None, v.envelope.created)
                    mark = index
                copied += len(rows)
                rows = self.central.receipts_after(mark, CATCH_UP_BATCH)
            sdb.set_meta(HWM, str(mark))
        return copied
