"""A TCP proxy that behaves like one slow link: every connection shares one byte budget per
direction (``rate`` bytes per second), and bytes are read from a side only as fast as they are
forwarded, so senders feel backpressure as on a real link. (``tests/net/proxy.py`` limits each
connection separately and queues without bound; two parallel transfers through it would get
twice the rate.)

Usage: python bench/shaper.py --target HOST:PORT --rate BYTES_PER_S [--listen HOST:PORT]
Prints ``READY host port`` once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

PIECE = 32 * 1024
DEPTH = 8 * 1024  # bucket depth (1.6 ms at 40 Mbit/s): absorbs late timer wake-ups only


class Bucket:
    """A token bucket: the link is booked until ``free_at``; an idle link gathers at most
    ``DEPTH`` bytes of credit, so the long-run rate never exceeds ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free_at = 0.0

    async def send(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        self.free_at = max(self.free_at, now - DEPTH / self.rate) + n / self.rate
        if self.free_at > now:
            await asyncio.sleep(self.free_at - now)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: Bucket) -> None:
    try:
        while data := await reader.read(PIECE):
            await bucket.send(len(data))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()


async def serve(listen: tuple[str, int], target: tuple[str, int], rate: float) -> None:
    up, down = Bucket(rate), Bucket(rate)

    async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            treader, twriter = await asyncio.open_connection(*target)
        except OSError:
            cwriter.transport.abort()
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(creader, twriter, up), pipe(treader, cwriter, down))
        for w in (cwriter, twriter):
            with contextlib.suppress(Exception):
                w.close()

    server = await asyncio.start_server(handle, *listen)
    host, port = server.sockets[0].getsockname()[:2]
    print("READY", host, port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--listen", type=address, default=("127.0.0.1", 0))
    p.add_argument("--target", type=address, required=True)
    p.add_argument("--rate", type=float, required=True, help="bytes per second, each direction")
    args = p.parse_args()
    asyncio.run(serve(args.listen, args.target, args.rate))


if __name__ == "__main__":
    main()
