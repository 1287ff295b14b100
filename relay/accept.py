"""Verify-then-store: the one path by which objects from outside enter a node's store.

Runs on the store's writer thread (so the trust store, which learns certificates, manifests and
revocations as they arrive, is only ever touched by one thread). Objects are taken in fetch
order (revocations, certificates, manifest, receipts, results, endorsements) so a batch can
carry the certificates its results need. Each object ends with one :class:`Outcome`; nothing
that fails verification or scope is stored, and every refusal is logged as an event with its
reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import TrustStore, Verified
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import FETCH_PRIORITY, Envelope, decode_envelope

from .store import StoreDB, in_scope, object_region

log = logging.getLogger("estafet.accept")

IngestHook = Callable[[bytes, int], "tuple[bytes | None, str]"]
"""The central server's hook: given raw object bytes and now, returns (receipt bytes, status)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    id: bytes | None
    status: str  # stored | duplicate | rejected | out-of-scope
    reason: str = ""
    receipt: bytes | None = None
    final: bool = True
    """False for a refusal that depends only on time or manifest version: not the sender's
    fault, so the peer must not be penalised (``VerifyError.final``, issue 11 item 6)."""


def _decoded(raw: bytes) -> Envelope | None:
    try:
        return decode_envelope(raw)
    except ProtocolError:
        return None


def _priority_of(env: Envelope | None) -> int:
    return len(FETCH_PRIORITY) if env is None else FETCH_PRIORITY[env.kind]


def load_trust(sdb: StoreDB, trust: TrustStore, now: int) -> None:
    """Teach ``trust`` the revocations, certificates and manifests held in the store."""
    for kind in ("revocation", "certificate", "manifest"):
        for raw in sdb.raw_by_kind([kind]):
            try:
                trust.learn(trust.verify(raw, now, allow_revoked=True))
            except VerifyError as exc:
                log.warning("stored %s no longer verifies: %s", kind, exc)


def accept_batch(
    sdb: StoreDB,
    trust: TrustStore,
    raws: Sequence[bytes],
    *,
    peer: str,
    origin: str,
    scope: str,
    now: int,
    hook: IngestHook | None = None,
) -> list[Outcome]:
    """Verify and store ``raws``; see the module docstring. Blocking (writer thread)."""
    envs = [_decoded(raw) for raw in raws]  # decoded once, for the order and the verification
    order = sorted(range(len(raws)), key=lambda i: _priority_of(envs[i]))
    out: list[Outcome | None] = [None] * len(raws)
    # one transaction for the batch (each object's own is a savepoint inside it): one fsync per
    # batch instead of one or two per object, which bounded a batch at a few hundred per second.
    # The caller answers (or marks objects held) only after this returns, i.e. after the commit.
    with sdb.db.atomic():
        for i in order:
            out[i] = accept_one(
                sdb, trust, raws[i], peer=peer, origin=origin, scope=scope, now=now, hook=hook,
                decoded=envs[i],
            )  # fmt: skip
    return [o for o in out if o is not None]


def accept_one(
    sdb: StoreDB,
    trust: TrustStore,
    raw: bytes,
    *,
    peer: str,
    origin: str,
    scope: str,
    now: int,
    hook: IngestHook | None = None,
    decoded: Envelope | None = None,
) -> Outcome:
    """Verify and store one object. ``decoded``: ``raw`` already decoded (saves a decode)."""
    receipt: bytes | None = None
    status = ""
    if hook is not None:
        receipt, status = hook(raw, now)
        if receipt is not None:
            _store_receipt(sdb, trust, receipt, now)
    try:
        v: Verified = trust.verify(raw if decoded is None else decoded, now, allow_revoked=True)
    except VerifyError as exc:
        oid = _id_of(raw)
        sdb.event(now, "warning", peer, f"rejected {exc.reason}: {exc.detail}", oid)
        log.warning("rejected object from %s: %s", peer or "local", exc)
        return Outcome(oid, "rejected", str(exc), receipt, final=exc.final)
    region = object_region(v)
    if hook is None and not in_scope(region, scope):
        return Outcome(v.id, "out-of-scope", f"{region} is outside this node's scope {scope}")
    stored = sdb.put(v, origin, peer or None, now)
    if stored.new and v.kind in ("certificate", "manifest", "revocation"):
        trust.learn(v)
    if receipt is None:
        receipt = sdb.receipt_raw(v.id)
    return Outcome(v.id, "stored" if stored.new else "duplicate", status, receipt)


def _store_receipt(sdb: StoreDB, trust: TrustStore, raw: bytes, now: int) -> None:
    v = trust.verify(raw, now)
    sdb.put(v, "local", None, now)


def _id_of(raw: bytes) -> bytes | None:
    try:
        return decode_envelope(raw).id
    except ProtocolError:
        return None
