"""Taking photo bytes off a network stream so that a cut link loses none of what arrived.

aiohttp makes the bytes still buffered in a ``StreamReader`` unreachable once the connection is
lost mid-body: every later read (``read``, ``readany``, ``read_nowait``) raises the payload
error instead. On a fast link a whole burst can be sitting in that buffer (it is filled while we
wait for the disk, or before the transfer code has even started reading), and a resume would
fetch it all again.

:class:`ReadAhead` therefore never leaves bytes there: a reader task it owns stays parked on
the stream while the caller writes to disk, and takes *everything* aiohttp holds each time it
wakes (``readany()``; a read that returns after its wait never raises, even when the loss was
reported in the same loop iteration as the last bytes). It also takes what aiohttp holds when
it is created (the public ``read_nowait()``), so it is made first thing in a handler
(``api.blob_put``) or a session (:meth:`~.receiver.BlobReceiver.receive`), before any store
trip gives the link time to drop. When the caller stops early (cancelled, a disk error) the
task is stopped first and what aiohttp still holds is taken the same way.

Read-ahead is capped (``limit``): when our buffer is full the task stops reading, aiohttp pauses
the socket past its own high-water mark (2 x 64 KiB by default, as long as nobody asks it for
bigger reads: hence ``readany``), and a slow disk pauses the link. A link cut *while* the disk
lags that far behind can lose up to that high-water mark of what arrived; so can a cut before
the handler first runs. Every other cut loses nothing (``tests/relay/test_resume.py``).
"""

from __future__ import annotations

import asyncio
import contextlib

from . import wire

CHUNK = 256 * 1024
"""Read size for streams without ``readany`` (fakes in tests)."""


class ReadAhead:
    """Read up to ``want`` bytes of ``stream`` in a task it owns (stopped by :meth:`close`).

    A read that waits longer than ``timeout`` for the next chunk ends the stream quietly (what
    arrived is kept, the transfer resumes later); any other failure is kept in :attr:`error`
    for the caller to raise once it has stored what arrived before it.
    """

    def __init__(
        self, stream: wire.Readable, want: int, timeout: float, limit: int = 1024 * 1024
    ) -> None:
        self.error: BaseException | None = None
        self.taken = 0
        self._stream = stream
        self._left = want
        self._buf: list[bytes] = []
        self._size = 0  # bytes in _buf
        self._eof = False
        self._limit = limit
        self._changed = asyncio.Event()
        self._take_buffered()  # now: the link may drop before the task first runs
        self._task = asyncio.create_task(self._run(timeout), name="read-ahead")

    async def _run(self, timeout: float) -> None:
        readany = getattr(self._stream, "readany", None)
        try:
            while self._left > 0:
                while self._size >= self._limit:
                    self._changed.clear()
                    await self._changed.wait()
                async with asyncio.timeout(timeout):
                    # readany: all aiohttp holds, without raising its buffer limits (a
                    # read(n) would raise them to 2n, and more would sit where a cut loses it)
                    chunk = await (readany() if callable(readany) else self._stream.read(CHUNK))
                if not chunk:
                    break
                self._add(bytes(chunk[: self._left]))
        except TimeoutError:
            pass
        except Exception as exc:  # a cut link, whatever the stream raised: the caller decides
            self.error = exc
        finally:
            self._eof = True
            self._changed.set()

    def _add(self, chunk: bytes) -> None:
        self._left -= len(chunk)
        self._buf.append(chunk)
        self._size += len(chunk)
        self._changed.set()

    async def take(self) -> bytes:
        """What has arrived since the last call; ``b""`` once the stream has ended."""
        while not self._buf and not self._eof:
            self._changed.clear()
            await self._changed.wait()
        return self.take_nowait()

    def take_nowait(self) -> bytes:
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        self.taken += len(data)
        self._changed.set()
        return data

    async def close(self) -> None:
        """Stop reading; what arrived, buffered here or still in aiohttp, stays takeable."""
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])  # its end, not its CancelledError
        self._take_buffered()

    def _take_buffered(self) -> None:
        """What aiohttp holds right now, with its public ``read_nowait`` (no reader may be
        waiting; it raises once the stream failed, and then there is nothing to take)."""
        read_nowait = getattr(self._stream, "read_nowait", None)
        if callable(read_nowait) and self._left > 0:
            with contextlib.suppress(Exception):
                if data := read_nowait(self._left):
                    self._add(bytes(data))
