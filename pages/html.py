"""The page shell shared by every dashboard screen: escaping, the strict CSP, the stylesheet,
and times shown in WITA and ISO 8601.

Everything that comes from objects or the manifest is untrusted text and passes through
:func:`e`. Pages carry a per-response nonce (:func:`csp`); no inline ``style`` attributes (the
CSP forbids them), so charts size themselves with SVG attributes.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

WITA_TZ = dt.timezone(dt.timedelta(hours=8), "WITA")

STYLE = """
:root{--fg:#1b1f24;--muted:#56606b;--line:#d5dbe2;--bg:#f3f5f7;--card:#fff;--accent:#1d5fbf;
--ok:#18794e;--warn:#8a5a00;--bad:#b42318;--head:#0d2b45}
*{box-sizing:border-box}
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
header{background:var(--head);color:#fff;padding:.7rem 1rem}
header h1{font-size:1.15rem;margin:0;line-height:1.25}
header p{margin:.2rem 0 0;font-size:.85rem;color:#d3dce6}
header a{color:#fff}
main{max-width:1240px;margin:0 auto;padding:.6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.8rem;
margin:0 0 .7rem;min-width:0}
h2{font-size:1.1rem;margin:0 0 .4rem}
h3{font-size:.8rem;margin:.9rem 0 .35rem;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.muted{color:var(--muted);font-size:.88rem}
.big{font-size:1.7rem;font-weight:700;line-height:1.1}
.pct{color:var(--muted);font-weight:400;font-size:1rem}
svg{display:block;width:100%;height:auto}
svg.m10{height:10px}svg.m12{height:12px}svg.m14{height:14px}
.chart{max-width:480px}
@media(max-width:480px){svg.chart text{font-size:15px}}
.stats{display:flex;flex-wrap:wrap;gap:.2rem .9rem;font-size:.9rem;margin:.3rem 0}
.bad{color:var(--bad);font-weight:600}.ok{color:var(--ok)}
.pair{display:grid;grid-template-columns:2rem minmax(0,1fr) auto;gap:.15rem .5rem;
align-items:center;margin:.6rem 0}
.pair .no{grid-row:1/3}
.pair .name{grid-column:2/4;overflow-wrap:anywhere;line-height:1.25}
.pair .v{text-align:right;font-variant-numeric:tabular-nums;font-weight:600;white-space:nowrap}
.pair svg{grid-column:2;grid-row:2}
.no{width:1.8rem;height:1.8rem;border-radius:50%;background:#e3eaf4;text-align:center;
font-weight:700;line-height:1.8rem}
.lead .no{background:var(--accent);color:#fff}
.kec{border-top:1px solid var(--line)}
.kec summary{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:.1rem .6rem;
padding:.45rem .1rem;cursor:pointer;list-style:none;align-items:center}
.kec summary::-webkit-details-marker{display:none}
.kec summary .n{font-weight:600;overflow-wrap:anywhere}
.kec summary .n::before{content:"\\25B8 ";color:var(--muted)}
.kec[open] summary .n::before{content:"\\25BE "}
.kec summary svg{grid-column:1/-1;grid-row:2}
.kec summary .c{text-align:right;font-variant-numeric:tabular-nums;grid-column:2;grid-row:1;
font-weight:600}
.kec summary .s{grid-column:1/-1;font-size:.85rem;color:var(--muted)}
.kechdr{display:none}
.desa{margin:.1rem 0 .6rem 1rem;font-size:.92rem}
.desa p{margin:.25rem 0}
.desa a{display:inline-block;min-width:2.6rem;padding:.15rem .2rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
td,th{padding:.35rem .4rem;text-align:left;border-bottom:1px solid var(--line);
vertical-align:top}
th{font-size:.8rem;color:var(--muted);font-weight:600}
.scroll{overflow-x:auto}
.code{font-family:ui-monospace,monospace;font-size:.85em;overflow-wrap:anywhere}
.nowrap{white-space:nowrap;overflow-wrap:normal}
.photos{display:grid;gap:.6rem}
.photos figure{margin:0}.photos img{width:100%;height:auto;border:1px solid var(--line);
border-radius:6px;background:#fafafa}
.photos figcaption{font-size:.85rem;color:var(--muted)}
.result{display:grid;gap:.8rem}
.numbers td.v{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#eef1f4;padding:.5rem;
border-radius:6px;font-size:.85rem}
.btn{display:inline-block;background:var(--accent);color:#fff;padding:.5rem .8rem;
border-radius:6px;text-decoration:none;font-weight:600}
@media(min-width:760px){
main{padding:1rem}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:0 1.2rem}
.kec summary,.kechdr{grid-template-columns:minmax(8rem,2fr) minmax(3rem,1fr) 4.5rem
4rem 4rem}
.obj .kec summary,.obj .kechdr{grid-template-columns:minmax(8rem,2fr) minmax(3rem,1fr)
4.5rem 4rem 4rem 4.5rem}
.kechdr{display:grid;gap:.1rem .6rem;font-size:.8rem;color:var(--muted);padding:.2rem .1rem}
.kechdr span:nth-child(n+3){text-align:right}
.kec summary svg,.kec summary .c{grid-column:auto;grid-row:auto}
.kec summary .s{display:contents}
.kec summary .s span{text-align:right}
.kec .lbl{display:none}
.photos{grid-template-columns:repeat(3,minmax(0,1fr))}
.result{grid-template-columns:minmax(0,1fr) minmax(0,2fr)}
}
@media(min-width:1100px){.elections{display:grid;grid-template-columns:minmax(0,1fr)
minmax(0,1fr);gap:0 .7rem}.elections .cols{display:block}}
"""


def e(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def csp(nonce: str) -> str:
    """The Content-Security-Policy header for a page rendered with ``nonce``."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def page(title: str, header: str, body: str, nonce: str, script: str = "") -> str:
    """A whole document: ``header`` and ``body`` must already be safe HTML."""
    js = f'<script nonce="{e(nonce)}">{script}</script>' if script else ""
    return (
        '<!doctype html><html lang="id"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)}</title><style nonce="{e(nonce)}">{STYLE}</style></head>'
        f"<body><header>{header}</header><main>{body}</main>{js}</body></html>"
    )


def wita(ts: int | None, with_date: bool = False) -> str:
    """``14:05 WITA`` (or ``27-11-2024 14:05 WITA``) for a Unix time; ``-`` for None."""
    if ts is None:
        return "-"
    t = dt.datetime.fromtimestamp(int(ts), WITA_TZ)
    return t.strftime("%d-%m-%Y %H:%M WITA" if with_date else "%H:%M WITA")


def iso(ts: int | None) -> str:
    """ISO 8601 with the WITA offset: ``2024-11-27T14:05:31+08:00``."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(int(ts), WITA_TZ).isoformat()


def time_tag(ts: int | None, with_date: bool = False) -> str:
    """A ``<time>`` element showing WITA, carrying ISO in ``datetime`` and a tooltip."""
    if ts is None:
        return "-"
    return f'<time datetime="{e(iso(ts))}" title="{e(iso(ts))}">{e(wita(ts, with_date))}</time>'


def pct(part: int, whole: int) -> str:
    """``74,8%`` (Indonesian decimal comma); ``0%`` of nothing."""
    if whole <= 0:
        return "0%"
    return f"{100 * part / whole:.1f}%".replace(".", ",")


def num(n: int) -> str:
    """``12.345`` (Indonesian thousands separator)."""
    return f"{int(n):,}".replace(",", ".")


def render_error(title: str, message: str, nonce: str) -> str:
    header = f'<h1>{e(title)}</h1><p><a href="/">ringkasan · overview</a></p>'
    return page(title, header, f'<section class="card"><p>{e(message)}</p></section>', nonce)
