"""The KPU authority's home directory: root and issuer keys, the issuer certificate, the signed
manifest, the revocation list and the public trust anchor.

Layout of a central home (everything but ``central.db``, which :mod:`.db` owns)::

    root.key          the KPU root private key, encrypted under the *root* passphrase, mode 0600.
                      Needed only to revoke, void or re-issue; it may be moved offline after
                      ``init_central``.
    issuer.key        the issuer private key (signs device certificates and receipts), encrypted
                      under the *issuer* passphrase, which the server's unit holds. The two
                      passphrases must differ, so whoever runs the server cannot open the root
                      (issue 11, item 9); :func:`change_passphrase` gives an existing home, made
                      when one passphrase protected both, a root passphrase of its own.
    issuer.cert       the root-signed issuer certificate (envelope bytes)
    manifest.obj      the root-signed election manifest (envelope bytes)
    revocation.obj    the latest root-signed revocation list (envelope bytes)
    trust.json        the public trust anchor {"root_public", "root_id", "name"} devices pin

Files are written to a temporary name, fsynced and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from estafet.crypto.errors import CryptoError
from estafet.crypto.keyfile import decrypt_key, encrypt_key
from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.seal import certify, seal
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import ProtocolError
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import (
    KEY_ID_BYTES,
    Envelope,
    ManifestBody,
    RevocationBody,
    RevokedEntry,
    VoidBody,
    decode_envelope,
)

from .errors import AuthorityError

ROOT_KEY = "root.key"
ISSUER_KEY = "issuer.key"
ISSUER_CERT = "issuer.cert"
MANIFEST = "manifest.obj"
REVOCATION = "revocation.obj"
TRUST = "trust.json"
ISSUER_SERIAL = 1
"""The issuer certificate's serial; device serials are counted from 2 in central.db."""
ISSUER_VALIDITY = 365 * 86_400


@dataclass
class Authority:
    """What the running central server needs: the issuer key and the objects it hands out."""

    home: Path
    name: str
    issuer_key: SigningKey
    issuer_cert: Envelope
    manifest_env: Envelope
    revocation_env: Envelope
    trust: TrustStore

    @property
    def root_id(self) -> bytes:
        return self.trust.root_id

    @property
    def manifest(self) -> Manifest:
        assert self.trust.manifest is not None
        return self.trust.manifest


def init_central(
    home: Path, manifest: Manifest, passphrase: str, now: int, *, root_passphrase: str
) -> None:
    """Create a new authority home: the issuer key under ``passphrase``, the root key under
    ``root_passphrase`` (they must differ). Refuses a home that exists and is not empty."""
    home = Path(home)
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise AuthorityError(f"{home} already exists and is not empty; refusing to overwrite it")
    if not passphrase or not root_passphrase:
        raise AuthorityError("passphrases are required to protect the root and issuer keys")
    if passphrase == root_passphrase:
        raise AuthorityError(
            "the root key needs a passphrase of its own, not the issuer key's (the server's)"
        )
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    root, issuer = SigningKey.generate(), SigningKey.generate()
    issuer_cert = certify(
        root,
        subject=issuer.public,
        role="issuer",
        scope=tuple(dict.fromkeys(e.region for e in manifest.elections)),
        elections=tuple(e.kind for e in manifest.elections),
        serial=ISSUER_SERIAL,
        not_before=now,
        not_after=now + ISSUER_VALIDITY,
        label="central issuer",
    )
    manifest_env = seal("manifest", ManifestBody(manifest), root, now)
    revocation_env = seal("revocation", RevocationBody(1, ()), root, now)
    trust = {"root_public": root.public.hex(), "root_id": root.id.hex(), "name": manifest.name}
    _write(home / ROOT_KEY, encrypt_key(root, root_passphrase), secret=True)
    _write(home / ISSUER_KEY, encrypt_key(issuer, passphrase), secret=True)
    _write(home / ISSUER_CERT, issuer_cert.encode())
    _write(home / MANIFEST, manifest_env.encode())
    _write(home / REVOCATION, revocation_env.encode())
    _write(home / TRUST, (json.dumps(trust, indent=2) + "\n").encode())


def load_authority(home: Path, passphrase: str) -> Authority:
    """Open an authority home with the passphrase of its issuer key."""
    home = Path(home)
    root_public, name = _read_trust(home)
    trust = TrustStore(root_public)
    issuer_key = _open_key(home / ISSUER_KEY, passphrase)
    issuer_cert = _learn(trust, home / ISSUER_CERT)
    cert_body = trust.certificate_for(issuer_key.id)
    if cert_body is None or cert_body.role != "issuer":
        raise AuthorityError(f"{home / ISSUER_CERT} does not certify the key in {ISSUER_KEY}")
    manifest_env = _learn(trust, home / MANIFEST)
    revocation_env = _learn(trust, home / REVOCATION)
    return Authority(home, name, issuer_key, issuer_cert, manifest_env, revocation_env, trust)


def revoke(
    home: Path,
    passphrase: str,
    *,
    serial: int | None = None,
    key_id: bytes | None = None,
    reason: str,
    now: int,
    since: int | None = None,
) -> Envelope:
    """Sign and store the next revocation list, adding one entry. Needs the root key in home.

    ``since``: the stated compromise time; objects the key signed from then on are revoked,
    earlier ones stand (default: ``now``).

    Feed the returned envelope to the running server's ``Central.ingest`` so it re-flags results
    and hands the list out; the list then travels through the mesh like any object.
    """
    home = Path(home)
    if serial is None and key_id is None:
        raise AuthorityError("name a certificate serial or a key id to revoke")
    if key_id is not None and len(key_id) != KEY_ID_BYTES:
        raise AuthorityError(f"a key id is {KEY_ID_BYTES} bytes")
    if not reason or len(reason) > 500:
        raise AuthorityError("a reason of 1..500 characters is required")
    if not (home / ROOT_KEY).is_file():
        raise AuthorityError(f"{home / ROOT_KEY} is not here; bring the offline root key back")
    root_public, _ = _read_trust(home)
    root = _open_key(home / ROOT_KEY, passphrase)
    if root.public != root_public:
        raise AuthorityError(f"{ROOT_KEY} is not the root pinned in {TRUST}")
    trust = TrustStore(root_public)
    current = _learn(trust, home / REVOCATION).body
    assert isinstance(current, RevocationBody)
    if since is not None and since > now:
        raise AuthorityError("the compromise time cannot be in the future")
    entry = RevokedEntry(serial, key_id, reason, now, since)
    body = RevocationBody(current.version + 1, (*current.entries, entry))
    env = seal("revocation", body, root, now)
    _write(home / REVOCATION, env.encode())
    return env


def change_passphrase(home: Path, which: str, old: str, new: str) -> None:
    """Re-encrypt ``root.key`` or ``issuer.key`` under a new passphrase (atomic rename).

    The migration for a home made when one passphrase protected both keys: run it for the root
    key with a new root passphrase; the issuer key and the server's unit stay as they were."""
    name = {"root": ROOT_KEY, "issuer": ISSUER_KEY}.get(which)
    if name is None:
        raise AuthorityError("which key: root or issuer")
    if not new or new == old:
        raise AuthorityError("the new passphrase must be non-empty and differ from the old one")
    key = _open_key(home / name, old)
    other = home / (ISSUER_KEY if name == ROOT_KEY else ROOT_KEY)
    if other.is_file():
        try:
            decrypt_key(other.read_bytes(), new)
        except CryptoError:
            pass
        else:
            raise AuthorityError(f"the new passphrase also opens {other.name}: choose another")
    _write(home / name, encrypt_key(key, new), secret=True)


def _read_trust(home: Path) -> tuple[bytes, str]:
    path = home / TRUST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        root_public = bytes.fromhex(doc["root_public"])
        name = str(doc["name"])
    except FileNotFoundError as exc:
        raise AuthorityError(f"{path} not found: is {home} a central home?") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuthorityError(f"{path} is damaged: {exc}") from exc
    if len(root_public) != 32 or doc.get("root_id") != key_id(root_public).hex():
        raise AuthorityError(f"{path}: root_public and root_id do not match")
    return root_public, name


def _open_key(path: Path, passphrase: str) -> SigningKey:
    try:
        return decrypt_key(path.read_bytes(), passphrase)
    except FileNotFoundError as exc:
        raise AuthorityError(f"{path} not found") from exc
    except (OSError, CryptoError) as exc:
        raise AuthorityError(f"{path}: {exc}") from exc


def _learn(trust: TrustStore, path: Path) -> Envelope:
    """Verify a root-signed file and learn it. Root signatures carry no validity window, so the
    envelope's own time stands in for ``now``: loading never reads the clock."""
    try:
        env = decode_envelope(path.read_bytes())
        trust.learn(trust.verify(env, env.created))
    except FileNotFoundError as exc:
        raise AuthorityError(f"{path} not found") from exc
    except (OSError, ProtocolError, CryptoError) as exc:
        raise AuthorityError(f"{path}: {exc}") from exc
    return env


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def void(
    authority: Authority, result: bytes, tps: str, election: str, reason: str, now: int
) -> Envelope:
    """An issuer-signed void of one result (issue 11, item 8); feed it to ``Central.ingest``."""
    if len(result) != 32:
        raise AuthorityError("a result id is 32 bytes (64 hex digits)")
    if not reason or len(reason) > 500:
        raise AuthorityError("a reason of 1..500 characters is required")
    body = VoidBody(result, tps, election, reason)
    return seal("void", body, authority.issuer_key, now, (authority.issuer_cert.encode(),))
