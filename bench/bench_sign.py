"""Micro-benchmark: sign and verify a C.Hasil result (3 photo hashes), against bare Ed25519.

Measures, as operations per second (median of 5 runs):

* ``seal``: canonical content + Ed25519 signature + envelope (and the structural decode ``seal``
  does to return an ``Envelope``);
* ``verify (warm)``: ``TrustStore.verify`` of the envelope bytes when the officer's certificate
  is already known: decode, canonical check, one signature, role/scope/window/revocation, all
  form and photo rules against a manifest;
* ``verify (chain)``: the same on a store that knows only the root, so the attached officer
  and issuer certificates are checked too (three signatures);
* ``decode``: ``decode_envelope`` alone;
* ``ed25519 verify``: ``cryptography``'s bare verify of the same signed message, for comparison.

Usage::

    python bench/bench_sign.py [--quick] [--json bench/results/sign.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from estafet.crypto.keys import SigningKey
from estafet.crypto.seal import certify, seal
from estafet.crypto.trust import TrustStore
from estafet.demo.forms import example_form
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.manifest import Election, Manifest, Tps
from estafet.protocol.objects import ResultBody, decode_envelope, signing_message
from estafet.protocol.photos import PhotoRef

NOW = 1_732_665_600
TPS = "6302142001001"
RUNS = 5
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "sign.json"


def key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"estafet-bench/" + label.encode()).digest())


def world() -> dict[str, Any]:
    """A root, an issuer, one kpps-chair and a valid result body; all from fixed seeds."""
    root, issuer, chair = key("root"), key("issuer"), key("chair")
    manifest = Manifest(
        name="bench",
        version=1,
        elections=(Election("bupati", "6302", (1, 2, 3)),),
        tps={TPS: Tps(TPS, 251)},
    )
    window = {"not_before": NOW - 86_400, "not_after": NOW + 86_400}
    issuer_cert = certify(
        root, subject=issuer.public, role="issuer", scope=("6302",), elections=("bupati",),
        serial=1, **window,
    )  # fmt: skip
    chair_cert = certify(
        issuer, subject=chair.public, role="kpps-chair", scope=(TPS,), elections=("bupati",),
        serial=2, **window,
    )  # fmt: skip
    form = parse_form(example_form("bupati", TPS))
    bad, warn = check_form(form, manifest)
    assert not bad
    photos = tuple(
        PhotoRef(i, hashlib.sha256(b"sheet %d" % i).digest(), 2_400_000, "jpeg") for i in (1, 2, 3)
    )
    body = ResultBody(form, photos, tuple(w.rule for w in warn))
    chain = (chair_cert.encode(), issuer_cert.encode())
    return {
        "root": root,
        "chair": chair,
        "manifest": manifest,
        "issuer_cert": issuer_cert,
        "chair_cert": chair_cert,
        "body": body,
        "chain": chain,
    }


def rate(fn: Callable[[], object], iterations: int) -> float:
    """Operations per second: the median of RUNS timed loops of ``iterations`` calls."""
    fn()  # warm up
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        rates.append(iterations / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(iterations: int) -> dict[str, float]:
    w = world()
    chair: SigningKey = w["chair"]
    env = seal("result", w["body"], chair, NOW, chain=w["chain"])
    data = env.encode()
    message = signing_message(env.kind, env.content)
    public = Ed25519PublicKey.from_public_bytes(chair.public)

    warm = TrustStore(w["root"].public, manifest=w["manifest"])
    warm.learn(warm.verify(w["issuer_cert"], NOW))
    warm.learn(warm.verify(w["chair_cert"], NOW))
    assert warm.verify(data, NOW).id == env.id

    def cold() -> object:
        return TrustStore(w["root"].public, manifest=w["manifest"]).verify(data, NOW)

    return {
        "seal": rate(lambda: seal("result", w["body"], chair, NOW, chain=w["chain"]), iterations),
        "verify (warm)": rate(lambda: warm.verify(data, NOW), iterations),
        "verify (chain)": rate(cold, max(1, iterations // 3)),
        "decode": rate(lambda: decode_envelope(data), iterations),
        "ed25519 verify": rate(lambda: public.verify(env.signature, message), iterations),
        "_envelope_bytes": float(len(data)),
        "_content_bytes": float(len(env.content)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    iterations = 100 if args.quick else 2000
    results = measure(iterations)
    sizes = {k.strip("_"): int(results.pop(k)) for k in list(results) if k.startswith("_")}
    bare = results["ed25519 verify"]
    print(f"result envelope {sizes['envelope_bytes']} B (content {sizes['content_bytes']} B), "
          f"median of {RUNS} runs x {iterations} iterations")  # fmt: skip
    print(f"{'operation':<16} {'ops/s':>10} {'us/op':>9} {'vs ed25519':>11}")
    for name, ops in results.items():
        print(f"{name:<16} {ops:>10,.0f} {1e6 / ops:>9.1f} {ops / bare:>10.2f}x")
    report = {
        "benchmark": "sign",
        "quick": args.quick,
        "runs": RUNS,
        "iterations": iterations,
        "ops_per_second": {k: round(v, 1) for k, v in results.items()},
        "sizes": sizes,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cryptography": version("cryptography"),
        "msgpack": version("msgpack"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
