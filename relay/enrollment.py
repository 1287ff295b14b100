"""Client side of enrollment: send our public key and a one-time code, keep what comes back.

The central server answers with our certificate, its issuer certificate, the root public key,
the signed manifest and the latest revocation list. The root is never taken on the server's
word: the officer pins it beforehand, with the trust anchor file (``--trust``) or the root
fingerprint printed beside the codes (``--root-fingerprint`` or typed at the prompt), and
:func:`install` refuses an answer whose root does not match (a fake central, issue 11 item 5).
Everything is then verified against that root before it is installed in the node's store. Any
plain ``http://`` URL warns: the code travels in the clear and can be stolen on the way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import KEY_ID_BYTES, CertificateBody

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
    """A warning for any plain ``http://`` URL: the one-time code travels in the clear."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return None
    host = parts.hostname or url
    return (
        f"WARNING: enrolling over plain http:// to {host}: anyone on the way can read the code; "
        "use https:// (the root fingerprint check still stops a fake server)"
    )


MIN_FINGERPRINT_HEX = 20
"""Typed fingerprints may be a prefix of the root key id, but at least 80 bits long."""


def normalise_fingerprint(text: str) -> str:
    """A typed root fingerprint as lowercase hex; spaces, dashes and colons are ignored."""
    hexed = "".join(c for c in text.lower() if c not in " -:\t")
    full = 2 * KEY_ID_BYTES
    if not MIN_FINGERPRINT_HEX <= len(hexed) <= full or any(
        c not in "0123456789abcdef" for c in hexed
    ):
        raise EnrollRefused(
            f"a root fingerprint is {MIN_FINGERPRINT_HEX}..{full} hex digits (as printed by "
            "`estafet central codes`)"
        )
    return hexed


def format_fingerprint(root_id: bytes) -> str:
    h = root_id.hex()
    return " ".join(h[i : i + 4] for i in range(0, len(h), 4))


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
    home: Path,
    key: SigningKey,
    m: Materials,
    pinned_root: bytes | None,
    now: int | None = None,
    *,
    fingerprint: str | None = None,
) -> CertificateBody:
    """Verify the enrollment materials and put them in the node's store; pin the root.

    The root must match ``pinned_root`` or the typed ``fingerprint``; with neither (only
    library callers that already trust the channel, such as the demo) the answer's root is
    pinned as given."""
    now = int(time.time()) if now is None else now
    if not isinstance(m.root_public, bytes) or len(m.root_public) != 32:
        raise EnrollRefused("the server sent a malformed root key")
    got = key_id(m.root_public).hex()
    if pinned_root is not None and pinned_root != m.root_public:
        raise EnrollRefused(
            f"the server's root key {got} is not the pinned root {key_id(pinned_root).hex()}: "
            "refusing (a fake or wrong central server?)"
        )
    if fingerprint is not None and not got.startswith(normalise_fingerprint(fingerprint)):
        raise EnrollRefused(
            f"the server's root fingerprint {format_fingerprint(key_id(m.root_public))} is not "
            "the one you typed: refusing (a fake or wrong central server?)"
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
