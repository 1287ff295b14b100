"""Where a node sends what it accepts: the role a node plays, passed in (not branches).

A device (phone, relay, gateway) is a :class:`Carrier`: it verifies each object, keeps what is
in its scope and carries it on. The central server passes its own sink
(:class:`estafet.central.outbox.CentralSink`), which ingests each object into ``central.db``
and fills the node store from the central ingest log. :class:`Sink` is the whole interface.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import Envelope

from .accept import Outcome, accept_one
from .store import StoreDB


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

    def blob_arrived(self, sdb: StoreDB, sha256: bytes, now: int) -> bool:
        """A photo blob was stored (hash checked). True when the store changed because of it."""
        ...

    def add_routes(self, app: web.Application) -> None:
        """Add this role's HTTP routes to the node's app (event loop, before it starts)."""
        ...


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

    def blob_arrived(self, sdb: StoreDB, sha256: bytes, now: int) -> bool:
        return False

    def add_routes(self, app: web.Application) -> None:
        from .recap import add_recap_routes

        add_recap_routes(app)


CARRIER = Carrier()
