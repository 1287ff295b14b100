"""Helpers to run real nodes in-process on loopback, enrolled in a test World."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import aiohttp

from estafet.crypto.keys import SigningKey
from estafet.protocol.objects import Envelope
from estafet.relay.accept import Sink
from estafet.relay.auth import HEADER
from estafet.relay.client import HttpPeerClient
from estafet.relay.enrollment import Materials, install
from estafet.relay.home import Home, NodeConfig
from estafet.relay.node import Node
from estafet.relay.sink import CARRIER
from tests.kit import World

_counter = itertools.count()


def enroll(world: World, home: Path, key: SigningKey, cert: Envelope) -> None:
    home.mkdir(parents=True, exist_ok=True)
    Home(home).create_key(None)  # replaced below: tests use the world's seeded keys
    from estafet.crypto.keyfile import plain_key
    from estafet.relay.home import write_private

    write_private(Home(home).key_file, plain_key(key))
    install(
        home,
        key,
        Materials(
            certificate=cert.encode(),
            issuer_certificate=world.issuer_cert.encode(),
            root_public=world.root.public,
            manifest=world.manifest_env.encode(),
            revocation=None,
        ),
        None,
        now=world.now,
    )


class Clock:
    """A settable clock starting at the world's time (nodes never read the real one)."""

    def __init__(self, now: int) -> None:
        self.t = float(now)

    def __call__(self) -> float:
        return self.t


def make_node(
    world: World,
    tmp: Path,
    label: str,
    role: str = "relay",
    scope: tuple[str, ...] = ("630214",),
    clock: Clock | None = None,
    sink: Sink = CARRIER,
    **cfg: Any,
) -> Node:
    home = tmp / f"{label}-{next(_counter)}"
    key, cert = world.officer(label, role=role, scope=scope)
    enroll(world, home, key, cert)
    config = NodeConfig(listen="127.0.0.1:0", mdns=False, beacon=False, sync_interval=0.2, **cfg)
    Home(home).save_config(config)
    return Node(home, config, key, world.root.public, sink=sink,
                clock=clock or Clock(world.now))  # fmt: skip


async def auth_headers(url: str, me: Node) -> dict[str, str]:
    """A session token at ``url`` proving ``me``'s key: the handshake of ``relay.auth`` over
    loopback, as a sync session does it (``me`` must be started: it checks the peer's chain)."""
    async with aiohttp.ClientSession() as http:
        done = await HttpPeerClient(http, url, "test", dict, credentials=me).authenticate()
    assert done is not None, "the peer has no handshake"
    return {HEADER: done[1]}
