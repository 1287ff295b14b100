"""``estafet verify``: check signed objects offline against a trust anchor: one ``.obj`` file, a
bundle folder (``estafet-bundle/``), or the zip a TPS page offers (``tps-<code>.zip``).

Each object is checked as of the time it says it was signed (its ``created``): an audit years
after the election still works once the certificates have expired; the KPU's receipts, which
are verified too, say when the server received each object. Photos in ``blobs/`` must hash to
their file name and be named by a valid result.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path

import click

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import ResultBody, decode_envelope
from estafet.relay import bundle as bundles
from estafet.relay.home import read_trust_file

from .common import friendly, short

ORDER = {"revocation": 0, "certificate": 1, "manifest": 2}
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 512 * 1024 * 1024


def _kind(raw: bytes) -> int:
    try:
        return ORDER.get(decode_envelope(raw).kind, 9)
    except ProtocolError:
        return 9


def _base(path: Path) -> Path:
    """The folder holding ``objects/``: the bundle itself, or a folder that contains one."""
    for cand in (path / bundles.BUNDLE, path):
        if (cand / "objects").is_dir():
            return cand
    return path


def _unzip(path: Path, into: Path) -> Path:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > MAX_ZIP_MEMBERS or sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise click.ClickException(f"{path}: too large to be a TPS bundle")
        for info in infos:
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise click.ClickException(f"{path}: unsafe member name {info.filename!r}")
        z.extractall(into)
    tops = [p for p in into.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else into


def _check_objects(trust: TrustStore, files: list[Path]) -> tuple[set[bytes], int]:
    """Verify every file (several passes: a certificate verifies once its issuer is learned).
    Returns the photo hashes named by valid results, and the count of invalid files."""
    pending = sorted(((f, f.read_bytes()) for f in files), key=lambda x: _kind(x[1]))
    named: set[bytes] = set()
    failed: list[tuple[Path, bytes, Exception]] = []
    while pending:
        failed = []
        for f, raw in pending:
            try:
                created = decode_envelope(raw).created
            except ProtocolError:
                created = 0  # trust.verify names what is wrong with it
            try:
                v = trust.verify(raw, created)
            except VerifyError as exc:
                failed.append((f, raw, exc))
                continue
            trust.learn(v)
            if isinstance(v.envelope.body, ResultBody):
                named.update(p.sha256 for p in v.envelope.body.photos)
            what = " ".join(x for x in (v.kind, v.envelope.tps, v.envelope.election) if x)
            click.echo(
                f"valid   {f.name}: {what} signed by {v.signer.role} {short(v.signer.key_id)}"
            )
        if len(failed) == len(pending):
            break
        pending = [(f, raw) for f, raw, _ in failed]
    for f, _, why in failed:
        click.echo(f"INVALID {f.name}: {why}")
    return named, len(failed)


def _check_blobs(base: Path, named: set[bytes]) -> int:
    bad = 0
    blob_dir = base / "blobs"
    for f in sorted(blob_dir.iterdir()) if blob_dir.is_dir() else []:
        digest = hashlib.sha256(f.read_bytes()).digest()
        if digest.hex() != f.name:
            click.echo(f"INVALID photo {f.name}: its SHA-256 is {digest.hex()}")
            bad += 1
        elif digest not in named:
            click.echo(f"INVALID photo {f.name[:16]}: no valid result names it")
            bad += 1
        else:
            click.echo(f"valid   photo {f.name[:16]}: named by a valid result")
    return bad


@click.command("verify")
@click.option(
    "--trust",
    "trust_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The trust anchor printed by `estafet central trust` (or a TPS zip's trust.json).",
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@friendly
def verify(trust_file: Path, path: Path) -> None:
    """Check an object, a bundle folder or a TPS zip offline: exit 0 valid, 1 not."""
    trust = TrustStore(read_trust_file(trust_file))
    with tempfile.TemporaryDirectory(prefix="estafet-verify-") as tmp:
        if path.is_file() and zipfile.is_zipfile(path):
            path = _unzip(path, Path(tmp))
        base = _base(path) if path.is_dir() else path.parent
        if path.is_dir():
            files = sorted((base / "objects").glob("*.obj")) if (base / "objects").is_dir() else []
            files = files or sorted(base.glob("*.obj"))
        else:
            files = [path]
        if not files:
            raise click.ClickException(f"no .obj files in {path}")
        named, bad = _check_objects(trust, files)
        if path.is_dir():
            bad += _check_blobs(base, named)
    click.echo(
        f"checked against root_id {trust.root_id.hex()}: compare it with the KPU's", err=True
    )
    if bad:
        raise SystemExit(1)
