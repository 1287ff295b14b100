"""The blob receiver: an incoming photo stream appended to its partial file, finished when
complete, its row committed with the other arrivals of the moment.

A photo's bytes go to its partial file on the store's blob thread, hashed as they are written
(:class:`~.blobs.Partial`); at the end the file is fsynced, its hash checked, renamed into place
and the directory fsynced (still on the blob thread), and only then is its ``blobs`` row
committed, by :class:`Arrivals`: the photos that finish while one commit runs share the next
transaction (one fsync for the group). :meth:`BlobReceiver.receive` returns only after its row
is committed: a photo is never reported complete (to an uploader, or to a pulling session)
before a crash would keep it. The sink hears of each arrival after the commit.

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

from estafet.protocol.photos import MAX_PHOTO_BYTES

from . import wire
from .accept import Sink
from .blobs import Partial
from .errors import BlobMismatch, StoreError
from .peers import Stats
from .store import Store, StoreDB
from .stream import ReadAhead

BLOB_READ_TIMEOUT = 20.0


class ResumeMismatch(BlobMismatch):
    """A resumed transfer did not hash right: start again from zero (nobody is blamed)."""


class Arrivals:
    """Group commit of ``blobs`` rows: :meth:`commit` returns once the row of its photo (whose
    file is already in place) is committed; arrivals that come while a commit runs wait for it
    and then share the next transaction. The commit runs on the store's writer thread as a
    future that completes even if every waiter is cancelled, so no task outlives its caller."""

    def __init__(self, store: Store, sink: Sink, now: Callable[[], int]) -> None:
        self.store = store
        self.sink = sink
        self.now = now
        self._pending: list[tuple[bytes, int, asyncio.Future[bool]]] = []
        self._lock = asyncio.Lock()

    async def commit(self, sha: bytes, size: int) -> bool:
        """Commit the row of ``sha``; True when the sink says the store changed because of it
        (the sink hears of it after the commit, never instead)."""
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((sha, size, mine))
        async with self._lock:  # one commit at a time; the next takes every arrival since
            if not mine.done():
                group, self._pending = self._pending, []
                job = self.store.write_future(self._commit, [(s, n) for s, n, _ in group])
                job.add_done_callback(lambda job: _settle(group, job))
                await asyncio.wait([job])
        return await mine

    def _commit(self, sdb: StoreDB, group: list[tuple[bytes, int]]) -> list[bool | Exception]:
        now = self.now()
        sdb.add_blobs(group, now)  # committed: the sink runs after, never instead
        out: list[bool | Exception] = []
        for sha, _ in group:
            try:
                out.append(self.sink.blob_arrived(sdb, sha, now))
            except Exception as exc:  # that photo's sink failed; the others' still count
                out.append(exc)
        return out


def _settle(
    group: list[tuple[bytes, int, asyncio.Future[bool]]],
    job: asyncio.Future[list[bool | Exception]],
) -> None:
    if job.cancelled():
        outcomes: list[bool | BaseException] = [asyncio.CancelledError()] * len(group)
    elif (exc := job.exception()) is not None:
        outcomes = [exc] * len(group)
    else:
        outcomes = list(job.result())
    for (_, _, fut), outcome in zip(group, outcomes, strict=True):
        if fut.done():
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


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
        self.arrivals = Arrivals(store, sink, now)
        self._locks: dict[tuple[bytes, str], tuple[asyncio.Lock, int]] = {}  # lock, users

    @staticmethod
    def read_ahead(stream: wire.Readable, want: int | None = None) -> ReadAhead:
        """Start taking a photo body off ``stream`` now, before the checks that precede
        :meth:`receive`: bytes left in aiohttp's buffer when the link drops are lost (see
        :mod:`.stream`). ``want``: the body's length, when known."""
        return ReadAhead(stream, want or MAX_PHOTO_BYTES, BLOB_READ_TIMEOUT)

    async def receive(
        self,
        sha: bytes,
        total: int,
        offset: int,
        stream: wire.Readable | ReadAhead,
        peer: str,
        owner: str = "",
    ) -> int:
        """Append ``stream`` (or a :meth:`read_ahead` of it) to ``owner``'s partial of ``sha``
        from ``offset``; finish when complete. Returns the bytes now held (``total`` only once
        the row is committed). A hash mismatch discards the partial and raises
        :class:`BlobMismatch` (logged as an event against ``peer``), or
        :class:`ResumeMismatch`. Bytes past ``total`` are ignored."""
        ahead = stream if isinstance(stream, ReadAhead) else self.read_ahead(stream, total - offset)
        key = (sha, owner)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._receive(sha, total, offset, ahead, peer, owner)
        finally:
            await ahead.close()
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:  # the last transfer of this partial: forget its lock
                del self._locks[key]

    async def _receive(
        self, sha: bytes, total: int, offset: int, ahead: ReadAhead, peer: str, owner: str
    ) -> int:
        blobs = self.store.blobs
        try:
            part = await self.store.blob_io(blobs.open_partial, sha, total, offset, owner)
        except BlobMismatch:
            raise
        except StoreError as exc:  # the offset is past what we hold (the partial went)
            have = await self.store.blob_io(blobs.partial_size, sha, owner)
            raise web.HTTPConflict(text=f"resume from {have}") from exc
        if part is None:  # another transfer finished it meanwhile: complete once its row is
            await self.arrivals.commit(sha, total)
            return total
        if await self._stream(part, ahead) < total:
            return part.pos
        try:
            await self.store.blob_io(part.finish)
        except BlobMismatch as exc:
            if offset > 0:  # resumed: the earlier bytes may be stale; again from zero, unblamed
                raise ResumeMismatch(f"{exc}; resumed at {offset}: start again from 0") from exc
            await self.store.write(StoreDB.event, self.now(), "warning", peer, str(exc), sha)
            raise
        if await self.arrivals.commit(sha, total):
            self.changed()
        return total

    async def _stream(self, part: Partial, ahead: ReadAhead) -> int:
        """Write what ``ahead`` brings into ``part`` until it is complete or the stream ends;
        a cut keeps every byte that arrived (the partial file is closed, to resume from)."""
        pos = part.pos
        try:
            while pos < part.total and (data := await ahead.take()):
                data = data[: part.total - pos]
                pos = await self.store.blob_io(part.write, data)
                self.stats.blob_bytes_in += len(data)
        finally:
            # a cut link or a cancelled handler: keep what arrived, so the resume starts after
            # it (the blob thread runs in order: this write follows one still in progress)
            await ahead.close()
            if pos < part.total and (rest := ahead.take_nowait()[: part.total - pos]):
                pos = await self.store.blob_io(part.write, rest)
                self.stats.blob_bytes_in += len(rest)
            if pos < part.total:
                await self.store.blob_io(part.close)
        if ahead.error is not None and part.pos < part.total:
            raise ahead.error
        return part.pos
