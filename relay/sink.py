"""Where a node sends what it accepts: the role a node plays, passed in (not branches).

A device (phone, relay, gateway) is a :class:`Carrier`: it verifies each object, keeps what is
in its scope and carries it on. The central server passes its own sink
(:class:`estafet.central.outbox.CentralSink`), which ingests each object into ``central.db``
and fills the node store from the central ingest log. :class:`~.accept.Sink` is the whole
interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from aiohttp import web

from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import Envelope

from .accept import Outcome, Sink, accept_one
from .store import StoreDB


class Carrier:
    """A device: verify, keep what is in scope, carry it on; serve the offline recap."""

    reaches_centre = False
    wants_every_photo = False

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
        return accept_one(
            sdb, trust, raw, peer=peer, origin=origin, scope=scope, now=now, decoded=decoded
        )

    def batch(
        self, sdb: StoreDB, envs: Sequence[Envelope | None], now: int
    ) -> AbstractContextManager[None]:
        return nullcontext()  # the store's own transaction is the whole batch

    def blob_arrived(self, sdb: StoreDB, sha256: bytes, now: int) -> bool:
        return False

    def add_routes(self, app: web.Application) -> None:
        from .recap import add_recap_routes

        add_recap_routes(app)


CARRIER: Sink = Carrier()
