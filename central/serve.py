"""The central server as a node: the same /v1/ API (so a gateway simply syncs with it), with
:meth:`Central.ingest` hooked into every object that arrives and the KPU routes added.

The node part keeps its store in ``<home>/node/`` and is seeded with the issuer certificate,
the manifest and the revocation list, so every peer that syncs with the centre receives them.
Receipts made by ingest are stored there as ordinary objects and travel back through the mesh.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from estafet.relay.accept import accept_one
from estafet.relay.errors import ConfigError
from estafet.relay.home import NodeConfig
from estafet.relay.node import Node

from .authority import load_authority
from .ingest import Central
from .web import add_central_routes

CENTRAL: web.AppKey[Central] = web.AppKey("estafet.central", Central)
CENTRAL_QUOTA_MB = 1024 * 1024  # a kabupaten's photos fit many times over; disk is the limit


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return ctx


def store_issued(node: Node, central: Central, now: int) -> None:
    """Store the receipts ``central`` issued since it was last asked in the central node's
    store (blocking: the store's writer thread, or a CLI that owns the store)."""
    sdb = node.store.sync_db()
    for raw in central.take_issued():
        sdb.put(node.trust.verify(raw, now), "local", None, now)


def open_central(
    home: Path,
    passphrase: str,
    listen: str,
    *,
    tls: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[Node, Central]:
    """Load the authority and build the central node (not started yet)."""
    authority = load_authority(home, passphrase)
    central = Central(home, authority)
    config = NodeConfig(
        listen=listen,
        mdns=False,
        beacon=False,
        scope="",
        quota_mb=CENTRAL_QUOTA_MB,
        name="KPU central",
    )

    def ingest(raw: bytes, now: int) -> tuple[bytes | None, str]:
        """Central.ingest, then store every receipt it issued in the node's store (on the
        writer thread, where the node calls this hook), so the receipts of objects whose status
        the push changed travel back too."""
        answer = central.ingest(raw, now)
        store_issued(node, central, now)
        return answer

    node = Node(
        home / "node",
        config,
        authority.issuer_key,
        authority.trust.root_public,
        hook=ingest,
        clock=clock,
    )
    node.ssl_context = tls
    sdb = node.store.sync_db()
    now = int(clock())
    for env in (authority.revocation_env, authority.issuer_cert, authority.manifest_env):
        accept_one(sdb, node.trust, env.encode(), peer="", origin="local", scope="", now=now)

    def on_blob(sha256: bytes, now: int) -> list[bytes]:
        central.note_blob(sha256, now)
        return central.take_issued()  # the photos-complete receipts; the node stores them

    node.on_blob = on_blob

    def routes(app: web.Application) -> None:
        app[CENTRAL] = central
        add_central_routes(app, CENTRAL, clock=lambda: int(clock()))

    node.extra_routes.append(routes)
    return node, central
