"""A hostile peer on the village hotspot, run as its own process on its own lab host.

    python -m tests.net.hostile --bait BAIT.json --report REPORT.json [--attack URL ...]
                                [--listen 0.0.0.0:7420] [--duration 12]

It has a real key of its own (not enrolled: no KPU certificate), announces itself like a node
(mDNS ``_estafet._tcp`` and the signed UDP beacon of relay/discovery.py, both claiming a gateway
with a working uplink, the most attractive peer there is), and

* serves /v1/ to whoever dials it: on a node's first session it looks in sync and honest, and
  serves wrong bytes for any photo the node lacks; on later sessions a reconciliation that makes
  it look like it holds objects the node lacks, which turn out to be a tampered result, a forged
  receipt and a result under a forged certificate chain, and forged receipts for whatever is
  pushed to it; it takes every photo offered (a sink);
* attacks the ``--attack`` URLs (honest nodes) in rounds: tampered results (content changed,
  signature kept; and the genuine content under a broken signature, same id), forged receipts
  (signed by its own key, with a self-made "issuer" certificate), a result signed under a forged
  certificate chain, a replay of a genuine old revision, wrong photo bytes for a genuine photo,
  an oversized body, malformed bodies, and (in its last round) a flood of junk objects.

BAIT.json (written by the test from genuine objects): ``{"result": hex raw of a genuine result
to tamper with, "old_revision": hex raw, "carry": hex raw of a genuine result it pushes before
the photos' owner is around, "fake_tps": a TPS code, "photos": [[sha hex, size], ...] of the
carried result}``. The report
lists every attack with the HTTP status and body summary each target answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import certify, seal
from estafet.protocol import codec
from estafet.protocol.objects import (
    ReceiptBody,
    ResultBody,
    decode_envelope,
    encode_envelope,
    log_entry_hash,
)
from estafet.protocol.reconcile import Reconciler
from estafet.relay import wire
from estafet.relay.discovery import BEACON_DOMAIN, BEACON_PORT, SERVICE, local_ipv4

DAY = 86_400
FLOOD_BATCHES = 3
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5, sock_read=20)


class Forger:
    """Makes the bad objects from genuine ones, with keys of its own."""

    def __init__(self, bait: dict[str, Any]) -> None:
        self.key = SigningKey.generate()
        self.now = int(time.time())
        self.genuine = bytes.fromhex(bait["result"])
        self.old_revision = bytes.fromhex(bait["old_revision"])
        self.photos = [(bytes.fromhex(s), int(n)) for s, n in bait["photos"]]
        self.carry = bytes.fromhex(bait["carry"]) if bait.get("carry") else None
        env = decode_envelope(self.genuine)
        body = env.body
        assert isinstance(body, ResultBody)
        self.env = env
        # a self-made authority: root -> "issuer" -> kpps-chair, none of it known to anyone
        fake_root = SigningKey.generate()
        self.fake_issuer = certify(
            fake_root,
            subject=self.key.public,
            role="issuer",
            scope=("63",),
            elections=("gubernur", "bupati"),
            serial=1,
            not_before=self.now - DAY,
            not_after=self.now + DAY,
            label="not the KPU",
        )
        chair = SigningKey.generate()
        chair_cert = certify(
            self.key,
            subject=chair.public,
            role="kpps-chair",
            scope=(bait["fake_tps"],),
            elections=("gubernur", "bupati"),
            serial=99,
            not_before=self.now - DAY,
            not_after=self.now + DAY,
            label="forged chair",
        )
        content = codec.decode(env.content)
        fake_form = {**content, "tps": bait["fake_tps"]}
        fake_body = ResultBody.from_map({k: fake_form[k] for k in ResultBody.FIELDS})
        self.fake_result = seal(
            "result",
            fake_body,
            chair,
            self.now,
            chain=(chair_cert.encode(), self.fake_issuer.encode()),
        ).encode()

    def tampered(self) -> bytes:
        """The genuine result with 50 votes added to paslon 1, its signature kept."""
        content = codec.decode(self.env.content)
        content["votes"] = {**content["votes"], "1": content["votes"]["1"] + 50}
        return encode_envelope(codec.encode(content), self.env.signature, self.env.chain)

    def broken_signature(self) -> bytes:
        """The genuine content (same object id!) under a broken signature."""
        sig = bytes([self.env.signature[0] ^ 1]) + self.env.signature[1:]
        return encode_envelope(self.env.content, sig, self.env.chain)

    def receipt(self, object_id: bytes, tps: str = "", election: str = "") -> bytes:
        """An 'accepted' receipt for ``object_id`` signed by our key, with our fake issuer cert."""
        prev = bytes(32)
        digest = log_entry_hash(prev, 0, object_id, "accepted", "", self.now)
        body = ReceiptBody(object_id, "result", tps, election, "accepted", "", 0, prev, digest)
        return seal(
            "receipt", body, self.key, self.now, chain=(self.fake_issuer.encode(),)
        ).encode()

    def bait(self) -> list[bytes]:
        """What the reconciliation pretends to hold."""
        return [
            self.tampered(),
            self.fake_result,
            self.receipt(self.env.id, self.env.tps, self.env.election),
        ]


def junk(i: int) -> bytes:
    return hashlib.shake_256(f"junk-{os.getpid()}-{i}".encode()).digest(80 + i % 200)


class Hostile:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.forger = Forger(json.loads(Path(args.bait).read_text()))
        self.key = self.forger.key
        host, _, port = args.listen.rpartition(":")
        self.host, self.port = host or "0.0.0.0", int(port)
        items = []
        self.bait: dict[bytes, bytes] = {}
        for raw in self.forger.bait():
            env = decode_envelope(raw)
            items.append((env.created, env.id))
            self.bait[env.id] = raw
        self.reconciler = Reconciler(sorted(items))
        self.empty = Reconciler([])
        self.contacts: dict[str, int] = {}
        self.report: dict[str, Any] = {"key": self.key.id.hex(), "served": {}, "attacks": []}

    def served(self, what: str) -> None:
        self.report["served"][what] = self.report["served"].get(what, 0) + 1

    # -- serving -------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/info", self.info)
        app.router.add_post("/v1/reconcile", self.reconcile)
        app.router.add_post("/v1/objects/get", self.objects_get)
        app.router.add_post("/v1/objects/put", self.objects_put)
        app.router.add_post("/v1/receipts", self.receipts)
        app.router.add_post("/v1/blobs/want", self.blobs_want)
        app.router.add_get("/v1/blobs/{sha}", self.blob_get)
        app.router.add_put("/v1/blobs/{sha}", self.blob_put)
        app.router.add_get("/v1/status", self.status)
        return app

    @staticmethod
    def _msgpack(value: Any) -> web.Response:
        return web.Response(body=wire.pack(value), content_type=wire.MSGPACK)

    async def info(self, request: web.Request) -> web.Response:
        self.served("info")
        return self._msgpack(
            {
                "v": 1,
                "key": self.key.id,
                "role": "gateway",
                "scope": "6302",
                "name": "PPK (really not)",
                "central_ok": True,
                "fingerprint": bytes(16),
                "certificate": None,
            }
        )

    def _contacts(self, request: web.Request) -> int:
        return self.contacts.get(request.remote or "", 0)  # nodes no longer name themselves

    async def reconcile(self, request: web.Request) -> web.Response:
        """A node's first session looks honest (nothing to offer, no receipts), so the node goes
        on to fetch the photos it lacks: wrong bytes. Later sessions offer the bait objects."""
        who = request.remote or ""
        self.contacts[who] = self.contacts.get(who, 0) + 1
        first = self.contacts[who] == 1
        self.served("reconcile (looks in sync)" if first else "reconcile (bait)")
        rec = self.empty if first else self.reconciler
        reply = rec.respond(await request.read())
        return web.Response(body=reply, content_type="application/octet-stream")

    async def objects_get(self, request: web.Request) -> web.Response:
        self.served("objects/get")
        body = wire.unpack(await request.read(), {"ids": list})
        out = [self.bait[i] for i in body["ids"] if i in self.bait]
        return self._msgpack({"objects": out})

    async def objects_put(self, request: web.Request) -> web.Response:
        self.served("objects/put")
        body = wire.unpack(await request.read(), {"objects": list})
        results, receipts = [], []
        for raw in body["objects"]:
            with contextlib.suppress(Exception):
                env = decode_envelope(raw)
                results.append({"id": env.id, "status": "stored", "reason": ""})
                if env.kind == "result" and self._contacts(request) > 1:
                    receipts.append(self.forger.receipt(env.id, env.tps, env.election))
        return self._msgpack({"results": results, "receipts": receipts})

    async def receipts(self, request: web.Request) -> web.Response:
        self.served("receipts")
        body = wire.unpack(await request.read(), {"ids": list})
        return self._msgpack({"receipts": [self.forger.receipt(i) for i in body["ids"]]})

    async def blobs_want(self, request: web.Request) -> web.Response:
        self.served("blobs/want")
        body = wire.unpack(await request.read(), {"blobs": list})
        return self._msgpack({"want": [[s, 0] for s in body["blobs"]]})

    async def blob_get(self, request: web.Request) -> web.Response:
        self.served("blob-get (wrong bytes)")
        sha = bytes.fromhex(request.match_info["sha"])
        size = dict(self.forger.photos).get(sha, 70_000)
        return web.Response(body=junk(size)[:1] * size, content_type="application/octet-stream")

    async def blob_put(self, request: web.Request) -> web.Response:
        self.served("blob-put (sink)")
        n = len(await request.read())
        return self._msgpack({"have": n, "complete": True})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.report)

    # -- announcing ----------------------------------------------------------------------------
    def beacon(self) -> bytes:
        content = codec.encode(
            {
                "key": self.key.public,
                "port": self.port,
                "role": "gateway",
                "scope": "6302",
                "up": True,
            }
        )
        return codec.encode({"b": content, "s": self.key.sign(BEACON_DOMAIN + content)})

    async def announce(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        zc = None
        try:
            from zeroconf import IPVersion
            from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

            zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
            info = AsyncServiceInfo(
                SERVICE,
                f"{self.key.id.hex()[:16]}.{SERVICE}",
                port=self.port,
                properties={
                    "key": self.key.id.hex(),
                    "role": "gateway",
                    "scope": "6302",
                    "fp": "",
                    "up": "1",
                },
                parsed_addresses=[str(i.ip) for i in local_ipv4()] or None,
                server=f"estafet-{self.key.id.hex()[:12]}.local.",
            )
            await zc.async_register_service(info, allow_name_change=True)
        except Exception as exc:
            print(f"hostile: mDNS failed: {exc}", file=sys.stderr)
        try:
            while True:
                for iface in local_ipv4():
                    with contextlib.suppress(OSError):
                        sock.sendto(
                            self.beacon(), (str(iface.network.broadcast_address), BEACON_PORT)
                        )
                await asyncio.sleep(2)
        finally:
            sock.close()
            if zc is not None:
                with contextlib.suppress(Exception):
                    await zc.async_close()

    # -- attacking -----------------------------------------------------------------------------
    async def attack(self, http: aiohttp.ClientSession, url: str, flood: bool) -> None:
        f = self.forger
        put = url + "/v1/objects/put"
        hdr = {"X-Estafet-Node": self.key.id.hex(), "X-Estafet-Listen": f":{self.port}"}

        async def send(name: str, method: str, target: str, data: bytes, **extra: str) -> None:
            try:
                async with http.request(
                    method, target, data=data, headers={**hdr, **extra}, timeout=TIMEOUT
                ) as r:
                    body = await r.read()
                    summary: Any = body[:160].decode(errors="replace")
                    with contextlib.suppress(Exception):
                        doc = codec.decode(
                            body,
                            codec.Limits(
                                max_bytes=8 << 20, max_bin=8 << 20, max_array=2048, max_map=16
                            ),
                        )
                        if isinstance(doc, dict) and "results" in doc:
                            summary = sorted(
                                {f"{x['status']}: {x['reason'][:60]}" for x in doc["results"]}
                            )
                        elif isinstance(doc, dict):
                            summary = {k: v for k, v in doc.items() if isinstance(v, str | bool)}
                    status = r.status
            except Exception as exc:
                status, summary = 0, f"{type(exc).__name__}: {exc}"
            self.report["attacks"].append(
                {"target": url, "attack": name, "status": status, "answer": summary}
            )

        def objs(*raws: bytes) -> bytes:
            return wire.pack({"objects": list(raws)})

        if f.carry is not None:  # a genuine result it overheard, then wrong bytes for its photos
            await send("carry-genuine", "POST", put, objs(f.carry))
        await send("tampered-result", "POST", put, objs(f.tampered()))
        await send("broken-signature", "POST", put, objs(f.broken_signature()))
        await send(
            "forged-receipt", "POST", put, objs(f.receipt(f.env.id, f.env.tps, f.env.election))
        )
        await send("forged-chain-result", "POST", put, objs(f.fake_result))
        await send("replay-old-revision", "POST", put, objs(f.old_revision))
        for sha, size in f.photos[:2]:
            await send(
                "wrong-photo",
                "PUT",
                f"{url}/v1/blobs/{sha.hex()}",
                junk(size)[:1] * size,
                **{"X-Estafet-Offset": "0"},
            )
        await send("oversized", "POST", put, b"\x92" + b"\x00" * (wire.MAX_BODY + 1024))
        await send("malformed", "POST", put, b"\xc1 not msgpack at all")
        await send("malformed-shape", "POST", put, wire.pack({"objects": "nope"}))
        await send("malformed-reconcile", "POST", url + "/v1/reconcile?scope=6302", b"\xff" * 64)
        for b in range(FLOOD_BATCHES if flood else 0):
            await send(
                "junk-flood",
                "POST",
                put,
                objs(*[junk(b * 512 + i) for i in range(wire.MAX_OBJECTS)]),
            )

    async def run(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        print("READY", flush=True)
        announcer: asyncio.Task[None] | None = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        deadline = loop.time() + self.args.duration
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline and not stop.is_set():
                # the junk flood comes last: it pushes older refusals out of a node's bounded
                # event list (the daemon's log keeps them all)
                flood = loop.time() + 2.0 >= deadline
                await asyncio.gather(*(self.attack(http, u, flood) for u in self.args.attack))
                self.report["rounds"] = self.report.get("rounds", 0) + 1
                Path(self.args.report).write_text(json.dumps(self.report, default=str))
                if announcer is None:  # after the first round: the carried result is in place
                    announcer = asyncio.create_task(self.announce())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        self.report["done"] = True
        Path(self.args.report).write_text(json.dumps(self.report, default=str))
        print("DONE", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.args.linger)  # keep serving, announcing
        if announcer is not None:
            announcer.cancel()
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="0.0.0.0:7420")
    p.add_argument("--bait", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--attack", action="append", default=[], help="an honest node's base URL")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of attack rounds")
    p.add_argument("--linger", type=float, default=3600.0, help="serve this long afterwards")
    asyncio.run(Hostile(p.parse_args()).run())


if __name__ == "__main__":
    main()
