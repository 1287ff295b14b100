"""Content-addressed photo blobs on disk, written so that a crash never exposes a partial file.

Layout under ``<home>/blobs``: ``ab/abcdef…`` (the SHA-256 in hex) for complete blobs and
``partial/<hex>.part`` for transfers in progress. A transfer appends to the partial file; when
the expected size is reached the file is fsynced, re-hashed, and renamed into place (then the
directory is fsynced). A partial file survives a cut link or a restart and the transfer resumes
at its size, so nothing already received is sent again. A mismatching hash deletes the partial
file and raises :class:`~estafet.relay.errors.BlobMismatch`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import BlobMismatch, StoreError

CHUNK = 64 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobDir:
    """The blob directory. Methods are blocking: call them from a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial_dir = root / "partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: bytes) -> Path:
        h = sha256.hex()
        return self.root / h[:2] / h

    def partial_path(self, sha256: bytes) -> Path:
        return self.partial_dir / f"{sha256.hex()}.part"

    def has(self, sha256: bytes) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: bytes) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def partial_size(self, sha256: bytes) -> int:
        try:
            return self.partial_path(sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, sha256: bytes, offset: int, data: bytes, total: int) -> int:
        """Write ``data`` at ``offset`` of the partial file. Offsets beyond what is held are
        refused; overlapping bytes are overwritten. Returns the partial size afterwards."""
        part = self.partial_path(sha256)
        have = self.partial_size(sha256)
        if offset > have:
            raise StoreError(f"offset {offset} is beyond the {have} bytes held")
        if offset + len(data) > total:
            raise BlobMismatch(f"{len(data)} bytes at {offset} overrun the size {total}")
        with part.open("r+b" if part.exists() else "wb") as fh:
            fh.seek(offset)
            fh.write(data)
            return max(have, offset + len(data))

    def finish(self, sha256: bytes, total: int) -> Path:
        """Verify the complete partial file and move it into place (fsync, hash, rename)."""
        part = self.partial_path(sha256)
        digest = hashlib.sha256()
        size = 0
        with part.open("rb") as fh:
            os.fsync(fh.fileno())
            while chunk := fh.read(CHUNK * 16):
                digest.update(chunk)
                size += len(chunk)
        if size != total or digest.digest() != sha256:
            part.unlink(missing_ok=True)
            raise BlobMismatch(f"blob {sha256.hex()[:16]}… did not match its hash")
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        os.replace(part, final)
        _fsync_dir(final.parent)
        return final

    def write_whole(self, sha256: bytes, data: bytes) -> Path:
        """Store a complete blob given in memory (local photos, bundle import)."""
        if hashlib.sha256(data).digest() != sha256:
            raise BlobMismatch(f"blob {sha256.hex()[:16]}… did not match its hash")
        if self.has(sha256):
            return self.path(sha256)
        part = self.partial_path(sha256)
        with part.open("wb") as fh:
            fh.write(data)
        return self.finish(sha256, len(data))

    def delete(self, sha256: bytes) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def orphans(self, known: set[bytes]) -> list[Path]:
        """Complete blob files that no row names (left by a crash between rename and commit)."""
        out = []
        for sub in self.root.iterdir():
            if sub.name == "partial" or not sub.is_dir():
                continue
            for f in sub.iterdir():
                try:
                    if bytes.fromhex(f.name) not in known:
                        out.append(f)
                except ValueError:
                    out.append(f)
        return out
