"""The overview page (KPU dashboard at ``/`` on the central server, the PPK recap at ``/`` on a
gateway): per election who leads (pair names, votes, percentages, bars), how far the count is
(a progress bar and a chart over time), per kecamatan a compact row that opens to the missing TPS
grouped by desa, and the TPS to chase, longest silent first.

Mobile first: one column at 360 px, two from 760 px. The page refreshes itself without a reload:
the script asks for ``/`` again with ``If-None-Match`` (the server answers 304 until the store
changes), parses the answer's ``#app`` part (no style or script in it, so the page's CSP has
nothing to refuse) with ``DOMParser`` and swaps ``#app``. The HTML it swaps in is the
server's own escaped rendering, so no untrusted text ever reaches ``innerHTML``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .charts import LEAD, OTHER, meter, progress_chart
from .html import e, num, page, pct, time_tag

REFRESH_MS = 5000
CHASE_SHOWN = 15
CHASE_HEAD = (
    "<thead><tr><th>TPS, desa, kecamatan</th><th>Kurang</th>"
    "<th>Terakhir terdengar</th></tr></thead>"
)
KINDS = {"gubernur": "Gubernur", "bupati": "Bupati", "walikota": "Wali Kota"}

SCRIPT = """
(function(){
let etag=null;
const ago=()=>{const now=Date.now()/1000;
 for(const n of document.querySelectorAll('[data-t]')){const s=Math.max(0,now-Number(n.dataset.t));
  const h=Math.floor(s/3600),m=Math.floor(s%3600/60);
  n.textContent=' ('+(h?h+' j ':'')+m+' mnt lalu)';}};
async function tick(){const u=document.getElementById('updated');
 try{const h={};if(etag)h['If-None-Match']=etag;
  const r=await fetch(location.pathname,{cache:'no-store',headers:h});
  if(r.status===200){etag=r.headers.get('ETag');
   const t=await r.text();const a=t.indexOf('<div id="app">'),b=t.lastIndexOf('</main>');
   if(a<0||b<a)return;
   const doc=new DOMParser().parseFromString(t.slice(a,b),'text/html');
   const fresh=doc.getElementById('app');const app=document.getElementById('app');
   if(fresh&&app){const open=new Set([...app.querySelectorAll('details[open]')].map(d=>d.id));
    for(const d of fresh.querySelectorAll('details'))if(open.has(d.id))d.open=true;
    app.replaceWith(document.adoptNode(fresh));}}
  else if(r.status!==304){u.textContent='server menjawab '+r.status;return;}
  u.textContent='diperbarui '+new Date().toLocaleTimeString('id-ID');ago();}
 catch(err){u.textContent='server tidak terjangkau; mencoba lagi';}}
ago();setInterval(tick,__REFRESH__);
})();
""".replace("__REFRESH__", str(REFRESH_MS))


def _pairs(el: dict[str, Any]) -> str:
    tally: dict[str, int] = el["tally"]
    total = sum(tally.values())
    top = max(tally.values(), default=0)
    rows = []
    for ballot, votes in tally.items():
        name = el.get("pairs", {}).get(ballot) or f"Paslon nomor {ballot}"
        lead = votes == top and top > 0
        share = pct(votes, total)
        rows.append(
            f'<div class="pair{" lead" if lead else ""}"><span class="no">{e(ballot)}</span>'
            f'<span class="name">{e(name)}{" <strong>· unggul</strong>" if lead else ""}</span>'
            f'<span class="v">{e(num(votes))} <span class="pct">{e(share)}</span></span>'
            f"{meter(votes, top, f'{name}: {votes} suara, {share}', LEAD if lead else OTHER, 14)}"
            "</div>"
        )
    return "".join(rows)


def _tps_ref(code: str, text: str, linked: bool, label: str = "") -> str:
    """A link to the TPS page where the server has one (the central), else plain text."""
    if not linked:
        return f'<span class="code">{e(text)}</span>'
    aria = f' aria-label="{e(label)}"' if label else ""
    return f'<a href="/tps/{e(code)}" title="TPS {e(code)}"{aria}>{e(text)}</a>'


def _missing_by_desa(kec: dict[str, Any], linked: bool) -> str:
    if not kec["missing"]:
        return "<p>Semua TPS sudah masuk.</p>"
    names = {d["code"]: d["name"] for d in kec.get("desa", [])}
    groups: dict[str, list[str]] = defaultdict(list)
    for tps in kec["missing"]:
        groups[tps[:10]].append(tps)
    out = [f'<p class="muted">{len(kec["missing"])} TPS belum masuk:</p>']
    for desa, codes in sorted(groups.items(), key=lambda kv: names.get(kv[0], kv[0])):
        links = " ".join(_tps_ref(c, c[10:], linked, f"TPS {c[10:]}, kode {c}") for c in codes)
        out.append(f"<p><strong>{e(names.get(desa, desa))}</strong>: TPS {links}</p>")
    return "".join(out)


def _kecamatan(el: dict[str, Any], linked: bool) -> str:
    objections = any("tps_objections" in k for k in el["kecamatan"])
    head = (
        '<div class="kechdr" aria-hidden="true"><span>Kecamatan</span><span>Progres</span>'
        "<span>Dihitung</span><span>Foto lengkap</span><span>Konflik</span>"
        f"{'<span>Keberatan</span>' if objections else ''}</div>"
    )
    rows = []
    for k in el["kecamatan"]:
        label = f"{k['name']}: {k['tps_accepted']} dari {k['tps_expected']} TPS dihitung"
        conflict = int(k["tps_conflict"])
        extra = (
            f'<span><span class="lbl">keberatan </span>{e(k.get("tps_objections", 0))}</span>'
            if objections
            else ""
        )
        rows.append(
            f'<details class="kec" id="k-{e(el["kind"])}-{e(k["code"])}"><summary>'
            f'<span class="n">{e(k["name"])}</span>'
            f"{meter(k['tps_accepted'], k['tps_expected'], label)}"
            f'<span class="c">{e(k["tps_accepted"])} / {e(k["tps_expected"])}</span>'
            f'<span class="s"><span><span class="lbl">foto </span>'
            f"{e(k['tps_photos_complete'])}</span> "
            f'<span{" class=bad" if conflict else ""}><span class="lbl">konflik </span>'
            f"{conflict}</span> {extra}</span></summary>"
            f'<div class="desa">{_missing_by_desa(k, linked)}</div></details>'
        )
    return f'<div class="{"obj" if objections else ""}">{head}{"".join(rows)}</div>'


def _election(el: dict[str, Any], linked: bool) -> str:
    kind = KINDS.get(el["kind"], el["kind"])
    where = el.get("region_name") or el["region"]
    done, expected = int(el["tps_accepted"]), int(el["tps_expected"])
    tl = el.get("timeline") or {"start": None, "step": 900, "counts": []}
    conflict = int(el["tps_conflict"])
    return (
        f'<section class="card election" id="e-{e(el["kind"])}">'
        f"<h2>Pemilihan {e(kind)} · {e(where)}</h2>"
        f'<p class="big">{e(num(done))} / {e(num(expected))} TPS '
        f'<span class="pct">{e(pct(done, expected))} dihitung</span></p>'
        f"{meter(done, expected, f'{done} dari {expected} TPS dihitung', height=12)}"
        f'<p class="stats"><span{" class=bad" if conflict else ""}>{conflict} konflik</span>'
        f"<span>{e(el['tps_missing'])} belum masuk</span>"
        f"<span>{e(el['tps_photos_complete'])} foto lengkap</span></p>"
        '<div class="cols"><div><h3>Perolehan suara</h3>'
        f"{_pairs(el)}"
        f'<p class="muted">sah {e(num(el["valid"]))} · tidak sah {e(num(el["invalid"]))}</p>'
        "</div><div><h3>TPS dihitung per 15 menit sejak TPS ditutup</h3>"
        f"{progress_chart(tl['start'], tl['step'], tl['counts'], expected)}</div></div>"
        "<h3>Per kecamatan (ketuk untuk TPS yang belum masuk)</h3>"
        f"{_kecamatan(el, linked)}</section>"
    )


def _chase(status: dict[str, Any], linked: bool) -> str:
    rows = status.get("chase")
    if rows is None:
        return ""
    total = int(status.get("chase_total", len(rows)))
    if not rows:
        return '<section class="card"><h2>TPS yang perlu dihubungi</h2><p>Tidak ada.</p></section>'
    body = []
    for i, r in enumerate(rows):
        if i == CHASE_SHOWN:
            body.append("</tbody></table></div><details><summary>tampilkan "
                        f"{len(rows) - CHASE_SHOWN} lagi</summary><div class=\"scroll\"><table>"
                        f"{CHASE_HEAD}<tbody>")  # fmt: skip
        what = [f"belum: {', '.join(r['missing'])}"] if r["missing"] else []
        what += [f"konflik: {', '.join(r['conflict'])}"] if r["conflict"] else []
        heard = r["last_heard"]
        when = (
            f'{time_tag(heard, True)}<span class="muted" data-t="{int(heard)}"></span>'
            if heard is not None
            else '<span class="bad">belum pernah</span>'
        )
        ref = _tps_ref(r["tps"], f"TPS {r['tps'][10:]}", linked)
        body.append(
            f"<tr><td><strong>{ref}</strong> "
            f"{e(r['desa'])}, {e(r['kecamatan'])}<br>"
            f'<span class="code nowrap">{e(r["tps"])}</span></td>'
            f"<td>{e('; '.join(what))}</td><td>{when}</td></tr>"
        )
    more = f" (menampilkan {len(rows)})" if total > len(rows) else ""
    return (
        '<section class="card" id="chase"><h2>TPS yang perlu dihubungi</h2>'
        f'<p class="muted">{total} TPS belum lengkap{more}; yang paling lama tanpa kabar di '
        f'atas.</p><div class="scroll"><table>{CHASE_HEAD}'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        f"{'</details>' if len(rows) > CHASE_SHOWN else ''}</section>"
    )


def _table(title: str, anchor: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<section class="card" id="{anchor}"><h2>{e(title)}</h2><div class="scroll"><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>"
    )


def _tps_link(code: str, linked: bool) -> str:
    return f'<span class="code">{_tps_ref(code, code, linked)}</span>'


def _objects_table(
    title: str, anchor: str, linked: bool, rows: list[tuple[str, str, str, str]]
) -> str:
    """TPS, election, result ids and signer key ids of results that need a look."""
    return _table(
        title,
        anchor,
        ["TPS", "pemilihan", "hasil", "penanda tangan"],
        [
            [_tps_link(tps, linked), e(election), f'<span class="code">{e(ids)}</span>',
             f'<span class="code">{e(signers)}</span>']
            for tps, election, ids, signers in rows
        ],
    )  # fmt: skip


def render_dashboard(status: dict[str, Any], nonce: str) -> str:
    """The overview page of a status view (see :mod:`estafet.pages.model` for its fields).
    TPS codes link to ``/tps/<code>`` unless the view says ``"tps_pages": False`` (a gateway)."""
    linked = bool(status.get("tps_pages", True))
    conflicts = _objects_table(
        "Konflik: dua hasil berbeda untuk satu TPS", "conflicts", linked,
        [(c["tps"], c["election"], " ".join(c["objects"]), " ".join(c["signers"]))
         for c in status["conflicts"]],
    )  # fmt: skip
    revoked = _objects_table(
        "Hasil dari penanda tangan yang dicabut", "revoked", linked,
        [(r["tps"], r["election"], r["id"], r["signer"]) for r in status["revoked_results"]],
    )  # fmt: skip
    log = status["log"]
    header = (
        f"<h1>{e(status['name'])}</h1><p>log {e(num(log['length']))} entri · "
        f'<span id="updated">langsung</span></p>'
    )
    elections = "".join(_election(el, linked) for el in status["elections"])
    body = (
        f'<div id="app"><div class="elections">{elections}</div>'
        f"{_chase(status, linked)}{conflicts}{revoked}"
        f'<p class="muted code">kepala log {e(log["head"])}</p></div>'
    )
    return page(status["name"], header, body, nonce, SCRIPT)
