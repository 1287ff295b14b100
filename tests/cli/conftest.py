"""Fixtures for the CLI tests: a central home made once per module with `estafet central init`,
and a running central server (a real subprocess on loopback) to enroll nodes with."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.cli.clikit import (
    MANIFEST,
    N_TPS,
    CentralHome,
    CentralServer,
    clean_env,
    free_port,
    invoke,
    ok,
    spawn,
    wait_http,
)


@pytest.fixture(scope="module")
def central_home(tmp_path_factory: pytest.TempPathFactory) -> CentralHome:
    """`estafet central init` with the Kotabaru manifest and ESTAFET_PASSPHRASE, once a module."""
    base = tmp_path_factory.mktemp("central")
    home = base / "kpu"
    out = ok(invoke("central", "init", "--home", home, "--manifest", MANIFEST))
    assert f"{N_TPS} TPS" in out
    trust = base / "trust.json"
    trust.write_text(ok(invoke("central", "trust", "--home", home)))
    return CentralHome(home, trust)


@pytest.fixture(scope="module")
def central_server(
    central_home: CentralHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralServer]:
    """`python -m estafet.cli central serve` on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "central.log"
    proc = spawn(
        [sys.executable, "-m", "estafet.cli", "central", "serve", "--home", central_home.home,
         "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"],
        log,
        clean_env(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(proc, url + "/api/status")
        yield CentralServer(url, proc)
    finally:
        proc.stop()
