"""The app signs with the running node's own trust store: no reload per signature (bench figure
13b), and what it signs is known to the node at once. In-process, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from estafet.app.port import NodePort
from estafet.crypto.keys import key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.trail import key_code
from estafet.relay import accept, local, plenary
from estafet.relay.node import Node
from estafet.relay.store import StoreDB
from tests.kit import TPS_A, World, form_json, photo_bytes, seeded_key
from tests.relay.nodes import make_node


@pytest.fixture
async def chair(tmp_path: Path) -> AsyncIterator[tuple[Node, NodePort]]:
    world = World()
    node = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    try:
        yield node, NodePort(node, world.root.public)
    finally:
        node.replica.close()


def no_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("the trust store was loaded again from the store")

    for module in (local, plenary, accept):
        monkeypatch.setattr(module, "load_trust", refuse)


async def test_submit_and_endorse_use_the_nodes_trust_store(
    chair: tuple[Node, NodePort], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, port = chair
    no_reload(monkeypatch)
    photos = [photo_bytes(f"p{i}") for i in (1, 2, 3)]
    rid, _warnings = await port.submit(seeded_key("chair-a"), form_json(), photos)
    assert await node.store.read(StoreDB.has, [bytes.fromhex(rid)])
    eid = await port.endorse(seeded_key("chair-a"), bytes.fromhex(rid))
    assert await node.store.read(StoreDB.has, [bytes.fromhex(eid)])


async def test_an_admission_made_in_the_app_is_known_to_the_node_at_once(
    chair: tuple[Node, NodePort], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a trust store rebuilt per call, the running node learned a witness its own chair had
    just admitted only at the next restart."""
    node, port = chair
    no_reload(monkeypatch)
    witness = seeded_key("saksi")
    await port.admit(seeded_key("chair-a"), key_code(witness.public), "witness", 2, 1,
                     ("bupati",), "Saksi Paslon 2", None)  # fmt: skip
    seen = node.replica.trust.certificate_for(key_id(witness.public))
    assert seen is not None and seen.role == "witness"
    assert node.trust is node.replica.trust  # one trust store in the node


def test_the_cli_path_still_loads_its_own_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``estafet result submit`` has no daemon: the trust store is loaded from the store."""
    world = World()
    node = make_node(world, tmp_path, "chair-a", role="kpps-chair", scope=(TPS_A,))
    loaded: list[TrustStore] = []
    real = local.load_trust

    def counting(sdb: StoreDB, trust: TrustStore, now: int) -> None:
        loaded.append(trust)
        real(sdb, trust, now)

    monkeypatch.setattr(local, "load_trust", counting)
    photos = [photo_bytes(f"c{i}") for i in (1, 2, 3)]
    try:
        sub = local.submit_result_data(node.store, seeded_key("chair-a"), world.root.public,
                                       form_json(), photos, world.now)  # fmt: skip
        assert len(loaded) == 1 and loaded[0] is not node.replica.trust
        assert node.store.sync_db().has([sub.id])
    finally:
        node.replica.close()
