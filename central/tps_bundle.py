"""The "verify it yourself" download of a TPS page: a zip holding every signed object about the
TPS that the server did not reject (results, endorsements), every receipt the KPU issued for
them, the accepted manifests and revocation lists, the photos, and the trust anchor, laid out so
that ``estafet verify --trust tps-<code>/trust.json tps-<code>/`` checks it offline::

    tps-<code>/trust.json                       the root public key (compare with KPU's)
    tps-<code>/README.txt                       what this is and the command
    tps-<code>/estafet-bundle/objects/<id>.obj  signed envelopes, exactly the stored bytes
    tps-<code>/estafet-bundle/blobs/<sha256>    photo blobs, named by their hash

Read-only; built in memory (a TPS has a handful of objects and a few photos).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from estafet.pages.tps import verify_command
from estafet.protocol.objects import decode_envelope
from estafet.relay.blobs import BlobDir

from .db import CentralDB

OBJECTS_SQL = (
    "SELECT id, raw FROM objects WHERE tps = ? AND status != 'rejected' AND kind != 'receipt'"
)
TRUST_SQL = (
    "SELECT id, raw FROM objects WHERE kind IN ('manifest', 'revocation') AND status = 'accepted'"
)
RECEIPTS_SQL = "SELECT id, raw FROM receipts WHERE object = ? ORDER BY log_idx"
PHOTOS_SQL = (
    "SELECT DISTINCT p.sha256 FROM photos p JOIN objects o ON o.id = p.result"
    " JOIN blobs b ON b.sha256 = p.sha256 WHERE o.tps = ? AND o.status != 'rejected'"
)


def tps_bundle(
    db: CentralDB, tps: str, trust_json: bytes, blobs: BlobDir, anchors: list[bytes]
) -> bytes:
    """The zip's bytes (blocking; call with ``db.lock`` held). ``anchors``: the signed trust
    objects the server started with (manifest, revocation list, issuer certificate)."""
    top = f"tps-{tps}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{top}/trust.json", trust_json)
        z.writestr(f"{top}/README.txt", _readme(tps))
        objects = [(r["id"], r["raw"]) for r in db.query(OBJECTS_SQL, (tps,))]
        written: set[str] = set()
        trust = [(decode_envelope(raw).id, raw) for raw in anchors]
        held = [(r["id"], r["raw"]) for r in db.query(TRUST_SQL)]
        for oid, raw in [*trust, *held, *objects]:
            name = f"{top}/estafet-bundle/objects/{bytes(oid).hex()}.obj"
            if name not in written:
                written.add(name)
                z.writestr(name, bytes(raw))
        for oid, _ in objects:
            for r in db.query(RECEIPTS_SQL, (oid,)):
                z.writestr(f"{top}/estafet-bundle/objects/{bytes(r['id']).hex()}.obj", r["raw"])
        for r in db.query(PHOTOS_SQL, (tps,)):
            sha = bytes(r["sha256"])
            path: Path = blobs.path(sha)
            if path.is_file():
                z.write(path, f"{top}/estafet-bundle/blobs/{sha.hex()}", zipfile.ZIP_STORED)
    return buf.getvalue()


def _readme(tps: str) -> str:
    return (
        f"Signed results, endorsements, KPU receipts and C.Hasil photos of TPS {tps}.\n\n"
        f"Check them offline (the Estafet command line tool):\n\n{verify_command(tps)}\n\n"
        "trust.json names the KPU root key this server uses. Compare its root_id with the one\n"
        "the KPU publishes: only then does a valid signature mean the KPU's.\n"
    )
