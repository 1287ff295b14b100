"""The central server as a node: the same /v1/ API (so a gateway simply syncs with it), with
a :class:`~.outbox.CentralSink` passed in (every arriving object goes to :meth:`Central.ingest`)
and the KPU routes added.

The node part keeps its store in ``<home>/node/`` and is seeded with the issuer certificate,
the manifest and the revocation list, so every peer that syncs with the centre receives them.
Receipts are copied there from the central ingest log (see :mod:`.outbox`) and travel back
through the mesh as ordinary objects.
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
from .outbox import CentralSink
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

    def routes(app: web.Application) -> None:
        app[CENTRAL] = central
        add_central_routes(app, CENTRAL, clock=lambda: int(clock()))

    sink = CentralSink(central, routes)
    node = Node(
        home / "node",
        config,
        authority.issuer_key,
        authority.trust.root_public,
        sink=sink,
        clock=clock,
        ssl_context=tls,
    )
    node.replica.cert = authority.issuer_cert  # what the centre proves its key with (auth)
    sdb = node.store.sync_db()
    now = int(clock())
    for env in (authority.revocation_env, authority.issuer_cert, authority.manifest_env):
        accept_one(sdb, node.trust, env.encode(), peer="", origin="local", scope="", now=now)
    sink.catch_up(sdb)  # receipts a crash left behind in the log
    return node, central
