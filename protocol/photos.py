"""Photo rules: a result carries exactly three C.Hasil sheets as JPEG or PNG blobs.

The photo bytes never travel inside a signed object: the result commits to each sheet's SHA-256
and size, and the bytes move separately as content-addressed blobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SchemaError, Violation

SHEETS = (1, 2, 3)
MAX_PHOTO_BYTES = 15 * 1000 * 1000
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_type(head: bytes) -> str | None:
    """Return ``"jpeg"`` or ``"png"`` from the first bytes of a file, else None."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """A result's commitment to one photographed sheet."""

    sheet: int
    sha256: bytes
    size: int
    type: str

    def to_map(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "sha256": self.sha256, "size": self.size, "type": self.type}

    @classmethod
    def from_map(cls, m: Any) -> PhotoRef:
        if not isinstance(m, dict) or set(m) != {"sheet", "sha256", "size", "type"}:
            raise SchemaError("photo entry must have exactly sheet, sha256, size, type")
        sheet, digest, size, kind = m["sheet"], m["sha256"], m["size"], m["type"]
        if not isinstance(sheet, int) or isinstance(sheet, bool):
            raise SchemaError("photo sheet must be an integer")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise SchemaError("photo sha256 must be 32 bytes")
        if not isinstance(size, int) or isinstance(size, bool):
            raise SchemaError("photo size must be an integer")
        if not isinstance(kind, str):
            raise SchemaError("photo type must be a string")
        return cls(sheet, digest, size, kind)


def check_photos(photos: list[PhotoRef], *, exact: bool = True) -> list[Violation]:
    """Hard rules on the photo commitments of a result (``exact``: sheets 1, 2, 3), or, with
    ``exact=False``, on the optional photos of an admission, objection or correction (their
    count and numbering are schema rules; type and size are checked here)."""
    out: list[Violation] = []
    if exact and len(photos) != len(SHEETS):
        out.append(Violation("photo-count", f"exactly 3 photos required, got {len(photos)}"))
    sheets = sorted(p.sheet for p in photos)
    if exact and len(photos) == len(SHEETS) and tuple(sheets) != SHEETS:
        out.append(Violation("photo-sheets", f"sheets must be 1, 2, 3, got {sheets}"))
    for p in photos:
        if p.type not in ("jpeg", "png"):
            out.append(Violation("photo-type", f"sheet {p.sheet}: not a JPEG or PNG"))
        if not 0 < p.size <= MAX_PHOTO_BYTES:
            out.append(
                Violation("photo-size", f"sheet {p.sheet}: {p.size} bytes, limit 1..15,000,000")
            )
    return out
