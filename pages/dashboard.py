"""The dashboard's HTML: the overview page and the TPS page, rendered from the JSON views.

Everything that comes from objects or the manifest is untrusted text: server-side it passes
through :func:`html.escape`; the overview page's inline script re-renders from /api/status every
few seconds building nodes with ``textContent`` and ``setAttribute`` only (never ``innerHTML``).
Pages carry a per-response nonce for a strict Content-Security-Policy (see :func:`csp`).
"""

from __future__ import annotations

import html
import re
from typing import Any

REFRESH_MS = 5000
MAX_MISSING_SHOWN = 30
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.15rem .6rem;text-align:left;
border-bottom:1px solid #ddd}progress{width:12rem}.num{text-align:right}
.conflict{color:#a00}.muted{color:#777;font-size:.9em}img{max-width:30%;margin:.3rem}
"""

SCRIPT = """
(function(){
const el=(tag,text,attrs)=>{const n=document.createElement(tag);
 if(text!==undefined&&text!==null)n.textContent=String(text);
 for(const k in (attrs||{}))n.setAttribute(k,String(attrs[k]));return n;};
const row=(cells)=>{const tr=el('tr');for(const c of cells){const td=el('td');
 if(c instanceof Node)td.appendChild(c);else td.textContent=String(c);
 tr.appendChild(td);}return tr;};
const tps=(code)=>el('a',code,{href:'/tps/'+encodeURIComponent(code)});
const bar=(v,max)=>el('progress',null,{value:v,max:Math.max(max,1)});
function election(e){const s=el('section');
 s.appendChild(el('h2',e.kind+' \\u2014 '+e.name+' ('+e.region+')'));
 const p=el('p');p.appendChild(bar(e.tps_accepted,e.tps_expected));
 p.appendChild(el('span',' '+e.tps_accepted+' / '+e.tps_expected+' TPS counted, '+e.tps_conflict+
  ' in conflict, '+e.tps_missing+' missing, '+e.tps_photos_complete+' with all photos'));
 s.appendChild(p);const t=el('table');t.appendChild(row(['ballot number','votes']));
 for(const k in e.tally)t.appendChild(row([k,e.tally[k]]));s.appendChild(t);
 const k=el('table');k.appendChild(row(['kecamatan','progress','counted','conflict','photos',
  'missing']));
 for(const c of e.kecamatan){const m=el('span');
  for(const code of c.missing.slice(0,__MAX_MISSING__)){m.appendChild(tps(code));
   m.appendChild(document.createTextNode(' '));}
  if(c.missing.length>__MAX_MISSING__)m.appendChild(el('span','\\u2026'));
  k.appendChild(row([c.name+' ('+c.code+')',bar(c.tps_accepted,c.tps_expected),
   c.tps_accepted+' / '+c.tps_expected,c.tps_conflict,c.tps_photos_complete,m]));}
 s.appendChild(k);return s;}
function render(st){const app=document.getElementById('app');
 const f=document.createDocumentFragment();
 for(const e of st.elections)f.appendChild(election(e));
 const c=el('section');c.appendChild(el('h2','Conflicts'));const t=el('table');
 t.appendChild(row(['TPS','election','results','signers']));
 for(const x of st.conflicts)t.appendChild(row([tps(x.tps),x.election,x.objects.join(' '),
  x.signers.join(' ')]));
 c.appendChild(t);f.appendChild(c);const r=el('section');r.appendChild(el('h2',
  'Results of revoked signers'));const rt=el('table');rt.appendChild(row(['TPS','election',
  'result','signer']));
 for(const x of st.revoked_results)rt.appendChild(row([tps(x.tps),x.election,x.id,x.signer]));
 r.appendChild(rt);f.appendChild(r);app.replaceChildren(f);
 document.getElementById('log').textContent='log: '+st.log.length+' entries, head '+st.log.head;}
async function tick(){const u=document.getElementById('updated');
 try{const r=await fetch('/api/status',{cache:'no-store'});
  if(r.ok){render(await r.json());u.textContent='updated '+new Date().toLocaleTimeString();}
  else u.textContent='server answered '+r.status;}
 catch(e){u.textContent='cannot reach the server; retrying';}}
setInterval(tick,__REFRESH__);
})();
""".replace("__MAX_MISSING__", str(MAX_MISSING_SHOWN)).replace("__REFRESH__", str(REFRESH_MS))


def csp(nonce: str) -> str:
    """The Content-Security-Policy header for a page rendered with ``nonce``."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, nonce: str, script: str = "") -> str:
    js = f'<script nonce="{e(nonce)}">{script}</script>' if script else ""
    return (
        '<!doctype html><html lang="id"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)}</title><style nonce="{e(nonce)}">{STYLE}</style></head>'
        f"<body>{body}{js}</body></html>"
    )


def _rows(header: list[str], rows: list[list[str]]) -> str:
    """A table; header cells are escaped here, row cells must already be safe HTML."""
    head = "".join(f"<td>{e(h)}</td>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _tps_link(code: str) -> str:
    return f'<a href="/tps/{e(code)}">{e(code)}</a>'


def _bar(value: int, top: int) -> str:
    return f'<progress value="{int(value)}" max="{max(int(top), 1)}"></progress>'


def _election(el: dict[str, Any]) -> str:
    head = f"<h2>{e(el['kind'])} — {e(el['name'])} ({e(el['region'])})</h2>"
    summary = (
        f"<p>{_bar(el['tps_accepted'], el['tps_expected'])}<span> {e(el['tps_accepted'])} / "
        f"{e(el['tps_expected'])} TPS counted, {e(el['tps_conflict'])} in conflict, "
        f"{e(el['tps_missing'])} missing, {e(el['tps_photos_complete'])} with all photos</span></p>"
    )
    tally = _rows(["ballot number", "votes"], [[e(k), e(v)] for k, v in el["tally"].items()])
    kec = []
    for c in el["kecamatan"]:
        missing = " ".join(_tps_link(m) for m in c["missing"][:MAX_MISSING_SHOWN])
        if len(c["missing"]) > MAX_MISSING_SHOWN:
            missing += " <span>…</span>"
        kec.append(
            [
                f"{e(c['name'])} ({e(c['code'])})",
                _bar(c["tps_accepted"], c["tps_expected"]),
                f"{e(c['tps_accepted'])} / {e(c['tps_expected'])}",
                e(c["tps_conflict"]),
                e(c["tps_photos_complete"]),
                missing,
            ]
        )
    header = ["kecamatan", "progress", "counted", "conflict", "photos", "missing"]
    return f"<section>{head}{summary}{tally}{_rows(header, kec)}</section>"


def render_dashboard(status: dict[str, Any], nonce: str) -> str:
    """The overview page: progress per kecamatan, tally, conflicts, revoked results."""
    elections = "".join(_election(el) for el in status["elections"])
    conflicts = _rows(
        ["TPS", "election", "results", "signers"],
        [
            [
                _tps_link(c["tps"]),
                e(c["election"]),
                e(" ".join(c["objects"])),
                e(" ".join(c["signers"])),
            ]
            for c in status["conflicts"]
        ],
    )
    revoked = _rows(
        ["TPS", "election", "result", "signer"],
        [
            [_tps_link(r["tps"]), e(r["election"]), e(r["id"]), e(r["signer"])]
            for r in status["revoked_results"]
        ],
    )
    log = status["log"]
    body = (
        f"<h1>{e(status['name'])}</h1>"
        f'<p class="muted"><span id="log">log: {e(log["length"])} entries, head '
        f'{e(log["head"])}</span> · <span id="updated">live</span></p>'
        f'<div id="app">{elections}<section><h2>Conflicts</h2>{conflicts}</section>'
        f"<section><h2>Results of revoked signers</h2>{revoked}</section></div>"
    )
    return _page(status["name"], body, nonce, SCRIPT)


def _photos(photos: list[dict[str, Any]]) -> str:
    out = []
    for p in photos:
        digest = str(p["sha256"])
        if p["present"] and _HEX64.fullmatch(digest):
            out.append(f'<img src="/v1/blobs/{digest}" alt="sheet {e(p["sheet"])}">')
        else:
            out.append(f"<span>sheet {e(p['sheet'])}: not received yet</span>")
    return "".join(out)


def _result(r: dict[str, Any]) -> str:
    cls = ' class="conflict"' if r["status"] in ("conflict", "rejected") else ""
    head = (
        f"<h3{cls}>revision {e(r['revision'])}: {e(r['status'])} {e(r['reason'])}</h3>"
        f"<p>result {e(r['id'])}<br>signed by {e(r['signer_label'])} (key {e(r['signer'])}, "
        f"serial {e(r['signer_serial'])})</p>"
    )
    numbers = [[e(k), e(v)] for k, v in r["votes"].items()]
    numbers += [["valid", e(r["valid"])], ["invalid", e(r["invalid"])]]
    warnings = ", ".join(e(w) for w in r["warnings"]) or "none"
    ends = _rows(
        ["endorsed by", "role", "statement", "status"],
        [
            [e(x["signer"]), e(x["role"]), e(x["statement"]), e(f"{x['status']} {x['reason']}")]
            for x in r["endorsements"]
        ],
    )
    rc = r["receipt"]
    receipt = (
        f'<p class="muted">receipt {e(rc["id"])}: {e(rc["status"])} at log index '
        f"{e(rc['log_index'])}, hash {e(rc['log_hash'])}, server time {e(rc['server_time'])}</p>"
        if rc
        else ""
    )
    return (
        f"<article>{head}{_rows(['ballot number', 'votes'], numbers)}"
        f"<p>warnings: {warnings}</p>{_photos(r['photos'])}{ends}{receipt}</article>"
    )


def render_tps(detail: dict[str, Any], nonce: str) -> str:
    """The TPS page: each election's results with numbers, photos, signer, endorsements."""
    parts = [
        f'<p><a href="/">overview</a></p><h1>TPS {e(detail["tps"])}</h1>'
        f"<p>desa {e(detail['desa']['name'])}, kecamatan {e(detail['kecamatan']['name'])}"
        f"{', DPT ' + e(detail['dpt']) if detail['dpt'] is not None else ''}</p>"
    ]
    for el in detail["elections"]:
        parts.append(f"<section><h2>{e(el['kind'])}: {e(el['state'])}</h2>")
        parts.extend(_result(r) for r in el["results"])
        if not el["results"]:
            parts.append("<p>no result received yet</p>")
        parts.append("</section>")
    if detail["rejected"]:
        parts.append("<section><h2>Rejected objects</h2>")
        parts.append(
            _rows(
                ["object", "kind", "election", "reason"],
                [
                    [e(o["id"]), e(o["kind"]), e(o["election"]), e(o["reason"])]
                    for o in detail["rejected"]
                ],
            )
        )
        parts.append("</section>")
    return _page(f"TPS {detail['tps']}", "".join(parts), nonce)


def render_error(title: str, message: str, nonce: str) -> str:
    return _page(title, f"<h1>{e(title)}</h1><p>{e(message)}</p>", nonce)
