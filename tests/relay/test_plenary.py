"""The paper trail on real node stores (issue 13): a chair admits a witness by key code, the
witness objects with a photo, the PPK gateway corrects and signs the D.Hasil from its own store
with no internet, a USB bundle carries it all, and the centre's status matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from estafet.central.ingest import Central
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import ResultBody
from estafet.protocol.trail import DHasilBody, key_code, parse_key_code
from estafet.relay import plenary
from estafet.relay.accept import accept_one
from estafet.relay.bundle import export_bundle, import_bundle
from estafet.relay.errors import RelayError
from estafet.relay.local import submit_result_data
from estafet.relay.store import Store
from tests.central.conftest import world_authority
from tests.kit import DAY, NOW, TPS_A, World, form_json, photo_bytes, seeded_key

from .nodes import enroll

KEC = "630214"


def enrolled(world: World, home: Path, label: str, role: str, scope: str) -> Store:
    key, cert = world.officer(label, role=role, scope=(scope,))
    enroll(world, home, key, cert)
    return Store.open(home, world.now)


def carry(src: Store, dst: Store, trust: TrustStore, now: int) -> None:
    """A sync, by hand: every object and blob of ``src`` into ``dst``."""
    s, d = src.sync_db(), dst.sync_db()
    with d.db.atomic():
        for (raw,) in s.db.execute("SELECT raw FROM objects ORDER BY created"):
            accept_one(d, trust, bytes(raw), peer="test", origin="relayed", scope="", now=now)
    for sha, size in s.db.execute("SELECT sha256, size FROM blobs"):
        data = src.blobs.path(bytes(sha)).read_bytes()
        dst.blobs.write_whole(bytes(sha), data)
        d.add_blob(bytes(sha), size, now)


@pytest.fixture
def world() -> World:
    return World()


def test_witness_objects_ppk_corrects_and_signs_the_dhasil(world: World, tmp_path: Path) -> None:
    root = world.root.public
    chair_key = seeded_key("kpps-chair " + TPS_A)
    chair = enrolled(world, tmp_path / "chair", "kpps-chair " + TPS_A, "kpps-chair", TPS_A)
    ppk_key = seeded_key("ppk hampang")
    ppk = enrolled(world, tmp_path / "ppk", "ppk hampang", "ppk", KEC)
    saksi = seeded_key("saksi paslon 2")
    sheets = [photo_bytes(f"c-hasil-{i}") for i in (1, 2, 3)]
    res = submit_result_data(chair, chair_key, root, form_json(), sheets, NOW).envelope
    # the witness's phone shows its key as a code; the chair types it
    subject = parse_key_code(key_code(saksi.public))
    adm = plenary.admit(chair, chair_key, root, subject, role="witness", pair=2, seat=1,
                        elections=("bupati",), label="Saksi Paslon 2", now=NOW + 600,
                        mandate=photo_bytes("surat mandat"))  # fmt: skip
    with pytest.raises(RelayError, match="seat"):  # a second witness on the same seat
        plenary.admit(chair, chair_key, root, seeded_key("other").public, role="witness",
                      pair=2, seat=1, elections=("bupati",), label="", now=NOW + 700,
                      mandate=None)  # fmt: skip
    # the witness's phone (not enrolled) syncs with the chair, then objects with a photo
    witness = Store.open(tmp_path / "saksi", NOW)
    carry(chair, witness, world.trust(), NOW + 800)
    objection = plenary.object_to(witness, saksi, root, res.id, "suara paslon 2 salah baca",
                                  [photo_bytes("C.Kejadian Khusus")], NOW + 900)  # fmt: skip
    assert objection.chain[0] == adm.encode()
    # the ballot box and the phones reach the PPK: everything syncs to the gateway
    for src in (chair, witness):
        carry(src, ppk, world.trust(), NOW + DAY)
    view = plenary.trail_view(ppk.sync_db(), _trust(ppk, world), KEC, NOW + DAY)
    [tps] = [t for t in view["tps"] if t["tps"] == TPS_A]
    assert tps["state"] == "in-dispute"
    assert tps["objections"][0]["photos"][0]["present"] is True
    assert isinstance(res.body, ResultBody)
    f = res.body.form
    votes = {**f.votes, "2": f.votes["2"] + 1}
    corr = plenary.correct(
        ppk,
        ppk_key,
        root,
        res.id,
        {"votes": votes, "valid": f.valid + 1, "invalid": f.invalid - 1},
        "hitung ulang di pleno",
        photo_bytes("berita acara"),
        NOW + DAY,
    )
    view = plenary.trail_view(ppk.sync_db(), _trust(ppk, world), KEC, NOW + DAY + 1)
    [tps] = [t for t in view["tps"] if t["tps"] == TPS_A]
    assert tps["state"] == "ready" and tps["corrections"][0]["standing"] is True
    with pytest.raises(RelayError, match="valid"):  # numbers that break the form rules
        plenary.correct(ppk, ppk_key, root, res.id, {"votes": votes}, "x", None, NOW + DAY)
    dh = plenary.sign_dhasil(ppk, ppk_key, root, "bupati", NOW + 2 * DAY)
    assert isinstance(dh.body, DHasilBody)
    assert dh.body.results == (res.id,) and dh.body.corrections == (corr.id,)
    assert dh.body.votes["2"] == f.votes["2"] + 1
    # sneakernet: the gateway's bundle on a USB stick, imported at a connected relay
    export_bundle(ppk, tmp_path / "usb")
    relay = Store.open(tmp_path / "relay", NOW)
    report = import_bundle(relay, world.trust(), tmp_path / "usb", "", NOW + 2 * DAY)
    held = {bytes(r[0]) for r in relay.sync_db().db.execute("SELECT id FROM objects")}
    assert {res.id, adm.id, objection.id, corr.id, dh.id} <= held, report
    # ... and at the centre: KPPS figure, correction and D.Hasil side by side
    central = Central(tmp_path / "auth", world_authority(world, tmp_path / "auth"))
    for (raw,) in relay.sync_db().db.execute("SELECT raw FROM objects ORDER BY created"):
        central.ingest(bytes(raw), NOW + 2 * DAY + 60)
    status = central.status()
    [hampang] = [d for d in status["dhasil"]
                 if d["kecamatan"] == KEC and d["election"] == "bupati"]  # fmt: skip
    assert hampang["state"] == "matches", hampang
    assert status["tps_trail"][TPS_A] == {"objections": 1, "corrections": 1}
    detail = central.tps_detail(TPS_A)
    assert detail["elections"][1]["results"][0]["votes"]["2"] == f.votes["2"]  # KPPS figure kept
    assert detail["corrections"][0]["votes"]["2"] == f.votes["2"] + 1
    for s in (chair, ppk, witness, relay):
        s.close()
    central.close()


def _trust(store: Store, world: World) -> TrustStore:
    from estafet.relay.accept import load_trust

    ts = TrustStore(world.root.public)
    load_trust(store.sync_db(), ts, NOW + DAY)
    return ts


def test_an_unadmitted_key_cannot_object(world: World, tmp_path: Path) -> None:
    chair_key = seeded_key("kpps-chair " + TPS_A)
    chair = enrolled(world, tmp_path / "chair", "kpps-chair " + TPS_A, "kpps-chair", TPS_A)
    res = submit_result_data(chair, chair_key, world.root.public, form_json(),
                             [photo_bytes(f"s{i}") for i in (1, 2, 3)], NOW).envelope  # fmt: skip
    stranger = Store.open(tmp_path / "stranger", NOW)
    carry(chair, stranger, world.trust(), NOW + 60)
    with pytest.raises(RelayError, match="neither enrolled nor admitted"):
        plenary.object_to(stranger, seeded_key("stranger"), world.root.public, res.id, "x", [],
                          NOW + 120)  # fmt: skip
