"""The village testbed scenarios: real `estafet` daemons on separate network hosts, and a checker.

See tests/net/village.py (the testbed) and tests/net/checker.py (the properties every scenario
ends by checking). Needs root, `ip` and `nft` (skipped otherwise). Run: `pytest -m net tests/net`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .checker import Checker
from .netlab import Lab, require_netns
from .village import ENV, Device, Kit, Result, Village, photo_bytes, photo_size, run_cli

net = pytest.mark.net
HAMPANG = "630214"


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    """Enrolled homes and signed results, built once for all scenarios (real CLI, online)."""
    require_netns()
    if os.environ.get("VILLAGE_KIT"):  # iterate on one scenario without rebuilding the kit
        yield Kit.cached(Path(os.environ["VILLAGE_KIT"]))
        return
    root = Path(tempfile.mkdtemp(prefix="village-kit-"))
    try:
        k = Kit(root).build()
        print(f"[kit] built in {k.build_seconds:.1f}s")
        yield k
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_village(lab: Lab, kit: Kit) -> Iterator[Callable[..., Village]]:
    """Village(lab, kit, work, phones=N) in a fresh work dir; closed and removed afterwards."""
    made: list[tuple[Village, Path]] = []

    def make(phones: int | None = None) -> Village:
        work = Path(tempfile.mkdtemp(prefix=f"village-{lab.prefix}-"))
        made.append((Village(lab, kit, work, phones=phones), work))
        return made[-1][0]

    try:
        yield make
    finally:
        for v, work in made:
            v.close()
            if os.environ.get("VILLAGE_KEEP"):
                print(f"[village] kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def village(make_village: Callable[..., Village]) -> Village:
    return make_village()


def _start_all(v: Village) -> None:
    v.start_central()
    v.start_all(v.gateway, v.relay, *v.phones)


def photo_sizes(r: Result) -> list[int]:
    """The sizes of a kit result's three photos (fixed per seed, see village.Kit)."""
    return [photo_size(f"{r.tps}-{r.election}-{sheet}") for sheet in (1, 2, 3)]


def photo_size_of(r: Result) -> int:
    return sum(photo_sizes(r))


def _kecamatan(status: dict, code: str) -> list[dict]:
    return [k for e in status["elections"] for k in e["kecamatan"] if k["code"] == code]


# -- 1. village to centre --------------------------------------------------------------------------


@net
@pytest.mark.parametrize("deaf", [False, True], ids=["hearing", "deaf-phones"])
def test_village_to_centre(village: Village, deaf: bool) -> None:
    """Five phones of a no-signal village and a relay find each other (mDNS / beacon, no
    --peer); the relay walks to the PPK LAN, the gateway pushes to the central server, receipts
    come back, the relay walks home, every phone ends holding its receipts. With deaf phones:
    phone0 hears no mDNS (Android without a MulticastLock), phone1 hears no broadcast at all:
    both must still be found."""
    v = village
    v.standard()
    if deaf:
        v.lab.block_multicast_in(v.phones[0].host)
        v.lab.block_multicast_in(v.phones[1].host, None)
    _start_all(v)
    v.wait("the relay holds every result and photo", lambda: v.holds(v.relay, v.results), 60)
    v.lab.walk(v.relay.host, "eth0", v.ppk)
    v.wait("the central server accepts every result and photo", v.all_accepted, 60)
    v.wait("the relay holds every receipt", lambda: v.delivered(v.relay, v.results), 30)
    v.lab.walk(v.relay.host, "eth0", v.hotspot)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    status = v.central_status()
    kec = _kecamatan(status, HAMPANG)
    assert len(kec) == 2, kec
    for k in kec:
        assert k["tps_accepted"] == len(v.phones), k
        assert k["tps_photos_complete"] == len(v.phones), k
    # discovery was real: nobody was given an address
    for d in (v.relay, *v.phones):
        sources = {p["key"]: p["source"] for p in (v.status(d) or {}).get("peers", [])}
        assert sources and set(sources.values()) <= {"mdns", "beacon", "inbound", "known"}, (
            d.name,
            sources,
        )
    relay_peers = {p["key"]: p for p in (v.status(v.relay) or {}).get("peers", [])}
    assert {p.key for p in v.phones} | {v.gateway.key} <= set(relay_peers), relay_peers
    Checker(v).check()


# -- 2. flaky links --------------------------------------------------------------------------------

RESEND_PER_CUT = 64 * 1024


@net
def test_flaky_links(make_village: Callable[..., Village]) -> None:
    """20% packet loss on the relay, a slow (1 mbit/s) link between relay and gateway, and the
    link cut four times in the middle of a photo (twice dropping the connections on both ends,
    twice a bare cable cut that TCP rides out). Everything arrives; the photo bytes the gateway
    received beyond what it needed stay under 64 KiB per cut."""
    v = make_village(phones=3)
    v.standard()
    _start_all(v)
    v.wait("the relay holds every result and photo", lambda: v.holds(v.relay, v.results), 60)
    v.lab.walk(v.relay.host, "eth0", v.ppk)
    v.lab.loss(v.relay.host, 20)
    v.lab.slow(v.relay.host, "eth0", "1mbit")
    cuts, held = 4, {}
    for k in range(cuts):
        # mid-photo: a partial photo in the gateway has grown since the last cut
        part = v.wait(
            f"a photo is flowing into the gateway (cut {k + 1})",
            lambda held=held: {
                n: b for n, b in v.partials(v.gateway).items() if b > held.get(n, 0)
            },
            60,
            every=0.02,
        )
        v.cut(v.relay, drop_connections=[v.gateway] if k % 2 == 0 else [])
        held = v.partials(v.gateway)
        print(f"[flaky] cut {k + 1} with {part} held")
        time.sleep(1.5)
        v.restore(v.relay)
    v.wait("the central server accepts every result and photo", v.all_accepted, 120)
    st = v.status(v.gateway)
    assert st is not None
    need = sum(photo_size_of(r) for r in v.results)
    got = st["stats"]["blob_bytes_in"]
    print(
        f"[flaky] gateway received {got} photo bytes for {need} needed; resent counter "
        f"{st['stats']['blob_bytes_resent']}"
    )
    assert st["stats"]["blob_bytes_resent"] <= RESEND_PER_CUT * cuts, st["stats"]
    assert got - need <= RESEND_PER_CUT * cuts, (got, need)
    v.lab.clear_loss(v.relay.host)
    v.lab.fast(v.relay.host, "eth0")
    v.wait("the relay holds every receipt", lambda: v.delivered(v.relay, v.results), 60)
    v.lab.walk(v.relay.host, "eth0", v.hotspot)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    Checker(v).check()


# -- 3. crashes ------------------------------------------------------------------------------------

CRASH_SEED = int(os.environ.get("VILLAGE_SEED", "20241127"))


@net
def test_crashes(village: Village) -> None:
    """kill -9 the relay and the gateway at seeded random moments while results and photos
    move (the relay bridges the hotspot and a slowed PPK link), several rounds, restarting them
    each time: nothing lost, nothing accepted twice, every store consistent (integrity_check,
    every blob file hashes to its name; see the checker)."""
    v = village
    rng = random.Random(CRASH_SEED)
    v.standard(relay_bridges=[v.hotspot, v.ppk])
    v.lab.slow(v.relay.host, "eth1", "2mbit")
    _start_all(v)
    rounds = 5
    for k in range(rounds):
        time.sleep(rng.uniform(0.3, 2.5))
        victims = rng.choice([[v.relay], [v.gateway], [v.relay, v.gateway]])
        moving = {d.name: len(v.partials(d)) for d in (v.relay, v.gateway)}
        for d in victims:
            v.kill9(d)
        print(
            f"[crash] round {k + 1}: kill -9 {[d.name for d in victims]} at "
            f"+{v.elapsed():.1f}s (partial photos: {moving})"
        )
        time.sleep(rng.uniform(0.1, 1.0))
        for d in victims:
            v.restart(d, wait=False)
        for d in victims:
            v.wait_up(d)
    v.wait("the central server accepts every result and photo", v.all_accepted, 120)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 90)
    Checker(v).check()


# -- 4. disk full on the relay ---------------------------------------------------------------------


@net
def test_disk_full(village: Village) -> None:
    """The relay's home is a tiny tmpfs: results (small) keep flowing through it to the central
    server while photos wait; nothing is corrupted; when the disk is grown (remount) the photos
    follow."""
    v = village
    v.standard(relay_bridges=[v.hotspot, v.ppk])
    v.small_disk(v.relay, "5m")
    _start_all(v)
    v.wait(
        "the central server accepts every result (numbers)",
        lambda: v.all_accepted(photos=False),
        60,
    )
    time.sleep(3)
    used, size = v.disk(v.relay)
    have = len(v.partials(v.relay))
    st = v.status(v.relay)
    print(f"[disk] relay disk {used}/{size} bytes, objects {st and st['objects']}, partial {have}")
    assert not v.holds(v.relay, v.results), "all photos fit: the disk was not full"
    Checker(v).check(receipts=False, central_photos=False)
    relay_log = v.log(v.relay).read_text(errors="replace")
    assert "disk is full" not in relay_log and "No space left" not in relay_log
    waited = [p.name for p in v.phones if "photos wait" in v.log(p).read_text(errors="replace")]
    print(f"[disk] phones told the relay is full (photos wait): {waited}")
    assert waited or "not fetching photos" in relay_log
    v.grow_disk(v.relay, "64m")
    v.wait("the central server accepts every photo too", v.all_accepted, 90)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    Checker(v).check()


# -- 5. a hostile peer on the hotspot --------------------------------------------------------------


@net
def test_hostile_peer(village: Village) -> None:
    """A hostile device on the hotspot (tests/net/hostile.py: its own unenrolled key, announced
    by mDNS and beacon as a gateway with uplink) serves and pushes tampered results, forged
    receipts, a result under a forged certificate chain, wrong photo bytes, a replayed old
    revision, oversized and malformed bodies and a junk flood. Honest nodes refuse each with a
    recorded reason, penalise it, keep working; the central server ends with exactly the
    genuine results."""
    v = village
    v.standard(relay_bridges=[v.hotspot, v.ppk])
    p0, p1, p2, p4 = v.phones[0], v.phones[1], v.phones[2], v.phones[4]
    old = p0.results[0]
    new = v.submit(p0, old.election, revision=1, supersedes=old)  # the officer's correction
    evil = v.place(Device("evil", "hostile", v.work / "evil"), v.hotspot)
    carried = p4.results[0]  # a genuine result the hostile overheard, pushed before its owner
    bait = {
        "result": v.raw(p1, p1.results[0].id).hex(),
        "old_revision": v.raw(p0, old.id).hex(),
        "carry": v.raw(p4, carried.id).hex(),
        "fake_tps": p2.tps,
        "photos": [
            [sha, size] for sha, size in zip(carried.photos, photo_sizes(carried), strict=True)
        ],
    }
    (v.work / "bait.json").write_text(json.dumps(bait))
    v.start_central()
    v.start_all(v.gateway, v.relay, *v.phones[:4])
    targets = [f"http://{d.host.addr('eth0')}:7420" for d in (v.relay, p0, p1)]
    report_file = v.work / "hostile-report.json"
    with (v.work / "evil.log").open("ab") as log:
        evil.proc = v.lab.popen(
            evil.host,
            [
                sys.executable,
                "-m",
                "tests.net.hostile",
                "--bait",
                str(v.work / "bait.json"),
                "--report",
                str(report_file),
                "--duration",
                "10",
                *[a for t in targets for a in ("--attack", t)],
            ],
            env=ENV,
            stdout=log,
            stderr=log,
        )

    def report() -> dict:
        try:
            return json.loads(report_file.read_text())
        except (OSError, ValueError):
            return {}

    v.wait("the hostile peer's first round of attacks", lambda: report().get("rounds"), 60)
    v.start(p4)  # the genuine owner of the carried result shows up
    v.wait("the hostile peer has done its rounds", lambda: report().get("done"), 60)
    v.wait(
        "the central server accepts every result and photo",
        lambda: v.all_accepted([r for r in v.results if r is not old]),
        90,
    )
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    rep = report()
    hostile_key = rep["key"]
    answers: dict[str, set[str]] = {}
    for a in rep["attacks"]:
        answers.setdefault(a["attack"], set()).add(f"{a['status']} {a['answer']}")
    print("[hostile] served:", rep["served"])
    for k, ans in sorted(answers.items()):
        print(f"[hostile] {k}: {sorted(ans)[:3]}")
    assert all(
        a.startswith("200") and "rejected: bad-signature" in a
        for a in answers["tampered-result"] | answers["broken-signature"]
    ), answers
    assert all(
        "rejected: unknown-signer" in a
        for a in answers["forged-receipt"] | answers["forged-chain-result"]
    ), answers
    assert all(a.startswith("413") for a in answers["oversized"]), answers["oversized"]
    assert all(
        a.startswith("400")
        for k in ("malformed", "malformed-shape", "malformed-reconcile")
        for a in answers[k]
    ), answers
    assert all("stored" not in a for a in answers["junk-flood"]), answers["junk-flood"]
    assert any(a.startswith("422") for a in answers["wrong-photo"]), answers["wrong-photo"]
    # every refusal is recorded, with its reason, against the hostile key
    for dev, must in (
        (
            v.relay,
            (
                "bad-signature",
                "unknown-signer",
                "malformed",
                "did not match",
                "bad request",
                "body too large",
            ),
        ),
        (p0, ("bad-signature", "unknown-signer", "bad request")),
    ):
        reasons = [e["reason"] for e in v.events(dev) if e["peer"] == hostile_key]
        missing = [m for m in must if not any(m in r for r in reasons)]
        assert not missing, f"{dev.name} recorded no refusal for {missing}: {set(reasons)}"
        shown = v.node_peers(dev)["events"]
        assert any(e["peer"] == hostile_key for e in shown), shown
    # what honest nodes fetched from it (wrong photo bytes, bait objects) was refused and the
    # hostile peer penalised (a long backoff)
    pulled = {
        d.name: [
            e["reason"] for e in v.events(d) if e["peer"] == hostile_key and "served" in e["reason"]
        ]
        for d in (v.relay, *v.phones)
    }
    print("[hostile] refused when fetched from the hostile:", pulled)
    assert rep["served"].get("objects/get") and rep["served"].get("blob-get (wrong bytes)"), rep
    assert any("served a wrong blob" in r for r in pulled["relay"]), pulled
    assert any("failed verification" in r for rs in pulled.values() for r in rs), pulled
    for d in (v.relay, *v.phones):
        peers = {p["key"]: p for p in (v.status(d) or {}).get("peers", [])}
        if pulled[d.name]:
            assert peers[hostile_key]["penalties"] >= 1, (d.name, peers.get(hostile_key))
    Checker(v).check(expect={old.id: "superseded"})
    assert new.id in v.central_accepted()


# -- 6. equivocation with a stolen key -------------------------------------------------------------


@net
def test_equivocation(village: Village) -> None:
    """A second phone holds a copy of a real KPPS chair's key file and signs a different result
    for the same TPS while the real officer's result travels too: both reach the central server
    and show as a conflict; after `estafet central revoke --serial N` the new revocation list
    reaches every phone (`node status --json --all`)."""
    v = village
    v.standard(relay_bridges=[v.hotspot, v.ppk])
    victim = v.phones[0]
    thief = v.add_device(f"{v.kit.phones[0]}-clean", "kpps-chair", "thief")
    thief.tps = victim.tps
    v.place(thief, v.hotspot)
    honest = victim.results[0]
    forged = v.submit(thief, honest.election, tweak=25)
    thief.results = []  # not an honest officer's: checked as the central's extra result
    assert thief.key == victim.key and forged.id != honest.id
    v.start_central()
    v.start_all(v.gateway, v.relay, *v.phones)
    # the real result first, all the way (accepted, photos complete, receipted on the phone);
    # then the thief's phone turns up: the conflict must reach the officer's phone as well
    v.wait("every result is accepted with its photos", v.all_accepted, 60)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    v.start(thief)
    v.wait(
        "the central server holds both results for the TPS, in conflict",
        lambda: set(v.central_status_of([honest.id, forged.id]).values()) == {"conflict"},
        60,
    )
    v.wait(
        "the officer's phone learns its result is in conflict",
        lambda: v.states(victim, [honest.id])[honest.id] == "conflict",
        60,
    )
    conflicts = v.central_status()["conflicts"]
    mine = [c for c in conflicts if c["tps"] == victim.tps and c["election"] == honest.election]
    assert len(mine) == 1 and set(mine[0]["objects"]) == {honest.id, forged.id}, conflicts
    assert mine[0]["signers"] == [victim.key, victim.key], mine
    out = run_cli(
        "central",
        "revoke",
        "--home",
        str(v.central.home),
        "--serial",
        str(victim.serial),
        "--reason",
        "KPPS chair key copied to another phone",
    )
    print("[equivocation]", out.strip())
    revocation = v.ids_of_kind(v.central, "revocation")[-1]
    holders = [*v.phones, v.relay, v.gateway]
    v.wait(
        "the revocation list reaches every phone",
        lambda: all(revocation in v.ids_of_kind(d, "revocation") for d in holders),
        90,
    )
    for p in v.phones:
        objs = v.node_status(p, all_objects=True)["objects"]
        assert any(o["kind"] == "revocation" and o["id"] == revocation for o in objs), p.name
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    Checker(v).check(expect={honest.id: "conflict"}, extra_central_results=[forged.id])


# -- 7. sneakernet ---------------------------------------------------------------------------------


@net
def test_sneakernet(village: Village) -> None:
    """A kecamatan with no uplink at all: its PPK node exports a bundle to a USB stick
    (`estafet bundle export --to DIR`), it is imported at a gateway elsewhere (`bundle import
    --from DIR`), which delivers it; receipts find their way back when the kecamatan's node
    later meets that gateway on a network, and on to the phones."""
    v = village
    kec = v.gateway  # the kecamatan's PPK node: phones on its LAN, no uplink
    far = v.add_device("gateway2", "gateway", "far")  # a gateway elsewhere, with uplink
    ppk2 = v.lab.bridge("ppk2")
    v.place(kec, v.hotspot)
    v.place(far, ppk2, v.uplink)
    for p in v.phones:
        v.place(p, v.hotspot)
    v.start_central()
    v.start(kec, central="")
    v.start_all(far, *v.phones)
    v.wait("the kecamatan node holds every result and photo", lambda: v.holds(kec, v.results), 60)
    usb = v.work / "usb"
    print(
        "[sneakernet]",
        run_cli("bundle", "export", "--home", str(kec.home), "--to", str(usb))
        .strip()
        .splitlines()[-1],
    )
    print(
        "[sneakernet]",
        run_cli("verify", "--trust", str(v.central.home / "trust.json"), str(usb))
        .strip()
        .splitlines()[-1],
    )
    print(
        "[sneakernet]",
        run_cli("bundle", "import", "--home", str(far.home), "--from", str(usb))
        .strip()
        .splitlines()[-1],
    )
    v.wait("the central server accepts every result and photo", v.all_accepted, 60)
    assert not any(v.delivered(p) for p in v.phones), "receipts came back without a link?"
    v.lab.attach(kec.host, ppk2)  # later: the kecamatan node gets to the PPK network elsewhere
    v.wait("the kecamatan node holds every receipt", lambda: v.delivered(kec, v.results), 60)
    v.wait("every phone holds its receipts", lambda: all(v.delivered(p) for p in v.phones), 60)
    Checker(v).check()


# -- the paper trail (issue 13) ----------------------------------------------------------------


def _carry(src: Path, dst: Path, stick: Path) -> None:
    """A USB stick between two devices (or Bluetooth between phones): bundle out, bundle in."""
    shutil.rmtree(stick, ignore_errors=True)
    run_cli("bundle", "export", "--home", str(src), "--to", str(stick))
    run_cli("bundle", "import", "--home", str(dst), "--from", str(stick))


@net
def test_paper_trail(village: Village) -> None:
    """At phone0's TPS the chair admits a witness of pair 2 by key code; the witness objects with
    a photo of the C.Kejadian Khusus; the PPK of Hampang, offline, takes every phone's results,
    corrects phone0's bupati result and signs the D.Hasil; then the village runs as usual. The
    objection, the correction and the D.Hasil reach the centre over the network with the
    results, and the centre finds the signed D.Hasil of Hampang matches its TPS results."""
    v = village
    chair = v.phones[0]
    [bupati] = [r for r in chair.results if r.election == "bupati"]
    saksi = v.work / "saksi"
    run_cli("node", "init", "--home", str(saksi), "--no-passphrase", "--scope", bupati.tps)
    shutil.copy(v.central.home / "trust.json", saksi / "trust.json")
    code = run_cli("witness", "key", "--home", str(saksi)).strip()
    letter = v.work / "mandat.jpg"
    letter.write_bytes(photo_bytes("mandat", 4000))
    run_cli("witness", "admit", "--home", str(chair.home), "--key-code", code, "--pair", "2",
            "--election", "bupati", "--mandate", str(letter))  # fmt: skip
    _carry(chair.home, saksi, v.work / "bt-1")
    form = v.work / "kejadian.jpg"
    form.write_bytes(photo_bytes("C.Kejadian Khusus", 5000))
    run_cli("witness", "object", "--home", str(saksi), "--id", bupati.id, "--reason",
            "satu suara paslon 2 dihitung untuk paslon 1", "--photo", str(form))  # fmt: skip
    _carry(saksi, chair.home, v.work / "bt-2")
    ppk = v.add_device("ppk", "ppk", "ppk")
    for i, p in enumerate(v.phones):
        _carry(p.home, ppk.home, v.work / f"usb-{i}")
    numbers = json.loads((chair.home / "form-bupati.json").read_text())["votes"]
    numbers["1"], numbers["2"] = numbers["1"] - 1, numbers["2"] + 1
    (v.work / "pleno.json").write_text(json.dumps({"votes": numbers}))
    run_cli("ppk", "correct", "--home", str(ppk.home), "--id", bupati.id, "--numbers",
            str(v.work / "pleno.json"), "--reason", "hitung ulang di pleno")  # fmt: skip
    run_cli("ppk", "dhasil", "--home", str(ppk.home), "--election", "bupati")
    _carry(ppk.home, v.gateway.home, v.work / "usb-gw")
    v.standard()
    _start_all(v)
    v.wait("the relay holds every result and photo", lambda: v.holds(v.relay, v.results), 60)
    v.lab.walk(v.relay.host, "eth0", v.ppk)
    v.wait("the central server accepts every result and photo", v.all_accepted, 60)

    def hampang() -> dict:
        rows = [d for d in v.central_status().get("dhasil", [])
                if d["kecamatan"] == HAMPANG and d["election"] == "bupati"]  # fmt: skip
        return rows[0] if rows else {}

    v.wait("the centre checks the D.Hasil of Hampang",
           lambda: hampang().get("state") not in (None, "none", "incomplete"), 60)  # fmt: skip
    h = hampang()
    assert h["state"] == "matches", h
    assert h["dhasil"]["votes"] == h["centre"]["votes"]
    assert h["centre"]["tps_counted"] == len(v.phones)
    status = v.central_status()
    assert status["tps_trail"][bupati.tps] == {"objections": 1, "corrections": 1}
    [kec] = [k for e in status["elections"] if e["kind"] == "bupati" for k in e["kecamatan"]
             if k["code"] == HAMPANG]  # fmt: skip
    assert kec["tally"] == h["dhasil"]["votes"]  # the correction is what the centre counts
