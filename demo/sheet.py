"""C.Hasil-like sheet images for the demo and the tests: a drawn form with the TPS, the votes
per pair and the totals, written as a greyscale PNG by our own code (no imaging library).

Honest about what it is: the header says ``CONTOH`` (sample) and the sheet is plainly a drawing,
not a photo. Text uses a 5x7 bitmap font scaled up; unknown characters draw as blanks.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

GLYPHS = {
    "0": "01110100011001110101110011000101110", "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111", "3": "11110000010000101110000010000111110",
    "4": "00010001100101010010111110001000010", "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110", "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110", "9": "01110100011000101111000010001001100",
    "A": "01110100011000111111100011000110001", "B": "11110100011000111110100011000111110",
    "C": "01110100011000010000100001000101110", "D": "11110100011000110001100011000111110",
    "E": "11111100001000011110100001000011111", "G": "01110100011000010111100011000101111",
    "H": "10001100011000111111100011000110001", "I": "01110001000010000100001000010001110",
    "J": "00111000100001000010000101001001100", "K": "10001100101010011000101001001010001",
    "L": "10000100001000010000100001000011111", "M": "10001110111010110101100011000110001",
    "N": "10001110011010110011100011000110001", "O": "01110100011000110001100011000101110",
    "P": "11110100011000111110100001000010000", "R": "11110100011000111110101001001010001",
    "S": "01111100001000001110000010000111110", "T": "11111001000010000100001000010000100",
    "U": "10001100011000110001100011000101110", "W": "10001100011000110101101011101110001",
    "Y": "10001100010101000100001000010000100", "F": "11111100001000011110100001000010000",
    ".": "00000000000000000000000000110001100", ":": "00000011000110000000011000110000000",
    "-": "00000000000000011111000000000000000", "/": "00001000100001000100010000100010000",
}  # fmt: skip


class Canvas:
    """A white greyscale canvas; 0 is black."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, shade: int = 0) -> None:
        for yy in range(max(y, 0), min(y + h, self.h)):
            start = yy * self.w + max(x, 0)
            end = yy * self.w + min(x + w, self.w)
            self.px[start:end] = bytes([shade]) * max(end - start, 0)

    def frame(self, x: int, y: int, w: int, h: int, t: int = 2) -> None:
        self.rect(x, y, w, t)
        self.rect(x, y + h - t, w, t)
        self.rect(x, y, t, h)
        self.rect(x + w - t, y, t, h)

    def text(self, x: int, y: int, s: str, scale: int = 3) -> int:
        """Draw ``s`` with its top left at (x, y); returns the x after it."""
        for ch in s.upper():
            glyph = GLYPHS.get(ch)
            if glyph:
                for i, bit in enumerate(glyph):
                    if bit == "1":
                        self.rect(x + i % 5 * scale, y + i // 5 * scale, scale, scale)
            x += 6 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.px[y * self.w : (y + 1) * self.w]) for y in range(self.h)
        )

        def chunk(tag: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(tag + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 0, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )  # fmt: skip


def sheet_png(
    tps: str,
    election: str,
    sheet: int,
    votes: Mapping[str, int],
    valid: int,
    invalid: int,
    width: int = 600,
) -> bytes:
    """Sheet ``sheet`` (1..3) of a C.Hasil for ``tps``: a header, the TPS, one row per pair
    with its votes in a box, the totals, and signature boxes for the KPPS and witnesses."""
    height = 580 + 90 * len(votes)
    c = Canvas(width, height)
    c.frame(10, 10, width - 20, height - 20, 3)
    c.rect(10, 10, width - 20, 70, 40)
    c.rect(24, 20, width - 48, 50, 225)
    c.text(34, 28, "C.HASIL-KWK", 5)
    c.text(width - 170, 36, f"LEMBAR {sheet}", 3)
    c.text(30, 100, f"PEMILIHAN {election}", 3)
    c.text(30, 130, f"TPS {tps[10:]}  DESA {tps[:10]}", 3)
    c.text(30, 160, "CONTOH - BUKAN FORMULIR ASLI", 2)
    y = 200
    c.rect(30, y, width - 60, 3)
    for ballot, n in votes.items():
        y += 20
        c.text(40, y + 12, f"PASLON {ballot}", 4)
        c.frame(width - 230, y, 190, 60, 3)
        c.text(width - 215, y + 12, f"{int(n):>4}", 6)
        y += 70
    y += 20
    c.rect(30, y, width - 60, 3)
    for label, n in (("SUARA SAH", valid), ("TIDAK SAH", invalid), ("JUMLAH", valid + invalid)):
        y += 20
        c.text(40, y + 10, label, 3)
        c.frame(width - 230, y, 190, 44, 2)
        c.text(width - 210, y + 8, f"{int(n):>4}", 4)
        y += 46
    y += 30
    for i, who in enumerate(("KPPS", "SAKSI 1", "SAKSI 2")):
        x = 30 + i * ((width - 60) // 3)
        c.frame(x, y, (width - 60) // 3 - 10, 100, 2)
        c.text(x + 10, y + 78, who, 2)
        c.rect(x + 15, y + 40 + 6 * i, (width - 60) // 3 - 50, 3, 90)  # a signature stroke
    return c.png()
