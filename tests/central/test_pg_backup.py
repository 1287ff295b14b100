"""PostgreSQL operations a KPU IT officer follows from docs/deploy.md: ``central init
--database``, backup with ``pg_dump``, restore with ``pg_restore`` into a new database, and
``verify_log`` accepting the restored log (then ingesting on, the chain continuing)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from estafet.central.config import database_url, write_config
from estafet.central.errors import DatabaseError
from estafet.central.ingest import Central
from estafet.cli.main import cli
from tests.cli.clikit import MANIFEST
from tests.kit import NOW, TPS_A, TPS_B, World
from tests.pgserver import PgServer

from .conftest import result, world_authority


def _fill(central: Central, world: World) -> None:
    for i, tps in enumerate((TPS_A, TPS_B)):
        key, cert = world.officer(f"chair-{i}", scope=(tps,))
        central.ingest(result(world, key, cert, tps=tps).encode(), NOW)
    central.enrollment.make_codes("relay", 3, NOW + 3600, NOW)


def test_pg_dump_and_restore_keep_a_verifiable_log(pg_server: PgServer, tmp_path: Path) -> None:
    world = World()
    url = pg_server.fresh()
    home = tmp_path / "central"
    home.mkdir()
    write_config(home, url)
    central = Central(home, world_authority(world, home))
    _fill(central, world)
    head, status = central.db.log_head(), central.status()
    central.close()
    dump = tmp_path / "central.dump"
    subprocess.run([str(pg_server.bin / "pg_dump"), "-Fc", "-f", str(dump), url], check=True)
    restored = pg_server.fresh()
    subprocess.run(
        [str(pg_server.bin / "pg_restore"), "--no-owner", "-d", restored, str(dump)], check=True
    )
    home2 = tmp_path / "restored"
    home2.mkdir()
    write_config(home2, restored)
    again = Central(home2, world_authority(world, home2))
    try:
        again.verify_log()
        assert again.db.log_head() == head
        assert again.status() == status
        key, cert = world.officer("chair-late", scope=(TPS_A,))
        again.ingest(result(world, key, cert, invalid=0).encode(), NOW + 60)  # a conflict
        again.verify_log()
        assert again.db.log_head()[0] == head[0] + 2
    finally:
        again.close()
    pg_server.drop(restored)
    pg_server.drop(url)


def test_central_init_database_writes_the_config_and_status_reads_it(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.fresh()
    home = tmp_path / "central"
    pw, root_pw = tmp_path / "pw", tmp_path / "root-pw"
    pw.write_text("issuer passphrase\n")
    root_pw.write_text("root passphrase\n")
    common = ["--home", str(home), "--passphrase-file", str(pw)]
    runner = CliRunner()
    done = runner.invoke(
        cli,
        ["central", "init", "--manifest", str(MANIFEST), "--database", url, *common,
         "--root-passphrase-file", str(root_pw)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert database_url(home) == url and not (home / "central.db").exists()
    done = runner.invoke(cli, ["central", "status", "--json", *common])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["log"]["length"] == 0
    assert not (home / "central.db").exists()  # nothing went to a stray SQLite file
    done = runner.invoke(cli, ["central", "audit", *common])
    assert done.exit_code == 0 and "0 entries" in done.output, done.output
    done = runner.invoke(cli, ["central", "codes", "--role", "relay", "--count", "1", *common])
    assert done.exit_code == 0, done.output
    pg_server.drop(url)


def test_a_bad_database_setting_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "central.toml").write_text('database = "mysql://x"\n')
    with pytest.raises(DatabaseError, match="postgresql://"):
        database_url(tmp_path)
    (tmp_path / "central.toml").write_text("database = [broken\n")
    with pytest.raises(DatabaseError, match="cannot read"):
        database_url(tmp_path)
