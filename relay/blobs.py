"""Content-addressed photo blobs on disk, written so that a crash never exposes a partial file.

Layout under ``<home>/blobs``: ``ab/abcdef…`` (the SHA-256 in hex) for complete blobs and
``partial/<hex>.part`` for transfers in progress (``partial/<hex>.<uploader key id>.part`` for
uploads a proven peer pushes to us: one per uploader, so nobody can overwrite another's). A
transfer (:class:`Partial`) holds its partial file open and hashes the bytes as it appends them
(a resumed transfer first hashes the bytes already held, once); when the expected size is reached
the file is fsynced, its hash checked, and it is renamed into place (then the directory is
fsynced): the file is never read back. A partial file survives a cut link or a restart and the
transfer resumes at its size, so nothing already received is sent again. A mismatching hash
deletes the partial file and raises :class:`~estafet.relay.errors.BlobMismatch`.
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

    def partial_path(self, sha256: bytes, owner: str = "") -> Path:
        """The partial file of a transfer: ours (``owner`` '') or an uploader's (its proven key
        id, hex), so no uploader can spoil another's transfer (issue 11, item 3)."""
        if owner and not (len(owner) <= 64 and all(c in "0123456789abcdef" for c in owner)):
            raise StoreError("an uploader is named by its key id (hex)")
        return self.partial_dir / (
            f"{sha256.hex()}.{owner}.part" if owner else f"{sha256.hex()}.part"
        )

    def drop_partials(self, sha256: bytes) -> None:
        """Every partial file of ``sha256`` (it is complete now, or was wrong)."""
        for part in self.partial_dir.glob(f"{sha256.hex()}*.part"):
            part.unlink(missing_ok=True)

    def has(self, sha256: bytes) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: bytes) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def partial_size(self, sha256: bytes, owner: str = "") -> int:
        try:
            return self.partial_path(sha256, owner).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, sha256: bytes, offset: int, data: bytes, total: int, owner: str = "") -> int:
        """Write ``data`` at ``offset`` of the partial file. Offsets beyond what is held are
        refused; overlapping bytes are overwritten. Returns the partial size afterwards."""
        part = self.partial_path(sha256, owner)
        have = self.partial_size(sha256, owner)
        if offset > have:
            raise StoreError(f"offset {offset} is beyond the {have} bytes held")
        if offset + len(data) > total:
            raise BlobMismatch(f"{len(data)} bytes at {offset} overrun the size {total}")
        with part.open("r+b" if part.exists() else "wb") as fh:
            fh.seek(offset)
            fh.write(data)
            return max(have, offset + len(data))

    def finish(self, sha256: bytes, total: int, owner: str = "") -> Path:
        """Verify the complete partial file and move it into place (fsync, hash, rename); the
        other uploaders' partial files of the same blob go. Reads the file back to hash it: for
        partial files left by a crash; a transfer in progress uses :class:`Partial`."""
        part = self.partial_path(sha256, owner)
        if not part.exists() and self.has(sha256):
            # another uploader finished the same photo first (sessions run concurrently) and
            # its finish removed this partial: the blob is in place, hash-checked, so are we
            return self.path(sha256)
        digest = hashlib.sha256()
        size = 0
        with part.open("rb") as fh:
            os.fsync(fh.fileno())
            while chunk := fh.read(CHUNK * 16):
                digest.update(chunk)
                size += len(chunk)
        return self._place(part, sha256, size == total and digest.digest() == sha256)

    def _place(self, part: Path, sha256: bytes, good: bool) -> Path:
        """Rename the fsynced, hash-checked ``part`` into place and fsync the directory; or
        drop it (``good`` False: BlobMismatch). A blob already in place wins (same bytes)."""
        if not good:
            part.unlink(missing_ok=True)
            raise BlobMismatch(f"blob {sha256.hex()[:16]}… did not match its hash")
        final = self.path(sha256)
        if final.is_file():  # another transfer of the same photo finished first
            part.unlink(missing_ok=True)
        else:
            final.parent.mkdir(exist_ok=True)
            os.replace(part, final)
            _fsync_dir(final.parent)
        self.drop_partials(sha256)
        return final

    def write_whole(self, sha256: bytes, data: bytes) -> Path:
        """Store a complete blob given in memory (local photos, bundle import): hashed in
        memory, written, fsynced, renamed; never read back."""
        if hashlib.sha256(data).digest() != sha256:
            raise BlobMismatch(f"blob {sha256.hex()[:16]}… did not match its hash")
        if self.has(sha256):
            return self.path(sha256)
        part = self.partial_path(sha256)
        with part.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return self._place(part, sha256, True)

    def open_partial(
        self, sha256: bytes, total: int, offset: int, owner: str = ""
    ) -> Partial | None:
        """A transfer into ``owner``'s partial file of ``sha256`` from ``offset`` (see
        :class:`Partial`); None when the blob is in place already. Raises StoreError when
        ``offset`` is beyond the bytes held."""
        if self.has(sha256):
            return None
        return Partial(self, sha256, total, offset, owner)

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


class Partial:
    """One transfer into a partial file, held open, hashed as it is written. Blocking: every
    call runs on the store's one blob thread (in order), never on the event loop.

    The running SHA-256 covers bytes ``[0, pos)``: a transfer from ``offset`` > 0 (a resume)
    hashes the ``offset`` bytes already held once, when it opens. :meth:`finish` fsyncs,
    compares that hash, renames into place and fsyncs the directory, without reading the file.
    """

    def __init__(self, blobs: BlobDir, sha256: bytes, total: int, offset: int, owner: str) -> None:
        self.blobs = blobs
        self.sha256 = sha256
        self.total = total
        self.path = blobs.partial_path(sha256, owner)
        have = blobs.partial_size(sha256, owner)
        if offset > have:
            raise StoreError(f"offset {offset} is beyond the {have} bytes held")
        if offset > total:
            raise BlobMismatch(f"offset {offset} is beyond the size {total}")
        self._fh = self.path.open("r+b" if have else "wb")
        self._digest = hashlib.sha256()
        left = offset
        while left > 0 and (chunk := self._fh.read(min(left, CHUNK * 16))):
            self._digest.update(chunk)
            left -= len(chunk)
        self._fh.seek(offset)
        self.pos = offset

    def write(self, data: bytes) -> int:
        """Append ``data`` at :attr:`pos` (overwriting what an earlier transfer left there);
        returns the new position."""
        if self.pos + len(data) > self.total:
            raise BlobMismatch(f"{len(data)} bytes at {self.pos} overrun the size {self.total}")
        self._fh.write(data)
        self._digest.update(data)
        self.pos += len(data)
        return self.pos

    def close(self) -> None:
        """Stop here: what was written stays in the partial file for a resume."""
        if not self._fh.closed:
            self._fh.close()

    def finish(self) -> Path:
        """fsync, check the hash computed while writing, rename into place, fsync the directory
        (BlobMismatch: the partial file is dropped). Another transfer of the same photo that
        finished first wins; this one's bytes go."""
        try:
            if self.pos == self.total:
                self._fh.flush()
                os.fsync(self._fh.fileno())
        finally:
            self.close()
        good = self.pos == self.total and self._digest.digest() == self.sha256
        if not self.path.exists() and self.blobs.has(self.sha256):
            good = True  # dropped by the winner's finish: the blob in place is hash-checked
        return self.blobs._place(self.path, self.sha256, good)
