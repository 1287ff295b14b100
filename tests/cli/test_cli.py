"""The `estafet` command line, in-process with click's CliRunner wherever possible: the KPU
officer's central commands, a phone and a relay enrolled against a real central server, results
signed and refused, a bundle carried between two homes, offline verification, and the mistakes
people make (each refused with exit 1, or 2 for usage errors, one line, never a traceback)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from estafet.crypto.keys import SigningKey, key_id
from estafet.demo.run import data_dir
from estafet.relay.home import Home
from tests.cli.clikit import (
    MANIFEST,
    N_TPS,
    PASS,
    CentralHome,
    CentralServer,
    clean_env,
    codes,
    free_port,
    invoke,
    ok,
    refused,
    refused_proc,
    spawn,
    wait_until,
    write_form,
    write_photos,
)
from tests.kit import TPS_A, TPS_B, damage_table

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def node_init(home: Path, *extra: str) -> str:
    return ok(
        invoke("node", "init", "--home", home, "--listen", f"127.0.0.1:{free_port()}",
               "--no-mdns", "--no-beacon", "--sync-interval", "0.3", *extra)
    )  # fmt: skip


def status(home: Path, *extra: str) -> dict[str, Any]:
    return dict(json.loads(ok(invoke("node", "status", "--home", home, "--json", *extra))))


@pytest.fixture(scope="module")
def phone(
    central_home: CentralHome,
    central_server: CentralServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A KPPS chair's phone for TPS_A: key encrypted with ESTAFET_PASSPHRASE, root pinned."""
    home = tmp_path_factory.mktemp("phone") / "home"
    out = node_init(home)
    assert "node key" in out
    assert Home(home).key_is_encrypted()
    code = codes(central_home.home, "kpps-chair", "--tps", TPS_A)[0]["code"]
    out = ok(
        invoke("node", "enroll", "--home", home, "--central", central_server.url, "--code", code,
               "--trust", central_home.trust)
    )  # fmt: skip
    assert f"enrolled as kpps-chair for {TPS_A}" in out
    return home


@pytest.fixture(scope="module")
def relay(
    central_home: CentralHome,
    central_server: CentralServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A village relay for kecamatan Hampang, its key unencrypted (an unattended box)."""
    home = tmp_path_factory.mktemp("relay") / "home"
    node_init(home, "--no-passphrase")
    made = codes(central_home.home, "relay", "--count", "1", "--scope", "630214")[0]
    out = ok(
        invoke("node", "enroll", "--home", home, "--central", central_server.url,
               "--code", made["code"], "--root-fingerprint", made["root"])
    )  # fmt: skip
    assert "enrolled as relay for 630214" in out
    return home


# --- KPU IT officer: central ------------------------------------------------------------------


def test_version_and_help() -> None:
    assert "estafet, version" in ok(invoke("--version"))
    out = ok(invoke("-h"))
    for group in ("central", "node", "result", "bundle", "verify", "demo"):
        assert group in out


def test_central_init_writes_keys_and_trust_anchor(central_home: CentralHome) -> None:
    names = {p.name for p in central_home.home.iterdir()}
    assert {"root.key", "issuer.key", "issuer.cert", "manifest.obj", "trust.json"} <= names
    anchor = json.loads(central_home.trust.read_text())
    assert len(bytes.fromhex(anchor["root_public"])) == 32
    assert anchor["name"] == "Pilkada 2024 - Kabupaten Kotabaru"
    assert b"PRIVATE" not in central_home.trust.read_bytes()


def test_central_init_refuses_an_existing_home(central_home: CentralHome) -> None:
    refused(
        invoke("central", "init", "--home", central_home.home, "--manifest", MANIFEST),
        "refusing to overwrite",
    )


def test_codes_for_named_tps(central_home: CentralHome) -> None:
    rows = codes(central_home.home, "kpps-chair", "--tps", TPS_A, "--tps", TPS_B)
    assert [r["tps"] for r in rows] == [TPS_A, TPS_B]
    assert all(r["role"] == "kpps-chair" and r["code"] for r in rows)
    assert rows[0]["code"] != rows[1]["code"]


def test_codes_for_all_tps_are_json_lines(central_home: CentralHome) -> None:
    out = ok(invoke("central", "codes", "--home", central_home.home, "--role", "kpps-member",
                    "--all-tps", "--expires-days", "1"))  # fmt: skip
    lines = out.splitlines()
    assert len(lines) == N_TPS
    rows = [json.loads(line) for line in lines]
    assert {r["role"] for r in rows} == {"kpps-member"}
    assert len({r["tps"] for r in rows}) == N_TPS
    assert len({r["code"] for r in rows}) == N_TPS
    assert set(rows[0]) == {"tps", "role", "code", "root"}


def test_codes_by_count_for_devices(central_home: CentralHome) -> None:
    rows = codes(central_home.home, "gateway", "--count", "3")
    assert len(rows) == 3
    assert {r["tps"] for r in rows} == {""}
    assert {r["role"] for r in rows} == {"gateway"}


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "kpps-chair", "--tps", TPS_A, "--all-tps"],
        ["--role", "kpps-chair"],
        ["--role", "relay", "--count", "2", "--all-tps"],
        ["--role", "kpps-chair", "--count", "2"],
        ["--role", "relay", "--tps", TPS_A],
        ["--role", "mayor", "--count", "1"],
        ["--role", "relay", "--count", "0"],
    ],
    ids=["tps+all", "none", "count+all", "chair-by-count", "relay-by-tps", "bad-role", "count-0"],
)
def test_codes_with_conflicting_flags_is_a_usage_error(
    central_home: CentralHome, args: list[str]
) -> None:
    refused(invoke("central", "codes", "--home", central_home.home, *args), code=2)


def test_codes_for_a_tps_not_in_the_manifest(central_home: CentralHome) -> None:
    refused(
        invoke("central", "codes", "--home", central_home.home, "--role", "kpps-chair",
               "--tps", "6302999999999"),
        "not in the manifest",
    )  # fmt: skip


def test_central_trust_prints_the_anchor(central_home: CentralHome) -> None:
    out = ok(invoke("central", "trust", "--home", central_home.home))
    assert json.loads(out) == json.loads(central_home.trust.read_text())


def test_central_status_text_and_json(central_home: CentralHome) -> None:
    st = json.loads(ok(invoke("central", "status", "--home", central_home.home, "--json")))
    assert {e["kind"] for e in st["elections"]} == {"gubernur", "bupati"}
    assert all(e["tps_expected"] == N_TPS for e in st["elections"])
    out = ok(invoke("central", "status", "--home", central_home.home))
    assert f"/{N_TPS} TPS accepted" in out
    assert "Hampang" in out


@pytest.mark.parametrize(
    "args",
    [["--reason", "lost phone"], ["--serial", "5", "--key", "00" * 16, "--reason", "both"]],
    ids=["neither", "both"],
)
def test_revoke_needs_exactly_one_of_serial_or_key(
    central_home: CentralHome, args: list[str]
) -> None:
    refused(
        invoke("central", "revoke", "--home", central_home.home, *args),
        "--serial or --key",
        code=2,
    )


def test_revoke_with_a_key_that_is_not_hex(central_home: CentralHome) -> None:
    refused(
        invoke("central", "revoke", "--home", central_home.home, "--key", "zz", "--reason", "x"),
        "--key",
        code=2,
    )


def test_wrong_passphrase(central_home: CentralHome, phone: Path, tmp_path: Path) -> None:
    env = {"ESTAFET_PASSPHRASE": "not-the-passphrase"}
    line = refused(
        invoke("central", "codes", "--home", central_home.home, "--role", "relay", "--count", "1",
               env=env),
        "wrong passphrase",
    )  # fmt: skip
    assert "issuer.key" in line
    form = write_form(tmp_path / "form.json")
    refused(
        invoke("result", "submit", "--home", phone, "--form", form,
               *write_photos(tmp_path, "wrongpw"), env=env),
        "wrong passphrase",
    )  # fmt: skip
    # the same passphrase from a file is accepted; a wrong one in a file is refused
    pw_file = tmp_path / "pw"
    pw_file.write_text("still wrong\n")
    refused(
        invoke("central", "status", "--home", central_home.home, "--passphrase-file", pw_file,
               env={"ESTAFET_PASSPHRASE": None}),
        "wrong passphrase",
    )  # fmt: skip
    pw_file.write_text(PASS + "\n")
    ok(invoke("central", "status", "--home", central_home.home, "--passphrase-file", pw_file,
              env={"ESTAFET_PASSPHRASE": None}))  # fmt: skip


def test_no_passphrase_anywhere_is_refused_without_prompting(central_home: CentralHome) -> None:
    refused(
        invoke("central", "status", "--home", central_home.home,
               env={"ESTAFET_PASSPHRASE": None}),
        "ESTAFET_PASSPHRASE",
    )  # fmt: skip


def test_manifest_with_a_bad_row(tmp_path: Path) -> None:
    bad = tmp_path / "manifest"
    shutil.copytree(data_dir(), bad)
    tps = bad / "tps.csv"
    lines = tps.read_text(encoding="utf-8").splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("code,"))
    lines[header + 3] = "6302142001001,not-a-desa,x,y,z"
    tps.write_text("\n".join(lines) + "\n", encoding="utf-8")
    home = tmp_path / "kpu"
    refused(
        invoke("central", "init", "--home", home, "--manifest", bad / "elections.toml"),
        "tps.csv",
    )
    assert not (home / "root.key").exists()


def test_manifest_that_is_not_toml(tmp_path: Path) -> None:
    bad = tmp_path / "elections.toml"
    bad.write_text("this is [not toml\n")
    refused(invoke("central", "init", "--home", tmp_path / "kpu", "--manifest", bad), "TOML")


# --- missing homes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["node", "status"],
        ["node", "peers"],
        ["node", "run"],
        ["node", "enroll", "--central", "http://127.0.0.1:9", "--code", "X"],
        ["bundle", "export", "--to", "usb"],
        ["central", "status"],
        ["central", "serve"],
        ["central", "trust"],
        ["central", "codes", "--role", "relay", "--count", "1"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_missing_home(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere"
    refused(invoke(*args[:2], "--home", missing, *args[2:]), str(missing))
    # the same through ESTAFET_HOME, the default home
    refused(invoke(*args, env={"ESTAFET_HOME": str(missing)}), str(missing))
    assert not missing.exists()


def test_central_home_is_not_a_node_home(central_home: CentralHome) -> None:
    refused(invoke("node", "status", "--home", central_home.home), "not an Estafet node home")


# --- PPK operator / relay keeper: node ----------------------------------------------------------


def test_node_init_then_status_on_an_empty_node(tmp_path: Path) -> None:
    home = tmp_path / "node"
    out = node_init(home, "--no-passphrase", "--name", "PPK Hampang", "--peer", "127.0.0.1:7420")
    assert f"created in {home}" in out
    config = (home / "config.toml").read_text()
    assert 'name = "PPK Hampang"' in config
    assert "mdns = false" in config
    assert (home / "config.toml").stat().st_mode & 0o077 == 0
    assert (home / "node.key").stat().st_mode & 0o077 == 0
    st = status(home)
    assert st["objects"] == []
    assert st["counts"]["pending"] == st["counts"]["delivered"] == 0
    out = ok(invoke("node", "status", "--home", home))
    assert "0 pending, 0 delivered, 0 conflict, 0 rejected" in out
    assert json.loads(ok(invoke("node", "peers", "--home", home, "--json")))["peers"] == []
    # the default home from ESTAFET_HOME
    out = ok(invoke("node", "status", "--json", env={"ESTAFET_HOME": str(home)}))
    assert json.loads(out)["objects"] == []
    refused(invoke("node", "init", "--home", home, "--no-passphrase"), "already holds a node")


def test_node_init_with_a_bad_listen_address(tmp_path: Path) -> None:
    refused(
        invoke("node", "init", "--home", tmp_path / "n", "--listen", "host:port",
               "--no-passphrase"),
        "bad port",
    )  # fmt: skip


def test_node_not_enrolled_cannot_sign(tmp_path: Path) -> None:
    home = tmp_path / "n"
    node_init(home, "--no-passphrase")
    form = write_form(tmp_path / "form.json")
    refused(
        invoke("result", "submit", "--home", home, "--form", form,
               *write_photos(tmp_path, "x")),
        "not enrolled",
    )  # fmt: skip


def test_enroll_with_an_unreachable_central(tmp_path: Path) -> None:
    home = tmp_path / "n"
    node_init(home, "--no-passphrase")
    with socket.socket() as s:  # a loopback port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        refused(
            invoke("node", "enroll", "--home", home, "--central", f"http://127.0.0.1:{port}",
                   "--code", "AAAA-BBBB-CCCC-DDDD", "--root-fingerprint", "ab" * 16),
            "cannot reach",
        )  # fmt: skip
    assert not (home / "trust.json").exists()


def test_enroll_with_a_used_or_unknown_code(
    central_home: CentralHome, central_server: CentralServer, tmp_path: Path
) -> None:
    home = tmp_path / "n"
    node_init(home, "--no-passphrase")
    refused(
        invoke("node", "enroll", "--home", home, "--central", central_server.url,
               "--code", "AAAA-BBBB-CCCC-DDDD", "--trust", central_home.trust),
        "unknown-code",
    )  # fmt: skip
    code = codes(central_home.home, "relay", "--count", "1")[0]["code"]
    trust = ("--trust", central_home.trust)
    ok(invoke("node", "enroll", "--home", home, "--central", central_server.url, "--code", code,
              *trust))  # fmt: skip
    other = tmp_path / "m"
    node_init(other, "--no-passphrase")
    refused(
        invoke("node", "enroll", "--home", other, "--central", central_server.url, "--code", code,
               *trust),
        "already-used",
    )  # fmt: skip


def test_enroll_pinned_to_another_root_is_refused(
    central_home: CentralHome, central_server: CentralServer, tmp_path: Path
) -> None:
    other_root = tmp_path / "other-trust.json"
    anchor = json.loads(central_home.trust.read_text())
    pub = SigningKey.generate().public
    anchor.update(root_public=pub.hex(), root_id=key_id(pub).hex())
    other_root.write_text(json.dumps(anchor))
    home = tmp_path / "n"
    node_init(home, "--no-passphrase")
    code = codes(central_home.home, "relay", "--count", "1")[0]["code"]
    line = refused(
        invoke("node", "enroll", "--home", home, "--central", central_server.url, "--code", code,
               "--trust", other_root)
    )  # fmt: skip
    assert "is not the pinned root" in line
    assert not (home / "trust.json").exists()


def test_node_run_on_a_port_already_in_use(relay: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "estafet.cli", "node", "run", "--home", str(relay),
             "--listen", f"127.0.0.1:{port}", "--central", ""],
            env=clean_env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    refused_proc(done, "cannot listen", str(port))


# --- KPPS officer / witness: result -------------------------------------------------------------


def test_submit_refused_names_the_rules_and_stores_nothing(phone: Path, tmp_path: Path) -> None:
    before = status(phone, "--all")
    form = write_form(tmp_path / "form.json", valid=999)
    res = invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "r"))
    line = refused(res, "valid-sum", "votes-exceed-turnout")
    assert "nothing was signed" in line
    assert res.stdout == ""  # no object id printed
    after = status(phone, "--all")
    assert after == before
    assert not [o for o in after["objects"] if o["kind"] == "result"]


def test_submit_with_bad_form_json(phone: Path, tmp_path: Path) -> None:
    form = tmp_path / "form.json"
    form.write_text('{"election": "bupati", ')
    refused(
        invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "j")),
        "not valid JSON",
    )
    form.write_bytes(b"\xff\xfe not utf-8")
    refused(
        invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "j")),
        "not valid JSON",
    )
    form.write_text("[1, 2, 3]")
    refused(
        invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "j"))
    )


def test_submit_with_a_photo_that_is_not_jpeg_or_png(phone: Path, tmp_path: Path) -> None:
    form = write_form(tmp_path / "form.json")
    photos = write_photos(tmp_path, "p")
    text = tmp_path / "notes.jpg"
    text.write_text("this is a text file, not a photo of the C.Hasil sheet\n" * 20)
    photos[1] = str(text)
    refused(
        invoke("result", "submit", "--home", phone, "--form", form, *photos),
        "photo-type",
        "sheet 1",
    )
    refused(invoke("result", "submit", "--home", phone, "--form", form, *photos[:2]), "photo-count")


def test_submit_with_missing_files_is_a_usage_error(phone: Path, tmp_path: Path) -> None:
    refused(
        invoke("result", "submit", "--home", phone, "--form", tmp_path / "nope.json",
               *write_photos(tmp_path, "m")),
        "nope.json",
        code=2,
    )  # fmt: skip
    refused(invoke("result", "submit", "--home", phone), "--form", code=2)


def test_endorse_with_a_bad_id(phone: Path) -> None:
    refused(invoke("result", "endorse", "--home", phone, "--id", "xyz"), "--id", code=2)
    refused(invoke("result", "endorse", "--home", phone, "--id", "ab" * 32), "no result")


# --- bundle and verify --------------------------------------------------------------------------


def test_submit_bundle_round_trip_and_verify(
    central_home: CentralHome, phone: Path, relay: Path, tmp_path: Path
) -> None:
    form = write_form(tmp_path / "bupati.json", election="bupati")
    out = ok(
        invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "b"))
    )
    rid = out.strip()
    assert HEX64.match(rid), out
    held = {o["id"]: o for o in status(phone)["objects"]}
    assert held[rid]["state"] == "pending"
    assert held[rid]["kind"] == "result" and held[rid]["tps"] == TPS_A
    assert len(held[rid]["photos"]) == 3
    assert held[rid]["receipt"] is None

    # a phone with no signal: export to a USB stick, import at the village relay
    usb = tmp_path / "usb"
    out = ok(invoke("bundle", "export", "--home", phone, "--to", usb))
    assert "3 photos" in out
    objects = usb / "estafet-bundle" / "objects"
    obj = objects / f"{rid}.obj"
    assert obj.is_file()
    out = ok(invoke("bundle", "import", "--home", relay, "--from", usb))
    assert "3 photos" in out
    relayed = {o["id"]: o for o in status(relay)["objects"]}
    assert relayed[rid]["state"] == "pending"
    assert all(p["held"] for p in relayed[rid]["photos"])
    again = ok(invoke("bundle", "import", "--home", relay, "--from", usb))
    assert "stored 0 new objects" in again

    # offline verification against the KPU trust anchor
    out = ok(invoke("verify", "--trust", central_home.trust, obj))
    assert out.startswith(f"valid   {rid}.obj: result {TPS_A} bupati signed by kpps-chair")
    out = ok(invoke("verify", "--trust", central_home.trust, usb))  # the whole bundle
    assert "INVALID" not in out
    assert len(out.splitlines()) == len(list(objects.glob("*.obj")))

    # one flipped bit in the signed numbers: exit 1, named INVALID
    raw = bytearray(obj.read_bytes())
    at = raw.find(TPS_A.encode())
    raw[at + len(TPS_A) - 1] ^= 0x01
    tampered = tmp_path / "tampered.obj"
    tampered.write_bytes(bytes(raw))
    res = invoke("verify", "--trust", central_home.trust, tampered)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("INVALID tampered.obj: ")
    assert "Traceback" not in res.output
    # not an object at all
    junk = tmp_path / "junk.obj"
    junk.write_bytes(b"not msgpack at all")
    res = invoke("verify", "--trust", central_home.trust, junk)
    assert res.exit_code == 1 and "INVALID junk.obj: malformed" in res.output
    # a tampered object in a bundle folder fails the folder
    shutil.copy(tampered, objects / "zz-tampered.obj")
    res = invoke("verify", "--trust", central_home.trust, usb)
    assert res.exit_code == 1 and "INVALID zz-tampered.obj" in res.output


def test_verify_against_another_root_fails(
    central_home: CentralHome, phone: Path, tmp_path: Path
) -> None:
    form = write_form(tmp_path / "gub.json", election="gubernur")
    rid = ok(
        invoke("result", "submit", "--home", phone, "--form", form, *write_photos(tmp_path, "g"))
    ).strip()
    usb = tmp_path / "usb"
    ok(invoke("bundle", "export", "--home", phone, "--to", usb))
    other = tmp_path / "other"
    other.mkdir()
    Home(other).save_trust(SigningKey.generate().public)
    res = invoke("verify", "--trust", other / "trust.json", usb / "estafet-bundle" / "objects"
                 / f"{rid}.obj")  # fmt: skip
    assert res.exit_code == 1 and "INVALID" in res.output and "Traceback" not in res.output


def test_verify_usage_errors(central_home: CentralHome, tmp_path: Path) -> None:
    refused(invoke("verify", "--trust", central_home.trust, tmp_path / "missing.obj"), code=2)
    refused(invoke("verify", tmp_path), "--trust", code=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(invoke("verify", "--trust", central_home.trust, empty), "no .obj files")
    not_anchor = tmp_path / "anchor.json"
    not_anchor.write_text("{}")
    refused(invoke("verify", "--trust", not_anchor, empty), "not an Estafet trust anchor")


def test_bundle_import_of_a_folder_that_is_not_a_bundle(relay: Path, tmp_path: Path) -> None:
    refused(invoke("bundle", "import", "--home", relay, "--from", tmp_path), "estafet-bundle")


# --- photos -------------------------------------------------------------------------------------


def test_photos_reach_the_central_server(
    central_home: CentralHome, central_server: CentralServer, tmp_path: Path
) -> None:
    home = tmp_path / "phone-b"
    node_init(home, "--no-passphrase")
    code = codes(central_home.home, "kpps-chair", "--tps", TPS_B)[0]["code"]
    ok(invoke("node", "enroll", "--home", home, "--central", central_server.url, "--code", code,
              "--trust", central_home.trust))  # fmt: skip
    form = write_form(tmp_path / "form.json", tps=TPS_B)
    rid = ok(
        invoke("result", "submit", "--home", home, "--form", form, *write_photos(tmp_path, "pb"))
    ).strip()
    proc = spawn(
        [sys.executable, "-m", "estafet.cli", "node", "run", "--home", home,
         "--central", central_server.url],
        tmp_path / "phone-b.log",
        clean_env(),
    )  # fmt: skip
    try:
        wait_until(
            "the receipt on the phone",
            lambda: status(home)["counts"]["delivered"] == 1,
            20,
            [proc, central_server.proc],
        )
        held = {o["id"]: o for o in status(home)["objects"]}
        assert held[rid]["receipt"]["status"] == "accepted"

        def photos_at_centre() -> bool:
            page = urllib.request.urlopen(f"{central_server.url}/tps/{TPS_B}", timeout=5)
            with page:
                return b"not received yet" not in page.read()

        wait_until("the photos at the central server", photos_at_centre, 10, [proc])

        def photos_receipt() -> bool:
            rc = {o["id"]: o for o in status(home)["objects"]}[rid]["receipt"]
            return rc is not None and rc["photos_complete"] is True

        # the centre's second receipt tells the phone its photos arrived too
        wait_until("the photos-complete receipt on the phone", photos_receipt, 10, [proc])
    finally:
        proc.stop()


# --- a hostile stick (issue 11, item 9) ---------------------------------------------------------


def test_export_never_writes_through_symlinks_planted_on_the_stick(
    phone: Path, tmp_path: Path
) -> None:
    """Attack: the stick holds symlinks named like the files export writes, pointing at files
    of the officer's (here ``victim``). Before, export wrote through them."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    held = status(phone)["objects"]  # certificates, manifest, revocation list: always exported
    usb = tmp_path / "usb"
    objects = usb / "estafet-bundle" / "objects"
    objects.mkdir(parents=True)
    names = [f"{o['id']}.obj" for o in held[:3]]
    planted = [objects / n for n in names] + [usb / "estafet-bundle" / "INDEX.json"]
    temps = [objects / f"{n}.tmp" for n in names] + [usb / "estafet-bundle" / "INDEX.json.tmp"]
    for link in planted + temps:
        link.symlink_to(victim)
    ok(invoke("bundle", "export", "--home", phone, "--to", usb))
    assert victim.read_bytes() == b"precious"
    for link in planted:
        assert not link.is_symlink() and link.is_file()


def test_export_refuses_a_planted_folder_symlink(phone: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "home-of-the-officer"
    elsewhere.mkdir()
    usb = tmp_path / "usb"
    (usb / "estafet-bundle").mkdir(parents=True)
    (usb / "estafet-bundle" / "objects").symlink_to(elsewhere)
    refused(invoke("bundle", "export", "--home", phone, "--to", usb), "symlink")
    assert list(elsewhere.iterdir()) == []


def test_import_refuses_devices_fifos_symlinks_and_oversize_files(
    phone: Path, relay: Path, tmp_path: Path
) -> None:
    """Attack: /dev/zero (MemoryError before), a FIFO (a hang before) and a sparse 33 MiB file on
    the stick; each is refused by name and the genuine files beside them still import."""
    usb = tmp_path / "usb"
    ok(invoke("bundle", "export", "--home", phone, "--to", usb))
    objects = usb / "estafet-bundle" / "objects"
    blobs = usb / "estafet-bundle" / "blobs"
    (objects / "zero.obj").symlink_to("/dev/zero")
    os.mkfifo(objects / "fifo.obj")
    with (objects / "huge.obj").open("wb") as fh:
        fh.truncate(33 * 1024 * 1024)
    some_blob = next(blobs.iterdir()).name if blobs.is_dir() and any(blobs.iterdir()) else None
    res = invoke("bundle", "import", "--home", relay, "--from", usb)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "refused zero.obj: a symlink, not a regular file" in res.output
    assert "refused fifo.obj: not a regular file" in res.output
    assert "refused huge.obj: file too large" in res.output
    if some_blob:
        blob = blobs / some_blob
        blob.unlink()
        blob.symlink_to("/dev/zero")
        res = invoke("bundle", "import", "--home", relay, "--from", usb)
        assert "Traceback" not in res.output


def test_a_damaged_central_db_is_one_line_not_a_traceback(
    central_home: CentralHome, tmp_path: Path
) -> None:
    """Attack/accident (issue 11, item 9): a corrupt central.db page gave a traceback."""
    codes(central_home.home, "relay", "--count", "1")  # central.db exists and holds rows
    home = Path(shutil.copytree(central_home.home, tmp_path / "kpu"))
    db = home / "central.db"
    damage_table(db, "objects")
    line = refused(invoke("central", "status", "--home", home))
    assert "malformed" in line or "damaged" in line


def test_void_of_an_unknown_result_is_one_line(central_home: CentralHome) -> None:
    refused(
        invoke("central", "void", "--home", central_home.home, "--result", "ab" * 32,
               "--reason", "test"),
        "no result",
    )  # fmt: skip
    refused(
        invoke("central", "void", "--home", central_home.home, "--result", "zz", "--reason", "x"),
        code=2,
    )
