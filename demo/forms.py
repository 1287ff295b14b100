"""Valid C.Hasil forms, as JSON-shaped dicts: the one builder shared by the demo, the tests and
the benchmarks (which import the library, never each other).

:func:`example_form` gives fixed numbers (the issue's example for ``bupati``, a two-pair split
for ``gubernur``), so tests can assert tallies; :func:`plausible_form` varies them per TPS for
the demo. Both satisfy every hard rule of :func:`estafet.protocol.form.check_form`.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any


def example_form(
    election: str = "bupati", tps: str = "6302142001001", **over: Any
) -> dict[str, Any]:
    """A valid form with fixed numbers; ``over`` replaces top-level fields."""
    votes = {"1": 101, "2": 80, "3": 23} if election == "bupati" else {"1": 120, "2": 84}
    form: dict[str, Any] = {
        "election": election,
        "tps": tps,
        "voters": {"dpt": {"m": 120, "f": 131}},
        "turnout": {"dpt": {"m": 100, "f": 110}, "dptb": {"m": 2, "f": 1}, "dpk": {"m": 1, "f": 0}},
        "ballots": {"received": 257, "used": 214, "damaged": 1, "unused": 42},
        "disabled": {"m": 1, "f": 0},
        "votes": votes,
        "valid": 204,
        "invalid": 10,
        "revision": 0,
        "supersedes": None,
    }
    form.update(over)
    return form


def plausible_form(election: str, tps: str, ballots: list[int], i: int) -> dict[str, Any]:
    """A plausible, rule-abiding C.Hasil for TPS number ``i`` with candidate pairs ``ballots``."""
    dpt_m, dpt_f = 110 + i * 3, 120 + i * 2
    t_m, t_f = dpt_m - 15, dpt_f - 12
    turnout = t_m + t_f + 3
    invalid = 4 + i % 3
    valid = turnout - invalid
    votes, left = {}, valid
    for j, b in enumerate(ballots):
        share = left if j == len(ballots) - 1 else valid * (45 - 12 * j + i) // 100
        votes[str(b)] = share
        left -= share
    received = dpt_m + dpt_f + 6
    return example_form(
        election,
        tps,
        voters={"dpt": {"m": dpt_m, "f": dpt_f}},
        turnout={"dpt": {"m": t_m, "f": t_f}, "dptb": {"m": 2, "f": 1}, "dpk": {"m": 0, "f": 0}},
        ballots={
            "received": received,
            "used": turnout,
            "damaged": 1,
            "unused": received - turnout - 1,
        },
        votes=votes,
        valid=valid,
        invalid=invalid,
    )


def make_png(seed: str, width: int = 480, height: int = 360) -> bytes:
    """A real (viewable) PNG: a grey gradient with a seed-dependent stripe, ~0.17 MB raw."""
    shade = zlib.crc32(seed.encode()) % 200
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        stripe = (y // 20) % 2 == 0
        rows.extend(
            bytes(((x + shade) % 256 if stripe else (y + shade) % 256) for x in range(width))
        )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 1))
        + chunk(b"IEND", b"")
    )
