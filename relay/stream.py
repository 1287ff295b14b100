"""Taking photo bytes off a network stream so that a cut link loses none of what arrived.

aiohttp makes the bytes still buffered in a ``StreamReader`` unreachable when the connection is
lost mid-body: every later ``read()`` raises the payload error instead. On a fast link the whole
rest of what was sent can be sitting in that buffer (it is filled while we wait for the disk, or
before the transfer code has even started reading), and a resume would fetch it all again.

:class:`ReadAhead` keeps a reader task parked on ``read()`` while the caller writes to disk, and
when the stream fails (or the caller stops early) it takes what aiohttp still holds with the
stream's private ``_read_nowait`` (guarded: without it we merely lose that buffer, as before).
Those bytes are the body's next bytes in order, already framed by the HTTP parser. Read-ahead is
capped (``limit``), so a slow disk still pauses the link.
"""

from __future__ import annotations

import asyncio
import contextlib

from . import wire


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
        self._buf = bytearray()
        self._eof = False
        self._limit = limit
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(timeout), name="read-ahead")

    async def _run(self, timeout: float) -> None:
        try:
            while self._left > 0:
                while len(self._buf) >= self._limit:
                    self._changed.clear()
                    await self._changed.wait()
                want = min(self._left, 256 * 1024)
                chunk = await asyncio.wait_for(self._stream.read(want), timeout)
                if not chunk:
                    break
                self._add(chunk)
        except TimeoutError:
            pass
        except Exception as exc:  # a cut link, whatever the stream raised: the caller decides
            self.error = exc
            self._salvage()
        finally:
            self._eof = True
            self._changed.set()

    def _add(self, chunk: bytes) -> None:
        self._left -= len(chunk)
        self._buf += chunk
        self._changed.set()

    def _salvage(self) -> None:
        read_nowait = getattr(self._stream, "_read_nowait", None)
        if callable(read_nowait) and self._left > 0:
            with contextlib.suppress(Exception):
                if data := read_nowait(self._left):
                    self._add(bytes(data))

    async def take(self) -> bytes:
        """What has arrived since the last call; ``b""`` once the stream has ended."""
        while not self._buf and not self._eof:
            self._changed.clear()
            await self._changed.wait()
        return self.take_nowait()

    def take_nowait(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self.taken += len(data)
        self._changed.set()
        return data

    def close(self) -> None:
        """Stop reading; what arrived, buffered here or still in aiohttp, stays takeable."""
        self._task.cancel()
        self._salvage()
