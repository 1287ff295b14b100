"""Fixtures for the central server: an Authority built from the test kit's World (seeded root
and issuer keys, the Kotabaru manifest), and a Central on a real central.db in tmp_path."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from estafet.central.authority import Authority
from estafet.central.ingest import Central
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.objects import Envelope, ResultBody
from tests.kit import NOW, World, form_json, photo_bytes, photo_refs


def world_authority(world: World, home: Path) -> Authority:
    """An Authority holding the World's keys, without key files (no scrypt per test)."""
    home.mkdir(parents=True, exist_ok=True)
    revocation = world.revocation(1)
    trust = world.trust()
    trust.learn(trust.verify(revocation, NOW))
    return Authority(
        home=home,
        name=world.manifest.name,
        issuer_key=world.issuer,
        issuer_cert=world.issuer_cert,
        manifest_env=world.manifest_env,
        revocation_env=revocation,
        trust=trust,
    )


def result(
    world: World,
    key: SigningKey,
    cert: Envelope,
    *,
    warnings: tuple[str, ...] | None = None,
    **form_over: Any,
) -> Envelope:
    """A signed result like World.result, with optional signed warnings (even bogus ones)."""
    form = parse_form(form_json(**form_over))
    photos = [photo_bytes(f"{form.tps}-{form.election}-{form.revision}-{i}") for i in (1, 2, 3)]
    if warnings is None:
        warnings = tuple(sorted(w.rule for w in check_form(form, world.manifest)[1]))
    body = ResultBody(form, photo_refs(photos), warnings)
    return seal("result", body, key, NOW, chain=world.chain(cert))


def photo_hashes(env: Envelope) -> list[bytes]:
    body = env.body
    assert isinstance(body, ResultBody)
    return [p.sha256 for p in body.photos]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def authority(world: World, tmp_path: Path) -> Authority:
    return world_authority(world, tmp_path / "central")


@pytest.fixture
def central(authority: Authority) -> Iterator[Central]:
    c = Central(authority.home, authority)
    yield c
    c.close()
