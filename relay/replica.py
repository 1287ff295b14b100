"""The replica: what a node holds and who it is. Owns the store, the trust store learned from
it, the node's identity (its certificate, role and scope), the reconciler cache, the
fingerprint cache and change notification. No sockets, no aiohttp, no tasks of its own: it is
unit-tested alone over a real SQLite store (``tests/relay/test_replica.py``).

Threads: the store has one writer thread and reader threads. The trust store learns
certificates, manifests, revocations and admissions as they are accepted, so it is only ever
touched on the writer thread (:meth:`Replica.check_certificate` goes there too; ``accept``,
``local`` and ``plenary`` are called there by their callers).

Caches: the responder :class:`~estafet.protocol.reconcile.Reconciler` of a scope is kept while
the store's highest object rowid is unchanged (any stored object raises it); the fingerprint
advertised in mDNS and ``/v1/info`` is kept while the database files' stamp (mtime, size,
inode of the file and its WAL) is unchanged, so a commit by another process (``result
submit`` while the daemon runs) is noticed without waking a reader thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody, Envelope, decode_envelope, encode_envelope
from estafet.protocol.reconcile import Reconciler, fingerprint

from .accept import load_trust
from .auth import AuthError, check_certificate
from .store import Store, StoreDB

MAX_CERTIFICATE = 64 * 1024
"""Bytes of a peer's certificate (with its chain) we are willing to check."""
RECONCILER_CACHE = 16
"""Scopes whose responder is kept (a gateway answers a few village scopes and its own)."""


class Replica:
    """The store and what follows from it. ``role`` and ``scope`` start from the config and
    are taken from the enrolled certificate when the config leaves them open; a replica whose
    sink ``reaches_centre`` is the central server's (role ``central``, every scope).
    ``on_change`` is called after every :meth:`changed` (the node wakes its scheduler)."""

    def __init__(
        self,
        store: Store,
        root_public: bytes,
        clock: Callable[[], float],
        *,
        role: str | None = None,
        scope: str = "",
        reaches_centre: bool = False,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.trust = TrustStore(root_public)
        self.clock = clock
        self.cert: Envelope | None = None
        self.role = role or "node"
        self.scope = scope
        self.on_change = on_change
        self.version = 0
        """Bumped by :meth:`changed`: something was stored (pages and recap key on it)."""
        self._rec_cache: dict[str, tuple[int, Reconciler]] = {}
        self._fp_cache: tuple[tuple[int, ...], bytes] | None = None
        self._load_identity(reaches_centre)

    @classmethod
    def open(
        cls,
        home: Path,
        root_public: bytes,
        clock: Callable[[], float],
        *,
        quota: int,
        role: str | None = None,
        scope: str = "",
        reaches_centre: bool = False,
        on_change: Callable[[], None] = lambda: None,
    ) -> Replica:
        """Open (or create) the store under ``home`` and load what it trusts."""
        store = Store.open(home, int(clock()), quota=quota)
        try:
            return cls(store, root_public, clock, role=role, scope=scope,
                       reaches_centre=reaches_centre, on_change=on_change)  # fmt: skip
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def now(self) -> int:
        return int(self.clock())

    # --- identity -----------------------------------------------------------------------
    def _load_identity(self, reaches_centre: bool) -> None:
        sdb = self.store.sync_db()
        load_trust(sdb, self.trust, self.now())
        cert_id = sdb.get_meta("certificate")
        if cert_id:
            raws = sdb.get_raw([bytes.fromhex(cert_id)])
            if raws:
                self.cert = decode_envelope(raws[0])
        body = self.cert.body if self.cert else None
        if isinstance(body, CertificateBody):
            if self.role == "node":
                self.role = body.role
            if not self.scope and body.scope:
                self.scope = body.scope[0]
        if reaches_centre:
            self.role = "central"
            self.scope = ""

    def own_certificate(self) -> bytes | None:
        """Our certificate (with the issuer's, so a peer that lacks it can check the chain)."""
        if self.cert is None:
            return None
        if self.cert.chain or self.cert.signer == self.trust.root_id:
            return self.cert.encode()
        issuers = [
            c.encode()
            for c in self.trust.certificates()
            if isinstance(c.body, CertificateBody) and c.body.role == "issuer"
        ]
        return encode_envelope(self.cert.content, self.cert.signature, tuple(issuers[:4]))

    async def check_certificate(self, raw: bytes) -> CertificateBody:
        """A peer's certificate, checked on the writer thread (the only one touching trust)."""
        if len(raw) > MAX_CERTIFICATE:
            raise AuthError("certificate too large")
        now = self.now()
        return await self.store.write(lambda _sdb: check_certificate(self.trust, raw, now))

    # --- change notification --------------------------------------------------------------
    def changed(self) -> None:
        """Something was stored: bump :attr:`version` and tell ``on_change``."""
        self.version += 1
        self.on_change()

    # --- reconciliation -----------------------------------------------------------------
    async def reconciler(self, scope: str, *, initiator: bool = False) -> Reconciler:
        """The cached responder over ``scope`` (stateless, shared by every incoming session),
        or with ``initiator`` a fresh one over the same items: an initiator keeps per-session
        state, and our own sessions (scheduler, ``sync_now``) may run at the same time."""

        def build(sdb: StoreDB) -> tuple[int, list[tuple[int, bytes]] | None]:
            version = int(
                sdb.db.execute("SELECT coalesce(max(rowid), 0) FROM objects").fetchone()[0]
            )
            cached = self._rec_cache.get(scope)
            if cached and cached[0] == version:
                return version, None
            return version, sdb.items(scope)

        version, items = await self.store.read(build)
        cached = self._rec_cache.get(scope)
        if items is None and cached is not None:
            return cached[1].session() if initiator else cached[1]
        if items is None:  # evicted from the cache meanwhile
            items = await self.store.read(StoreDB.items, scope)
        rec = Reconciler(items)
        self._rec_cache[scope] = (version, rec)
        if len(self._rec_cache) > RECONCILER_CACHE:
            self._rec_cache.pop(next(iter(self._rec_cache)))
        return rec.session() if initiator else rec

    async def store_fingerprint(self) -> bytes:
        """The fingerprint of our scope's items (advertised in mDNS and /v1/info, a hint only).
        Kept while the database files are unchanged, checked with a stat on this thread: the
        mDNS refresh every 10 s otherwise woke a reader thread (and traded the GIL) in an idle
        daemon. Any commit, ours or another process's (``result submit``), changes the stamp."""
        stamp = self.store_stamp()
        if self._fp_cache is not None and self._fp_cache[0] == stamp:
            return self._fp_cache[1]
        items = await self.store.read(StoreDB.items, self.scope)
        fp = fingerprint(items)
        self._fp_cache = (stamp, fp)  # stamped before reading: never older than its stamp
        return fp

    def store_stamp(self) -> tuple[int, ...]:
        """mtime, size and inode of the database file and its WAL (zeros for a missing one)."""
        out: list[int] = []
        for path in (self.store.path, self.store.path.with_name(self.store.path.name + "-wal")):
            try:
                st = path.stat()
                out += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                out += [0, 0, 0]
        return tuple(out)
