"""The blob receiver: an incoming photo stream appended to its partial file, finished when
complete (fsync, hash, rename, the row and the sink in one writer-thread trip).

Owned by :class:`~.node.Node`, used by the upload route (``PUT /v1/blobs``, the uploader's
proven key as ``owner``) and by sync sessions pulling photos (``owner`` ''). Each (photo, owner)
has its own partial file (:meth:`~.blobs.BlobDir.partial_path`) and its own lock, so transfers
of one photo from two uploaders never write into each other's bytes (issue 11, item 3: anyone
could overwrite a wanted partial at offset 0, and the honest uploader was then blamed).

A hash mismatch of a transfer that *resumed* (started past offset 0) is not proof that this
sender sent wrong bytes: the earlier part may be stale (a crash, an older run). The partial is
dropped and :class:`ResumeMismatch` raised: the sender starts again from zero, unblamed; a
mismatch of a transfer that ran from zero is :class:`~.errors.BlobMismatch` (the sender's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from . import wire
from .accept import Sink
from .errors import BlobMismatch
from .peers import Stats
from .store import Store, StoreDB
from .stream import ReadAhead

BLOB_READ_TIMEOUT = 20.0


class ResumeMismatch(BlobMismatch):
    """A resumed transfer did not hash right: start again from zero (nobody is blamed)."""


class BlobReceiver:
    """Receives photo streams into ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        stats: Stats,
        changed: Callable[[], None],
        now: Callable[[], int],
    ) -> None:
        self.store = store
        self.sink = sink
        self.stats = stats
        self.changed = changed
        self.now = now
        self._locks: dict[tuple[bytes, str], tuple[asyncio.Lock, int]] = {}  # lock, users

    async def receive(
        self, sha: bytes, total: int, offset: int, stream: wire.Readable, peer: str, owner: str = ""
    ) -> int:
        """Append ``stream`` to ``owner``'s partial of ``sha`` from ``offset``; finish when
        complete. Returns the bytes now held. A hash mismatch discards the partial and raises
        :class:`BlobMismatch` (logged as an event against ``peer``), or :class:`ResumeMismatch`."""
        key = (sha, owner)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._receive(sha, total, offset, stream, peer, owner)
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:  # the last transfer of this partial: forget its lock
                del self._locks[key]

    async def _receive(
        self, sha: bytes, total: int, offset: int, stream: wire.Readable, peer: str, owner: str
    ) -> int:
        blobs = self.store.blobs
        # one trip to the writer thread (not two): every hop costs both threads a wake-up
        held, have = await self.store.write(
            lambda sdb: (sdb.has_blob(sha), blobs.partial_size(sha, owner))
        )
        if held:
            return total  # another transfer finished it meanwhile
        if offset > have:
            raise web.HTTPConflict(text=f"resume from {have}")
        pos = await self._stream(sha, total, offset, stream, owner)
        if pos < total:
            return pos
        await self._finish(sha, total, offset, peer, owner)
        return total

    async def _stream(
        self, sha: bytes, total: int, offset: int, stream: wire.Readable, owner: str
    ) -> int:
        blobs = self.store.blobs
        pos = offset
        ahead = ReadAhead(stream, total - offset, BLOB_READ_TIMEOUT)
        try:
            while pos < total and (data := await ahead.take()):
                pos = await self.store.blob_io(blobs.append, sha, pos, data, total, owner)
                self.stats.blob_bytes_in += len(data)
        finally:
            # a cut link or a cancelled handler: keep what arrived, so the resume starts after it
            ahead.close()
            done = offset + ahead.taken  # taken so far: written, or being written right now
            if rest := ahead.take_nowait():
                await self.store.blob_io(lambda: None)  # the writer thread finished that write
                pos = await self.store.blob_io(blobs.append, sha, done, rest, total, owner)
                self.stats.blob_bytes_in += len(rest)
        if ahead.error is not None and pos < total:
            raise ahead.error
        return pos

    async def _finish(self, sha: bytes, total: int, offset: int, peer: str, owner: str) -> None:
        blobs = self.store.blobs
        now = self.now()

        def finish(sdb: StoreDB) -> bool:  # fsync, hash, rename, the row, the sink: one trip
            blobs.finish(sha, total, owner)
            sdb.add_blob(sha, total, now)  # committed: the sink runs after, never instead
            return self.sink.blob_arrived(sdb, sha, now)

        try:
            changed = await self.store.write(finish)
        except BlobMismatch as exc:
            if offset > 0:  # resumed: the earlier bytes may be stale; again from zero, unblamed
                raise ResumeMismatch(f"{exc}; resumed at {offset}: start again from 0") from exc
            await self.store.write(StoreDB.event, self.now(), "warning", peer, str(exc), sha)
            raise
        if changed:
            self.changed()
