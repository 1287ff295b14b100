"""A user-space TCP proxy that injects the faults `tc netem` cannot give us on these machines.

Stdlib only (asyncio). Faults, all optional and applied per connection, per direction:

- ``delay``: fixed latency in seconds added to every chunk (pipelined: it does not cap throughput);
- ``rate``: bytes per second, a token bucket on each direction of each connection;
- ``flip_at``: flip one bit (``flip_mask``, default the lowest) of the byte at that offset of the
  stream in direction ``flip_dir`` ("up" = client to target, "down" = target to client);
- ``cut_after``: forward exactly N bytes in direction ``cut_dir``, then cut the connection:
  ``cut_mode`` "reset" (RST both sides), "close" (FIN both sides) or "hang" (stop forwarding and
  keep both sockets open, like a link that died silently: only read timeouts notice);
- ``fault_limit``: apply flip/cut only to the first N connections (so a retry can succeed).

Byte counts: ``bytes_up`` / ``bytes_down`` (totals written to the other side), ``connections``
and ``conns`` (one dict per connection).

Three ways to use it:

- in an asyncio test: ``async with Proxy(("127.0.0.1", 0), target, delay=0.1) as p: p.port``;
- in a sync test: ``with Proxy(...) as p:`` runs its own event loop in a thread;
- inside a lab namespace: ``python -m tests.net.proxy --listen IP:PORT --target IP:PORT ...``
  prints ``READY ip port`` once listening, ``CONN {json}`` per finished connection and
  ``STATS {json}`` on SIGTERM/SIGINT (``Lab.proxy`` wraps this).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

UP = "up"
DOWN = "down"
CUT_MODES = ("reset", "close", "hang")
CHUNK = 65536

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


@dataclass(eq=False)
class _Conn:
    index: int
    faulty: bool
    up: int = 0
    down: int = 0
    flipped: bool = False
    cut: bool = False
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "up": self.up,
            "down": self.down,
            "flipped": self.flipped,
            "cut": self.cut,
            "error": self.error,
        }


class Proxy:
    """TCP proxy with delay, rate limit, one bit flip and a cut after N bytes."""

    def __init__(
        self,
        listen: Address = ("127.0.0.1", 0),
        target: Address = ("127.0.0.1", 0),
        *,
        delay: float = 0.0,
        rate: float | None = None,
        flip_at: int | None = None,
        flip_dir: str = UP,
        flip_mask: int = 0x01,
        cut_after: int | None = None,
        cut_dir: str = UP,
        cut_mode: str = "reset",
        fault_limit: int | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if flip_dir not in (UP, DOWN) or cut_dir not in (UP, DOWN):
            raise ValueError("flip_dir and cut_dir are 'up' or 'down'")
        if cut_mode not in CUT_MODES:
            raise ValueError(f"cut_mode must be one of {CUT_MODES}")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (bytes/s)")
        if not 0 < flip_mask < 256:
            raise ValueError("flip_mask is a non-zero byte mask")
        self.listen = listen
        self.target = target
        self.delay = delay
        self.rate = rate
        self.flip_at = flip_at
        self.flip_dir = flip_dir
        self.flip_mask = flip_mask
        self.cut_after = cut_after
        self.cut_dir = cut_dir
        self.cut_mode = cut_mode
        self.fault_limit = fault_limit
        self.connect_timeout = connect_timeout
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.conns: list[dict[str, Any]] = []
        self.on_conn_done: Any = None  # callable(dict) for the CLI
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        if self._server is None:
            raise RuntimeError("proxy not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    def stats(self) -> dict[str, Any]:
        return {
            "up": self.bytes_up,
            "down": self.bytes_down,
            "connections": self.connections,
            "conns": sorted(
                [*self.conns, *(c.as_dict() for c in self._live)], key=lambda c: c["index"]
            ),
        }

    async def start(self) -> Proxy:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._handle, self.listen[0], self.listen[1], reuse_address=True
        )
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._live):
            _abort(conn.writers)
            conn.done.set()
        if self._tasks:  # handlers end on their own once their sockets are aborted
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start_thread(self) -> Proxy:
        """Run the proxy on its own event loop in a daemon thread (for sync code)."""
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=main, name="netlab-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Proxy:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    def cli_args(self) -> list[str]:
        """Command-line options reproducing this proxy's settings (for `python -m`)."""
        args = ["--listen", f"{self.listen[0]}:{self.listen[1]}"]
        args += ["--target", f"{self.target[0]}:{self.target[1]}"]
        if self.delay:
            args += ["--delay", str(self.delay)]
        if self.rate is not None:
            args += ["--rate", str(self.rate)]
        if self.flip_at is not None:
            args += ["--flip-at", str(self.flip_at), "--flip-dir", self.flip_dir]
            args += ["--flip-mask", str(self.flip_mask)]
        if self.cut_after is not None:
            args += ["--cut-after", str(self.cut_after), "--cut-dir", self.cut_dir]
            args += ["--cut-mode", self.cut_mode]
        if self.fault_limit is not None:
            args += ["--fault-limit", str(self.fault_limit)]
        return args

    # -- internals ---------------------------------------------------------------------------

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        index = self.connections
        self.connections += 1
        faulty = self.fault_limit is None or index < self.fault_limit
        conn = _Conn(index=index, faulty=faulty, writers=[cwriter])
        self._live.add(conn)
        try:
            try:
                treader, twriter = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                conn.error = f"connect: {exc!r}"
                _abort([cwriter])
                return
            conn.writers.append(twriter)
            pipes = [
                asyncio.create_task(self._pipe(conn, creader, twriter, UP)),
                asyncio.create_task(self._pipe(conn, treader, cwriter, DOWN)),
            ]
            try:
                await asyncio.gather(*pipes)
            finally:
                for p in pipes:
                    p.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
            if conn.cut and self.cut_mode == "hang":
                await conn.done.wait()
            for w in conn.writers:
                with contextlib.suppress(Exception):
                    w.close()
        finally:
            self._live.discard(conn)
            info = conn.as_dict()
            self.conns.append(info)
            if self.on_conn_done is not None:
                self.on_conn_done(info)
            if task is not None:
                self._tasks.discard(task)

    async def _pipe(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(conn, queue, writer, direction))
        loop = asyncio.get_running_loop()
        offset = 0
        flip = self.flip_at if conn.faulty and self.flip_dir == direction else None
        cut = self.cut_after if conn.faulty and self.cut_dir == direction else None
        try:
            while not conn.done.is_set():
                try:
                    data = await reader.read(CHUNK)
                except OSError as exc:
                    conn.error = f"{direction} read: {exc!r}"
                    conn.done.set()
                    _abort(conn.writers)
                    break
                if conn.cut:  # the other direction was cut: forward nothing more
                    await conn.done.wait()
                    break
                if cut is not None and offset + len(data) >= cut:
                    data = data[: cut - offset]
                    queue.put_nowait((loop.time() + self.delay, data))
                    queue.put_nowait((loop.time() + self.delay, _CUT))
                    break
                if not data:
                    queue.put_nowait((loop.time() + self.delay, None))
                    break
                if flip is not None and offset <= flip < offset + len(data):
                    buf = bytearray(data)
                    buf[flip - offset] ^= self.flip_mask
                    data = bytes(buf)
                    conn.flipped = True
                offset += len(data)
                queue.put_nowait((loop.time() + self.delay, data))
            if conn.done.is_set() or conn.cut:
                sender.cancel()  # nothing more will be queued: do not wait on an empty queue
            await asyncio.gather(sender, return_exceptions=True)
        finally:
            sender.cancel()

    async def _send(
        self,
        conn: _Conn,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if conn.cut:  # cut in the other direction: forward nothing more
                return
            if data is None:  # EOF from the other side: half-close
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            if data is _CUT:
                await self._cut(conn)
                return
            try:
                if self.rate is None:
                    writer.write(data)
                    await writer.drain()
                    self._count(conn, direction, len(data))
                else:
                    piece = max(1, int(self.rate / 50))
                    for i in range(0, len(data), piece):
                        part = data[i : i + piece]
                        now = loop.time()
                        if next_at > now:
                            await asyncio.sleep(next_at - now)
                        next_at = max(now, next_at) + len(part) / self.rate
                        writer.write(part)
                        await writer.drain()
                        self._count(conn, direction, len(part))
            except (OSError, RuntimeError) as exc:
                conn.error = f"{direction} write: {exc!r}"
                _abort(conn.writers)
                return

    async def _cut(self, conn: _Conn) -> None:
        conn.cut = True
        for w in conn.writers:
            with contextlib.suppress(Exception):
                await w.drain()
        if self.cut_mode == "hang":
            return  # _handle waits on conn.done (set by aclose)
        conn.done.set()
        if self.cut_mode == "reset":
            _abort(conn.writers)
        else:
            for w in conn.writers:
                with contextlib.suppress(Exception):
                    w.close()

    def _count(self, conn: _Conn, direction: str, n: int) -> None:
        if direction == UP:
            conn.up += n
            self.bytes_up += n
        else:
            conn.down += n
            self.bytes_down += n


_CUT: Any = object()  # queue sentinel: cut the connection here


def _abort(writers: list[asyncio.StreamWriter]) -> None:
    """Close with RST: SO_LINGER 0 then close."""
    for w in writers:
        sock = w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(Exception):
            w.transport.abort()


# -- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    about = (__doc__ or "").split("\n", 1)[0]
    p = argparse.ArgumentParser(prog="python -m tests.net.proxy", description=about)
    p.add_argument("--listen", required=True, type=parse_address, help="HOST:PORT (port 0: any)")
    p.add_argument("--target", required=True, type=parse_address, help="HOST:PORT")
    p.add_argument("--delay", type=float, default=0.0, help="seconds added to every chunk")
    p.add_argument("--rate", type=float, default=None, help="bytes per second per direction")
    p.add_argument("--flip-at", type=int, default=None, help="stream offset of the flipped byte")
    p.add_argument("--flip-dir", choices=(UP, DOWN), default=UP)
    p.add_argument("--flip-mask", type=int, default=1)
    p.add_argument("--cut-after", type=int, default=None, help="cut after N bytes")
    p.add_argument("--cut-dir", choices=(UP, DOWN), default=UP)
    p.add_argument("--cut-mode", choices=CUT_MODES, default="reset")
    p.add_argument("--fault-limit", type=int, default=None, help="faults on first N conns only")
    return p


async def _serve(args: argparse.Namespace) -> None:
    proxy = Proxy(
        args.listen,
        args.target,
        delay=args.delay,
        rate=args.rate,
        flip_at=args.flip_at,
        flip_dir=args.flip_dir,
        flip_mask=args.flip_mask,
        cut_after=args.cut_after,
        cut_dir=args.cut_dir,
        cut_mode=args.cut_mode,
        fault_limit=args.fault_limit,
    )
    proxy.on_conn_done = lambda info: print("CONN", json.dumps(info), flush=True)
    await proxy.start()
    host, port = proxy.address
    print("READY", host, port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    stats = proxy.stats()
    await proxy.aclose()
    print("STATS", json.dumps(stats), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
