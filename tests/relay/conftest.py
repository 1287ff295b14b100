"""Fixtures shared by the relay tests."""

from __future__ import annotations

import asyncio

import pytest

from estafet.relay.node import Node


async def _idle(self: Node) -> None:
    await asyncio.Event().wait()


@pytest.fixture
def manual_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """No scheduled sessions: the test alone decides which sessions run (``sync_now``)."""
    monkeypatch.setattr(Node, "_scheduler", _idle)
