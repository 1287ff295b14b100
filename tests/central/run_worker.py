"""One central ingest worker as a real process, for the several-workers tests.

    python -m tests.central.run_worker --home DIR --objects FILE [--codes FILE] [--go FILE]

Opens ``Central`` on the home (its central.toml names the shared database), waits until the
``--go`` file exists (so every worker starts at once), ingests every object of FILE (msgpack
list of raw bytes) in order, then tries every enrollment code of ``--codes`` (one per line)
with a fresh key. Prints, flushed, one line per acknowledgement: ``R <receipt id> <status>``
once a receipt is handed back, ``E <code> <serial>`` once a certificate is issued.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import msgpack

from estafet.central.errors import EnrollError
from estafet.central.ingest import Central
from estafet.crypto.keys import SigningKey
from estafet.protocol.objects import decode_envelope
from tests.central.conftest import world_authority
from tests.kit import NOW, World


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--objects", type=Path, required=True)
    ap.add_argument("--codes", type=Path)
    ap.add_argument("--go", type=Path)
    args = ap.parse_args()
    objects = msgpack.unpackb(args.objects.read_bytes())
    codes = args.codes.read_text().split() if args.codes else []
    central = Central(args.home, world_authority(World(), args.home))
    deadline = time.monotonic() + 60
    while args.go and not args.go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for raw in objects:
        receipt, status = central.ingest(raw, NOW)
        if receipt is not None:
            print(f"R {decode_envelope(receipt).id.hex()} {status}", flush=True)
    for i, code in enumerate(codes):
        try:  # a different client block per attempt: the per-block limit is not under test
            got = central.enroll(
                code, SigningKey.generate().public, NOW, f"10.{os.getpid() % 250}.{i % 250}.1"
            )
        except EnrollError:
            continue
        body = got.certificate.body
        print(f"E {code} {getattr(body, 'serial', 0)}", flush=True)
    central.close()


if __name__ == "__main__":
    main()
