"""Verify-then-store: the one path by which objects from outside enter a node's store.

Runs on the store's writer thread (so the trust store, which learns certificates, manifests and
revocations as they arrive, is only ever touched by one thread). Objects are taken in fetch
order (revocations, certificates, manifest, receipts, results, endorsements) so a batch can
carry the certificates its results need. Each object ends with one :class:`Outcome`; nothing
that fails verification or scope is stored, and every refusal is logged as an event with its
reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import TrustStore, Verified
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import FETCH_PRIORITY, MAX_CHAIN, Envelope, decode_envelope

from .errors import RelayError
from .store import StoreDB, in_scope, object_region, receipt_refusal

if TYPE_CHECKING:  # the sink's extra routes only: verifying and storing need no HTTP
    from aiohttp import web

log = logging.getLogger("estafet.accept")


@dataclass(frozen=True, slots=True)
class Outcome:
    id: bytes | None
    status: str  # stored | duplicate | rejected | out-of-scope | deferred (budget spent)
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
    for kind in ("revocation", "certificate", "manifest", "admission"):
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
    sink: Sink | None = None,
    spend: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Verify and store ``raws`` (through ``sink``: a device's when None); see the module
    docstring. Blocking (writer thread).

    ``spend``: called before each verification (the peer's signature-check budget,
    :mod:`.budgets`); once it answers False nothing more is verified and every object not yet
    judged is answered ``deferred`` (what was stored before stays stored)."""
    judge = accept_one if sink is None else sink.accept

    def accept(i: int) -> Outcome:
        if spend is not None and not spend():
            raise _Spent
        return judge(sdb, trust, raws[i], peer=peer, origin=origin, scope=scope, now=now,
                     decoded=envs[i])  # fmt: skip

    envs = [_decoded(raw) for raw in raws]  # decoded once, for the order and the verification
    order = sorted(range(len(raws)), key=lambda i: _priority_of(envs[i]))
    out: list[Outcome | None] = [None] * len(raws)
    # one transaction for the batch (each object's own is a savepoint inside it): one fsync per
    # batch instead of one or two per object, which bounded a batch at a few hundred per second.
    # The sink's batch (the centre's group commit in central.db) commits inside it, first.
    # The caller answers (or marks objects held) only after this returns, i.e. after the commit.
    role = nullcontext() if sink is None else sink.batch(sdb, [envs[i] for i in order], now)
    with sdb.db.atomic(), role, contextlib.suppress(_Spent):
        for i in order:
            out[i] = accept(i)
        # a certificate may need another of the same kind that sorted after it (a device's
        # certificate before the issuer's, by id): again while the batch teaches new signers,
        # at most once per link of the longest chain (more passes cannot teach anything)
        for _ in range(MAX_CHAIN):
            again = [i for i in order if _unknown_signer(out[i])]
            for i in again:
                out[i] = accept(i)
            if all(_unknown_signer(out[i]) for i in again):
                break
    return [o or _deferred(envs[i]) for i, o in enumerate(out)]


class _Spent(RelayError):
    """The peer's signature-check budget ran out in the middle of a batch (never escapes)."""


def _deferred(env: Envelope | None) -> Outcome:
    return Outcome(None if env is None else env.id, "deferred",
                   "signature-check budget spent: send it again later", final=False)  # fmt: skip


def _unknown_signer(o: Outcome | None) -> bool:
    return o is not None and o.status == "rejected" and o.reason.startswith("unknown-signer")


def accept_one(
    sdb: StoreDB,
    trust: TrustStore,
    raw: bytes,
    *,
    peer: str,
    origin: str,
    scope: str,
    now: int,
    decoded: Envelope | None = None,
) -> Outcome:
    """Verify and store one object. ``decoded``: ``raw`` already decoded (saves a decode)."""
    try:
        v: Verified = trust.verify(raw if decoded is None else decoded, now, allow_revoked=True)
    except VerifyError as exc:
        oid = _id_of(raw)
        sdb.event(now, "warning", peer, f"rejected {exc.reason}: {exc.detail}", oid)
        log.warning("rejected object from %s: %s", peer or "local", exc)
        return Outcome(oid, "rejected", str(exc), final=exc.final)
    if refusal := receipt_refusal(v):
        return Outcome(v.id, "out-of-scope", refusal)
    region = object_region(v)
    if not in_scope(region, scope):
        return Outcome(v.id, "out-of-scope", f"{region} is outside this node's scope {scope}")
    return store_verified(sdb, trust, v, origin=origin, peer=peer, now=now)


def store_verified(
    sdb: StoreDB,
    trust: TrustStore,
    v: Verified,
    *,
    origin: str,
    peer: str,
    now: int,
    reason: str = "",
) -> Outcome:
    """Store an object that verified; learn it if it is a trust object."""
    stored = sdb.put(v, origin, peer or None, now)
    if stored.new and v.kind in ("certificate", "manifest", "revocation", "admission"):
        trust.learn(v)
    return Outcome(v.id, "stored" if stored.new else "duplicate", reason, sdb.receipt_raw(v.id))


def _id_of(raw: bytes) -> bytes | None:
    try:
        return decode_envelope(raw).id
    except ProtocolError:
        return None


class Sink(Protocol):
    """The role of a node. Methods run on the store's writer thread unless said otherwise."""

    @property
    def reaches_centre(self) -> bool:
        """True when this node is itself the centre (always advertised as central-reaching)."""
        ...

    @property
    def wants_every_photo(self) -> bool:
        """True when every photo of every held result is wanted, complete or not."""
        ...

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
        """Take one object from outside (inside the batch's store transaction)."""
        ...

    def batch(
        self, sdb: StoreDB, envs: Sequence[Envelope | None], now: int
    ) -> AbstractContextManager[None]:
        """Around the :meth:`accept` calls of one batch (``envs``: its objects decoded, in the
        order they will be taken), inside the store's transaction: the centre's one
        transaction for the whole batch, committed on leaving, before the store's own."""
        ...

    def blob_arrived(self, sdb: StoreDB, sha256: bytes, now: int) -> bool:
        """A photo blob was stored (hash checked). True when the store changed because of it."""
        ...

    def add_routes(self, app: web.Application) -> None:
        """Add this role's HTTP routes to the node's app (event loop, before it starts)."""
        ...
