"""Client side of enrollment: send our public key and a one-time code, keep what comes back.

The central server answers with our certificate, its issuer certificate, the root public key
(pinned from then on, unless the officer pinned one beforehand with ``--trust``), the signed
manifest and the latest revocation list. Everything is verified against that root before it is
installed in the node's store. Plain ``http://`` to anything but loopback or a private LAN
address warns loudly: enrollment is the one step whose answer we cannot yet verify.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody

from . import wire
from .accept import accept_batch
from .errors import EnrollRefused
from .home import Home
from .store import Store

log = logging.getLogger("estafet.enroll")
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


@dataclass(frozen=True)
class Materials:
    certificate: bytes
    issuer_certificate: bytes
    root_public: bytes
    manifest: bytes
    revocation: bytes | None


def insecure_url_warning(url: str) -> str | None:
    """A warning when ``url`` is plain HTTP to a host that is not loopback or a private LAN."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return None
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return None
        return f"WARNING: enrolling over plain http:// to {host}: use https:// across the internet"
    if ip.is_loopback or ip.is_private:
        return None
    return f"WARNING: enrolling over plain http:// to {host}: use https:// across the internet"


async def request_enrollment(central: str, code: str, key: SigningKey) -> Materials:
    url = central.rstrip("/") + "/v1/enroll"
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.post(url, data=wire.pack({"code": code, "public_key": key.public})) as r,
        ):
            data = await wire.read_capped(r.content, wire.MAX_BODY)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise EnrollRefused(f"cannot reach {central}: {exc or type(exc).__name__}") from exc
    try:
        body = wire.unpack(data, {})
    except wire.WireError as exc:
        raise EnrollRefused(
            f"the server at {central} did not answer like an Estafet central"
        ) from exc
    if status != 200:
        raise EnrollRefused(str(body.get("error") or f"refused with HTTP {status}"))
    try:
        return Materials(
            certificate=body["certificate"],
            issuer_certificate=body["issuer_certificate"],
            root_public=body["root_public"],
            manifest=body["manifest"],
            revocation=body.get("revocation"),
        )
    except KeyError as exc:
        raise EnrollRefused(f"enrollment answer lacks {exc}") from exc


def install(
    home: Path, key: SigningKey, m: Materials, pinned_root: bytes | None, now: int | None = None
) -> CertificateBody:
    """Verify the enrollment materials and put them in the node's store; pin the root."""
    now = int(time.time()) if now is None else now
    if not isinstance(m.root_public, bytes) or len(m.root_public) != 32:
        raise EnrollRefused("the server sent a malformed root key")
    if pinned_root is not None and pinned_root != m.root_public:
        raise EnrollRefused(
            f"the server's root key {key_id(m.root_public).hex()} is not the pinned root "
            f"{key_id(pinned_root).hex()}: refusing"
        )
    trust = TrustStore(m.root_public)
    raws = [m.issuer_certificate, m.manifest, m.certificate]
    if m.revocation:
        raws.insert(0, m.revocation)
    store = Store.open(home, now)
    try:
        sdb = store.sync_db()
        outcomes = accept_batch(sdb, trust, raws, peer="", origin="local", scope="", now=now)
        bad = [o for o in outcomes if o.status not in ("stored", "duplicate")]
        if bad:
            raise EnrollRefused(f"enrollment materials did not verify: {bad[0].reason}")
        try:
            cert = trust.verify(m.certificate, now)
        except VerifyError as exc:
            raise EnrollRefused(f"certificate did not verify: {exc}") from exc
        body = cert.envelope.body
        assert isinstance(body, CertificateBody)
        if body.subject != key.public:
            raise EnrollRefused("the certificate is for another key")
        sdb.set_meta("certificate", cert.id.hex())
    finally:
        store.close()
    Home(home).save_trust(m.root_public)
    return body
