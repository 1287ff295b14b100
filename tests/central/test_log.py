"""The hash-chained ingest log verifies end to end, and any edit to a stored entry is found."""

from __future__ import annotations

import pytest

from estafet.central.errors import LogError
from estafet.central.ingest import Central
from estafet.protocol.objects import log_entry_hash
from tests.kit import NOW, TPS_B, World

from .conftest import result


@pytest.fixture
def filled(central: Central, world: World) -> Central:
    """Eight log entries: results, a revision, an equivocation, a rejection."""
    key, cert = world.officer("chair-a")
    key_b, cert_b = world.officer("chair-b", scope=(TPS_B,))
    thief, thief_cert = world.officer("thief")
    first = result(world, key, cert)
    central.ingest(first.encode(), NOW)
    central.ingest(result(world, key, cert, election="gubernur").encode(), NOW + 1)
    central.ingest(result(world, key_b, cert_b, tps=TPS_B).encode(), NOW + 2)
    central.ingest(result(world, thief, thief_cert, invalid=3).encode(), NOW + 3)  # 2 entries
    fix = result(world, key, cert, revision=1, supersedes=first.id.hex())
    central.ingest(fix.encode(), NOW + 4)  # 3 entries
    central.ingest(result(world, key_b, cert_b).encode(), NOW + 5)  # out of scope
    assert central.status()["log"]["length"] == 9
    central.verify_log()
    return central


def _sql(central: Central, sql: str, *params: object) -> None:
    with central.db.write():
        central.db._x(sql, params)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE log SET status = 'accepted' WHERE idx = ?",
        "UPDATE log SET reason = 'fine' WHERE idx = ?",
        "UPDATE log SET server_time = server_time + 1 WHERE idx = ?",
        "UPDATE log SET object = prev WHERE idx = ?",
    ],
)
def test_an_edited_entry_is_found(filled: Central, sql: str) -> None:
    _sql(filled, sql, 4)
    with pytest.raises(LogError, match="log entry 4: hash does not match") as info:
        filled.verify_log()
    assert info.value.index == 4


def test_a_consistently_rehashed_entry_is_found(filled: Central) -> None:
    """Rewriting an entry and its hash still fails: its signed receipt no longer matches, and
    without the receipt check the next entry's link would."""
    row = next(r for r in filled.db.iter_log() if r["idx"] == 3)
    forged = log_entry_hash(row["prev"], 3, row["object"], "accepted", "", row["server_time"])
    _sql(filled, "UPDATE log SET status = 'accepted', reason = '', hash = ? WHERE idx = 3", forged)
    with pytest.raises(LogError, match="log entry 3: receipt does not match"):
        filled.verify_log()
    _sql(filled, "UPDATE receipts SET raw = object WHERE log_idx = 3")
    with pytest.raises(LogError, match="log entry 3: receipt does not decode"):
        filled.verify_log()


def test_a_forged_prev_link_is_found(filled: Central) -> None:
    _sql(filled, "UPDATE log SET prev = hash WHERE idx = 6")
    with pytest.raises(LogError, match="does not commit to the previous entry") as info:
        filled.verify_log()
    assert info.value.index == 6


def test_a_deleted_entry_is_found(filled: Central) -> None:
    _sql(filled, "DELETE FROM log WHERE idx = 5")
    with pytest.raises(LogError, match="log entry 5: entry missing"):
        filled.verify_log()


def test_a_swapped_receipt_is_found(filled: Central) -> None:
    _sql(
        filled,
        "UPDATE receipts SET raw = (SELECT raw FROM receipts WHERE log_idx = 1) WHERE log_idx = 2",
    )
    with pytest.raises(LogError, match="log entry 2: receipt does not match"):
        filled.verify_log()
