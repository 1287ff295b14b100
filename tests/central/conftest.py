"""Fixtures for the central server: an Authority built from the test kit's World (seeded root
and issuer keys, the Kotabaru manifest), and a Central on a real database.

Every test that uses the authority or a Central runs twice, on each backend (``[sqlite]``: a
real central.db in tmp_path; ``[postgresql]``: a fresh database of a real PostgreSQL server
started once per session, see tests/pgserver.py). Without PostgreSQL the second half is
skipped with the reason, except under ESTAFET_REQUIRE_POSTGRES=1 (CI), where it fails."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from estafet.central.authority import Authority
from estafet.central.config import write_config
from estafet.central.ingest import Central
from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import seal
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.objects import Envelope, ResultBody
from tests.kit import NOW, World, form_json, photo_bytes, photo_refs
from tests.pgserver import REQUIRE, PgServer, PgUnavailable

BACKENDS = ("sqlite", "postgresql")
DATABASE: str | None = None
"""The PostgreSQL database of the running test (set by the ``backend`` fixture), else None."""


def world_authority(world: World, home: Path) -> Authority:
    """An Authority holding the World's keys, without key files (no scrypt per test)."""
    home.mkdir(parents=True, exist_ok=True)
    if DATABASE is not None and not (home / "central.toml").exists():
        write_config(home, DATABASE)
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"authority", "central", "backend"} & set(metafunc.fixturenames):
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("backend", ("sqlite",) if only else BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer()
    except PgUnavailable as exc:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but PostgreSQL cannot run: {exc}")
        pytest.skip(f"PostgreSQL half skipped: {exc}")
    yield server
    server.stop()


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database backend of this run of the test; PostgreSQL gets a fresh database."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.fresh()
    monkeypatch.setattr(sys.modules[__name__], "DATABASE", url)
    yield url
    server.drop(url)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def authority(world: World, tmp_path: Path, backend: str) -> Authority:
    return world_authority(world, tmp_path / "central")


@pytest.fixture
def central(authority: Authority) -> Iterator[Central]:
    c = Central(authority.home, authority)
    yield c
    c.close()
