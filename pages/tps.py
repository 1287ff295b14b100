"""The public TPS page (``/tps/<code>``): for each election the results received, the numbers
beside the three C.Hasil photos (large enough to read), who signed and who endorsed or objected,
corrections (revisions), the receipt with its position in the KPU log, times in WITA and ISO,
and a "verify it yourself" download with the command that checks it offline.
"""

from __future__ import annotations

import re
from typing import Any

from .html import e, iso, num, page, time_tag

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
SHEETS = {1: "lembar 1", 2: "lembar 2", 3: "lembar 3"}
KINDS = {"gubernur": "Gubernur", "bupati": "Bupati", "walikota": "Wali Kota"}
STATES = {
    "accepted": "dihitung",
    "conflict": "konflik",
    "missing": "belum masuk",
    "superseded": "digantikan revisi",
    "rejected": "ditolak",
}


def bundle_name(tps: str) -> str:
    return f"tps-{tps}.zip"


def verify_command(tps: str) -> str:
    name = bundle_name(tps)
    return f"unzip {name}\nestafet verify --trust tps-{tps}/trust.json tps-{tps}/"


def _photos(photos: list[dict[str, Any]]) -> str:
    out = []
    for p in photos:
        digest = str(p["sha256"])
        sheet = SHEETS.get(p["sheet"], f"lembar {p['sheet']}")
        if p["present"] and _HEX64.fullmatch(digest):
            src = f"/v1/blobs/{digest}"
            out.append(
                f'<figure><a href="{src}"><img src="{src}" alt="Foto C.Hasil {e(sheet)}" '
                f'loading="lazy"></a><figcaption>{e(sheet)} · sha256 '
                f'<span class="code">{e(digest[:16])}…</span></figcaption></figure>'
            )
        else:
            out.append(
                f"<figure><figcaption>{e(sheet)}: foto belum diterima (not received yet)"
                "</figcaption></figure>"
            )
    return f'<div class="photos">{"".join(out)}</div>'


def _numbers(r: dict[str, Any], pairs: dict[str, str]) -> str:
    rows = [
        f"<tr><td>{e(k)}. {e(pairs.get(k, 'Paslon nomor ' + k))}</td>"
        f'<td class="v">{e(num(v))}</td></tr>'
        for k, v in r["votes"].items()
    ]
    rows.append(f'<tr><td>suara sah</td><td class="v">{e(num(r["valid"]))}</td></tr>')
    rows.append(f'<tr><td>suara tidak sah</td><td class="v">{e(num(r["invalid"]))}</td></tr>')
    return f'<table class="numbers"><tbody>{"".join(rows)}</tbody></table>'


def _endorsements(r: dict[str, Any]) -> str:
    if not r["endorsements"]:
        return "<p>Belum ada saksi yang menandatangani.</p>"
    items = []
    for x in r["endorsements"]:
        objects = x["statement"] == "object"
        what = "KEBERATAN" if objects else "setuju"
        items.append(
            f"<li><strong{' class=bad' if objects else ''}>{e(what)}</strong> — {e(x['role'])} "
            f'<span class="code">{e(str(x["signer"])[:16])}</span> '
            f"({e(x['status'])}{' ' + e(x['reason']) if x['reason'] else ''})</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _receipt(rc: dict[str, Any] | None) -> str:
    if not rc:
        return "<p>Belum ada tanda terima dari KPU.</p>"
    return (
        f"<p>Tanda terima KPU: <strong>{e(STATES.get(rc['status'], rc['status']))}</strong>"
        f"{' (' + e(rc['reason']) + ')' if rc.get('reason') else ''}, posisi log "
        f"<strong>#{e(rc['log_index'])}</strong>, {time_tag(rc['server_time'], True)}<br>"
        f'<span class="muted">ISO {e(iso(rc["server_time"]))} · hash log '
        f'<span class="code">{e(rc["log_hash"])}</span> · tanda terima '
        f'<span class="code">{e(rc["id"])}</span></span></p>'
    )


def _result(r: dict[str, Any], pairs: dict[str, str]) -> str:
    state = STATES.get(r["status"], r["status"])
    bad = r["status"] in ("conflict", "rejected")
    revision = f"revisi {e(r['revision'])}"
    if r.get("supersedes"):
        revision += f' (koreksi, menggantikan <span class="code">{e(r["supersedes"][:16])}…</span>)'
    warnings = ", ".join(e(w) for w in r["warnings"]) or "tidak ada"
    return (
        f'<article class="card"><h3{" class=bad" if bad else ""}>{revision}: {e(state)}'
        f"{' — ' + e(r['reason']) if r['reason'] else ''}</h3>"
        f'<div class="result"><div>{_numbers(r, pairs)}'
        f'<p class="muted">peringatan: {warnings}</p></div><div>'
        f"<p>Ditandatangani oleh <strong>{e(r['signer_label'] or 'KPPS')}</strong> "
        f'(kunci <span class="code">{e(r["signer"][:16])}</span>, seri {e(r["signer_serial"])})'
        f", diterima {time_tag(r['received'], True)}"
        f' <span class="muted">({e(iso(r["received"]))})</span></p>'
        f"<p><strong>Saksi:</strong></p>{_endorsements(r)}{_receipt(r['receipt'])}"
        f'<p class="muted">hasil <span class="code">{e(r["id"])}</span></p></div></div>'
        f"{_photos(r['photos'])}</article>"
    )


def render_tps(detail: dict[str, Any], nonce: str) -> str:
    """The TPS page of :func:`estafet.central.views.tps_detail`'s view."""
    tps = str(detail["tps"])
    dpt = f" · DPT {e(num(detail['dpt']))}" if detail["dpt"] is not None else ""
    header = (
        f'<p><a href="/">← ringkasan</a></p><h1>TPS {e(tps[10:])} · '
        f"{e(detail['desa']['name'])}</h1><p>Kecamatan {e(detail['kecamatan']['name'])}"
        f' · kode <span class="code">{e(tps)}</span>{dpt}</p>'
    )
    parts = []
    for el in detail["elections"]:
        kind = KINDS.get(el["kind"], el["kind"])
        parts.append(
            f'<section id="e-{e(el["kind"])}"><h2>Pemilihan {e(kind)}: '
            f"{e(STATES.get(el['state'], el['state']))}</h2>"
        )
        pairs = el.get("pairs") or {}
        parts.extend(_result(r, pairs) for r in el["results"])
        if not el["results"]:
            parts.append('<p class="card">Belum ada hasil yang diterima.</p>')
        parts.append("</section>")
    if detail["rejected"]:
        rows = "".join(
            f'<tr><td class="code">{e(o["id"])}</td><td>{e(o["kind"])}</td>'
            f"<td>{e(o['election'])}</td><td>{e(o['reason'])}</td></tr>"
            for o in detail["rejected"]
        )
        parts.append(
            '<section class="card"><h2>Objek yang ditolak</h2><div class="scroll"><table>'
            "<thead><tr><th>objek</th><th>jenis</th><th>pemilihan</th><th>alasan</th></tr>"
            f"</thead><tbody>{rows}</tbody></table></div></section>"
        )
    parts.append(
        '<section class="card" id="verify"><h2>Periksa sendiri · verify it yourself</h2>'
        "<p>Unduh semua objek bertanda tangan dan foto TPS ini beserta berkas kepercayaan "
        "(trust file), lalu periksa tanpa internet:</p>"
        f'<p><a class="btn" href="/tps/{e(tps)}/{e(bundle_name(tps))}" download>'
        f"Unduh {e(bundle_name(tps))}</a></p><pre>{e(verify_command(tps))}</pre>"
        '<p class="muted">Bandingkan <span class="code">root_id</span> di trust.json dengan '
        "yang diumumkan KPU; tanpa itu pemeriksaan hanya membuktikan bahwa server ini "
        "konsisten.</p></section>"
    )
    return page(f"TPS {tps}", header, "".join(parts), nonce)
