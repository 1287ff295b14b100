"""The QR code on the chair's screen: a member's or witness's phone scans it to find the result
(``estafet:result:<id>:<tps>:<election>``). segno is pure Python (Termux installs it with pip,
no compiler); the SVG is inline, so nothing is fetched."""

from __future__ import annotations

import io

import segno


def result_uri(result_id: str, tps: str, election: str) -> str:
    return f"estafet:result:{result_id}:{tps}:{election}"


def qr_svg(text: str) -> str:
    """An SVG QR code of ``text`` (error correction M, black on white, scalable)."""
    code = segno.make_qr(text, error="m")
    buf = io.BytesIO()
    code.save(buf, kind="svg", scale=4, border=2, xmldecl=False, svgns=True, omitsize=True)
    return buf.getvalue().decode("ascii")
