"""The authority home: init, load, revoke; keys encrypted at rest, refusing to overwrite."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from estafet.central.authority import change_passphrase, init_central, load_authority, revoke
from estafet.central.errors import AuthorityError
from estafet.crypto.keyfile import decrypt_key, encrypt_key, is_encrypted
from estafet.crypto.keys import key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody, RevocationBody, decode_envelope
from tests.kit import DAY, NOW, kotabaru_manifest

PASS = "kpu kotabaru 2024"
ROOT_PASS = "kpu root, kept offline"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("template") / "central"
    init_central(home, kotabaru_manifest(), PASS, NOW, root_passphrase=ROOT_PASS)
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "central"))


def test_init_writes_the_home(home: Path) -> None:
    for name in ("root.key", "issuer.key"):
        data = (home / name).read_bytes()
        assert is_encrypted(data)
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    trust = json.loads((home / "trust.json").read_text())
    assert set(trust) == {"root_public", "root_id", "name"}
    assert trust["root_id"] == key_id(bytes.fromhex(trust["root_public"])).hex()
    assert trust["name"] == "Pilkada 2024 - Kabupaten Kotabaru"


def test_load_gives_a_working_trust_store(home: Path) -> None:
    a = load_authority(home, PASS)
    cert = a.issuer_cert.body
    assert isinstance(cert, CertificateBody)
    assert cert.role == "issuer" and cert.subject == a.issuer_key.public
    assert cert.scope == ("63", "6302") and cert.elections == ("gubernur", "bupati")
    assert (cert.not_before, cert.not_after) == (NOW, NOW + 365 * DAY)
    assert a.manifest.to_map() == kotabaru_manifest().to_map()
    revocation = a.revocation_env.body
    assert isinstance(revocation, RevocationBody)
    assert (revocation.version, revocation.entries) == (1, ())
    # a device that pins only the root public key verifies all three on its own
    pinned = TrustStore(bytes.fromhex(json.loads((home / "trust.json").read_text())["root_public"]))
    for env in (a.issuer_cert, a.manifest_env, a.revocation_env):
        assert pinned.verify(env.encode(), NOW).signer.role == "root"
    assert a.root_id == pinned.root_id


def test_refuses_to_overwrite(home: Path, tmp_path: Path) -> None:
    before = (home / "root.key").read_bytes()
    with pytest.raises(AuthorityError, match="refusing to overwrite"):
        init_central(home, kotabaru_manifest(), PASS, NOW, root_passphrase=ROOT_PASS)
    assert (home / "root.key").read_bytes() == before
    with pytest.raises(AuthorityError, match="passphrase"):
        init_central(tmp_path / "other", kotabaru_manifest(), "", NOW, root_passphrase=ROOT_PASS)


def test_wrong_passphrase_and_missing_home(home: Path, tmp_path: Path) -> None:
    with pytest.raises(AuthorityError, match="wrong passphrase"):
        load_authority(home, "not it")
    with pytest.raises(AuthorityError, match="not found"):
        load_authority(tmp_path / "nowhere", PASS)


def test_revoke_makes_the_next_version(home: Path) -> None:
    victim = bytes(range(16))
    env = revoke(home, ROOT_PASS, key_id=victim, reason="phone stolen", now=NOW + 60)
    body = env.body
    assert isinstance(body, RevocationBody) and body.version == 2
    assert body.entries[0].key == victim and body.entries[0].time == NOW + 60
    env3 = revoke(home, ROOT_PASS, serial=7, reason="officer replaced", now=NOW + 120)
    assert isinstance(env3.body, RevocationBody) and len(env3.body.entries) == 2
    loaded = load_authority(home, PASS)
    assert loaded.trust.revocation is not None and loaded.trust.revocation.version == 3
    assert decode_envelope((home / "revocation.obj").read_bytes()).id == env3.id


def test_root_key_can_go_offline(home: Path, tmp_path: Path) -> None:
    (home / "root.key").rename(tmp_path / "usb-root.key")
    assert load_authority(home, PASS).issuer_key is not None
    with pytest.raises(AuthorityError, match="bring the offline root key back"):
        revoke(home, ROOT_PASS, serial=3, reason="x", now=NOW)
    with pytest.raises(AuthorityError, match="name a certificate serial or a key id"):
        revoke(home, ROOT_PASS, reason="x", now=NOW)


def test_root_and_issuer_keys_take_separate_passphrases(home: Path, tmp_path: Path) -> None:
    """Attack (issue 11, item 9): the server's unit holds the issuer passphrase; with one
    passphrase for both keys, whoever reads the unit could also open the root and sign a
    revocation or a manifest. Now the issuer passphrase does not open the root key."""
    with pytest.raises(AuthorityError, match="wrong passphrase"):
        revoke(home, PASS, serial=3, reason="x", now=NOW)
    with pytest.raises(AuthorityError, match="passphrase of its own"):
        init_central(tmp_path / "same", kotabaru_manifest(), PASS, NOW, root_passphrase=PASS)


def test_migration_gives_an_old_home_a_root_passphrase_of_its_own(home: Path) -> None:
    """A home made before the split: both keys under one passphrase."""
    root = decrypt_key((home / "root.key").read_bytes(), ROOT_PASS)
    (home / "root.key").write_bytes(encrypt_key(root, PASS))  # as the old init wrote it
    assert revoke(home, PASS, serial=8, reason="x", now=NOW)  # the weakness being fixed
    with pytest.raises(AuthorityError, match="differ"):
        change_passphrase(home, "root", PASS, PASS)
    change_passphrase(home, "root", PASS, "a new root passphrase")
    assert revoke(home, "a new root passphrase", serial=9, reason="x", now=NOW + 1)
    with pytest.raises(AuthorityError, match="wrong passphrase"):
        revoke(home, PASS, serial=9, reason="x", now=NOW + 2)
    assert load_authority(home, PASS).issuer_key is not None  # the server's unit is unchanged
    with pytest.raises(AuthorityError, match="also opens"):
        change_passphrase(home, "issuer", PASS, "a new root passphrase")
