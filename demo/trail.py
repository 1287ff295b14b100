"""The demo's paper trail (issue 13): a witness admitted at the first TPS objects, and the PPK
of Hampang runs the plenary offline: corrects that TPS and signs the D.Hasil.

Everything goes through the CLI, as an officer would type it, and moves between devices by USB
bundles (no device runs yet): chair's phone -> witness's phone and back; phones -> the PPK's
laptop; the PPK's bundle -> the gateway, which pushes it to the centre once it runs.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from .forms import make_png

Demo = Any  # demo.run.Demo (not imported: run imports this module)

KECAMATAN = "630214"


def _carry(demo: Demo, src: Any, dst: Any, stick: str) -> None:
    path = demo.work / stick
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    demo.cli("bundle", "export", "--home", str(src.home), "--to", str(path))
    demo.cli("bundle", "import", "--home", str(dst.home), "--from", str(path))


def _init(demo: Demo, p: Any, *extra: str) -> None:
    demo.cli("node", "init", "--home", str(p.home), "--listen", f"127.0.0.1:{p.port}",
             "--no-mdns", "--no-beacon", "--no-passphrase", *extra)  # fmt: skip


def paper_trail(demo: Demo) -> None:
    chair, tps = demo.phones[0], demo.tps[0]
    result = demo.result_ids[(tps, "bupati")]
    # a witness of pair 2 arrives with a mandate letter; its phone is not enrolled
    _init(demo, demo.witness, "--scope", tps)
    shutil.copy(demo.central.home / "trust.json", demo.witness.home / "trust.json")
    code = demo.cli("witness", "key", "--home", str(demo.witness.home)).strip()
    letter = demo.work / "surat-mandat.png"
    letter.write_bytes(make_png("surat mandat paslon 2"))
    demo.cli(
        "witness",
        "admit",
        "--home",
        str(chair.home),
        "--key-code",
        code,
        "--pair",
        "2",
        "--election",
        "bupati",
        "--name",
        "Saksi Paslon 2",
        "--mandate",
        str(letter),
    )
    demo.say(f"KPPS {tps}: chair admitted the witness of pair 2 (key code {code[:9]}...)")
    _carry(demo, chair, demo.witness, "stick-saksi")
    form = demo.work / "kejadian-khusus.png"
    form.write_bytes(make_png("C.Kejadian Khusus"))
    demo.cli(
        "witness",
        "object",
        "--home",
        str(demo.witness.home),
        "--id",
        result,
        "--reason",
        "Saksi paslon 2: satu suara paslon 2 dihitung untuk paslon 1",
        "--photo",
        str(form),
    )
    _carry(demo, demo.witness, chair, "stick-saksi-back")
    demo.say(f"saksi {tps}: objected to the bupati result, with a photo of C.Kejadian Khusus")
    _plenary(demo, tps, result)


def _plenary(demo: Demo, tps: str, result: str) -> None:
    code = json.loads(demo.cli("central", "codes", "--home", str(demo.central.home), "--role",
                               "ppk", "--count", "1", "--scope", KECAMATAN))["code"]  # fmt: skip
    _init(demo, demo.ppk)
    demo.cli("node", "enroll", "--home", str(demo.ppk.home), "--central", demo.central.url,
             "--code", code, "--trust", str(demo.central.home / "trust.json"))  # fmt: skip
    for i, ph in enumerate(demo.phones):
        _carry(demo, ph, demo.ppk, f"stick-ppk-{i}")
    form = json.loads((demo.phones[0].home / "bupati.json").read_text(encoding="utf-8"))
    votes = dict(form["votes"])
    votes["1"], votes["2"] = votes["1"] - 1, votes["2"] + 1
    numbers = demo.work / "pleno.json"
    numbers.write_text(json.dumps({"votes": votes}))
    minutes = demo.work / "berita-acara.png"
    minutes.write_bytes(make_png("berita acara pleno"))
    demo.cli("ppk", "correct", "--home", str(demo.ppk.home), "--id", result, "--numbers",
             str(numbers), "--reason", "hitung ulang di pleno PPK: 1 suara pindah ke paslon 2",
             "--minutes", str(minutes))  # fmt: skip
    demo.say(f"PPK Hampang: recounted {tps} at the plenary and signed a correction")
    demo.cli("ppk", "dhasil", "--home", str(demo.ppk.home), "--election", "bupati")
    demo.say("PPK Hampang: the plenary closes; D.Hasil (bupati) signed, offline")
    _carry(demo, demo.ppk, demo.gateway, "stick-gateway")


def hampang(demo: Demo) -> dict[str, Any]:
    """The centre's D.Hasil status of Hampang's bupati election."""
    st = demo.get_json(demo.central, "/api/status")
    rows = [d for d in st.get("dhasil", []) if d["kecamatan"] == KECAMATAN
            and d["election"] == "bupati"]  # fmt: skip
    return dict(rows[0]) if rows else {"state": "none"}
