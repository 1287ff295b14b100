"""`node enroll` never pins a root on the server's word (issue 11, item 5).

Attack: a fake central (a real `estafet central serve` with its own root, on loopback) answers a
phone's enrollment with a valid-looking certificate chained to the fake root. Before, `node
enroll` without `--trust` pinned whatever root came back, and the phone then showed results as
delivered to the fake server. Now the phone must confirm the real root (trust file, fingerprint
option, or typed at the prompt) and refuses the fake one before pinning anything."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from estafet.cli.main import cli
from estafet.relay.home import Home
from tests.cli.clikit import (
    MANIFEST,
    PASS,
    CentralHome,
    CentralServer,
    clean_env,
    codes,
    free_port,
    invoke,
    ok,
    refused,
    spawn,
    wait_http,
)


def node_init(home: Path) -> None:
    ok(invoke("node", "init", "--home", home, "--no-passphrase", "--no-mdns", "--no-beacon"))


@pytest.fixture(scope="module")
def fake_central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A second, real central server with a root of its own: what an attacker would run."""
    home = tmp_path_factory.mktemp("fake") / "kpu"
    ok(invoke("central", "init", "--home", home, "--manifest", MANIFEST))
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "estafet.cli", "central", "serve", "--home", home,
         "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"],
        tmp_path_factory.mktemp("logs") / "fake.log",
        clean_env(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(proc, url + "/api/status")
        yield home, url
    finally:
        proc.stop()


def real_root(central_home: CentralHome) -> str:
    return str(json.loads(central_home.trust.read_text())["root_id"])


def test_codes_print_the_root_fingerprint(central_home: CentralHome) -> None:
    res = invoke("central", "codes", "--home", central_home.home, "--role", "relay", "--count", "2")
    lines = [json.loads(ln) for ln in ok(res).splitlines()]
    want = real_root(central_home)
    assert all(ln["root"].replace(" ", "") == want for ln in lines)
    assert "root fingerprint" in res.stderr and want[:4] in res.stderr


def test_a_fake_central_is_refused_with_the_printed_fingerprint(
    central_home: CentralHome, fake_central: tuple[Path, str], tmp_path: Path
) -> None:
    fake_home, fake_url = fake_central
    code = codes(fake_home, "relay", "--count", "1")[0]["code"]  # the attacker's own code
    home = tmp_path / "phone"
    node_init(home)
    line = refused(
        invoke("node", "enroll", "--home", home, "--central", fake_url, "--code", code,
               "--root-fingerprint", real_root(central_home))
    )  # fmt: skip
    assert "not the one you typed" in line
    assert Home(home).load_trust() is None


def test_a_fake_central_is_refused_with_the_trust_file(
    central_home: CentralHome, fake_central: tuple[Path, str], tmp_path: Path
) -> None:
    fake_home, fake_url = fake_central
    code = codes(fake_home, "relay", "--count", "1")[0]["code"]
    home = tmp_path / "phone"
    node_init(home)
    line = refused(
        invoke("node", "enroll", "--home", home, "--central", fake_url, "--code", code,
               "--trust", central_home.trust)
    )  # fmt: skip
    assert "is not the pinned root" in line
    assert Home(home).load_trust() is None


def prompt_enroll(home: Path, url: str, code: str, typed: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli,
        ["node", "enroll", "--home", str(home), "--central", url, "--code", code],
        input=typed + "\n",
        env={"ESTAFET_PASSPHRASE": PASS, "ESTAFET_HOME": None, "ESTAFET_PASSPHRASE_FILE": None},
    )
    return res.exit_code, res.output


def test_without_a_pinned_root_the_fingerprint_is_asked_for_and_checked(
    central_home: CentralHome,
    central_server: CentralServer,
    fake_central: tuple[Path, str],
    tmp_path: Path,
) -> None:
    fake_home, fake_url = fake_central
    typed = " ".join(real_root(central_home)[i : i + 4] for i in range(0, 24, 4))  # a prefix
    home = tmp_path / "phone"
    node_init(home)
    code, out = prompt_enroll(
        home, fake_url, codes(fake_home, "relay", "--count", "1")[0]["code"], typed
    )
    assert code == 1 and "Root fingerprint" in out and "not the one you typed" in out
    assert Home(home).load_trust() is None
    real_code = codes(central_home.home, "relay", "--count", "1")[0]["code"]
    code, out = prompt_enroll(home, central_server.url, real_code, "12")  # too short
    assert code == 1 and "hex digits" in out
    code, out = prompt_enroll(home, central_server.url, real_code, typed)  # the code was not spent
    assert code == 0, out
    assert "enrolled as relay" in out
    assert Home(home).load_trust() == bytes.fromhex(
        json.loads(central_home.trust.read_text())["root_public"]
    )


def test_any_plain_http_url_warns(
    central_home: CentralHome, central_server: CentralServer, tmp_path: Path
) -> None:
    home = tmp_path / "phone"
    node_init(home)
    code = codes(central_home.home, "relay", "--count", "1")[0]["code"]
    assert central_server.url.startswith("http://127.0.0.1")
    res = invoke("node", "enroll", "--home", home, "--central", central_server.url, "--code", code,
                 "--trust", central_home.trust)  # fmt: skip
    ok(res)
    assert "WARNING: enrolling over plain http://" in res.stderr
