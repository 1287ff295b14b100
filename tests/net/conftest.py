"""Fixtures for the village testbed (network namespaces; needs root, `ip` and `nft`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netlab import Lab, cleanup_stale, missing_requirements, require_netns


@pytest.fixture(scope="session", autouse=True)
def _stale_labs() -> None:
    """Remove labs left behind by killed runs (labs of live processes are kept)."""
    if not missing_requirements():
        cleanup_stale()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh, empty lab; torn down (processes killed, namespaces deleted) after the test."""
    require_netns()
    with Lab() as the_lab:
        yield the_lab
