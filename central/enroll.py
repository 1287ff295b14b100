"""Enrollment: one-time codes the KPU hands out on paper, exchanged once for a device certificate.

Theory of operation
-------------------
:meth:`Enrollment.make_codes` makes random codes, one per TPS and role (``kpps-chair``,
``kpps-member``, ``witness``) or a number of codes for ``relay`` / ``gateway`` devices with a
region scope (default: the manifest's kabupaten). A code is 16 Crockford base32 characters in
four groups (``7KQ2-M9XD-4HRT-B1CE``, 80 bits); on input, case, spaces and dashes are ignored and
the look-alikes O/I/L read as 0/1/1. Only ``SHA-256(salt + normalised code)`` is stored, with a
random per-server salt, together with the role, TPS or scope and the expiry.

:meth:`Enrollment.enroll` checks, in order: the failure budget of the client's *block* (at most
``client_limit`` failures per ``window`` seconds per IPv4 /24 or IPv6 /56; the web layer takes
the address from ``X-Forwarded-For`` only when the TCP peer is a configured trusted proxy) and of
the *code* (at most ``code_limit`` failures per window against one code), the key's shape, then
the code (unknown / expired / already used, each a recorded failure). There is no global limit:
one attacker's failures never lock out another block (issue 11, item 5). It then issues the
certificate and marks the code used in one transaction, so a code can never be spent twice. A
retry of a used code with the *same* key (the answer was lost on the way) returns the same
certificate again; with another key it is ``already-used``. The answer
carries everything a new device needs to trust and be trusted: its certificate, the issuer
certificate, the root public key and its key id (the fingerprint printed beside the codes, which
the device compares before pinning), the signed manifest and the latest revocation list.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from estafet.crypto.keys import key_id
from estafet.crypto.seal import certify
from estafet.protocol.manifest import Manifest, is_region_code
from estafet.protocol.objects import CertificateBody, Envelope, decode_envelope

from .authority import Authority
from .db import CentralDB
from .errors import AuthorityError, EnrollError

TPS_ROLES = ("kpps-chair", "kpps-member", "witness")
SCOPED_ROLES = ("relay", "gateway", "ppk")
"""Device roles enrolled by count for a region; a ``ppk`` code is for exactly one kecamatan."""
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
GROUPS, GROUP_LEN = 4, 4
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
DAY = 86_400
DEFAULT_VALIDITY = 90 * DAY
"""Device certificates run 90 days from enrollment: election day, the recapitulation (about two
weeks) and the dispute period (filing and the court's ruling, about 45 working days), so a chair
can sign a correction after a recount. Objects are judged by signing time inside this window and
may arrive up to ``crypto.trust.ARRIVAL_GRACE`` (30 days) after it (issue 11, item 6). Change it
per server with ``central serve --cert-days`` (or a fixed end, ``Central(valid_until=...)``);
always capped by the issuer certificate."""
FIRST_DEVICE_SERIAL = 2
MAX_CODES = 100_000


def normalise_code(code: str) -> str | None:
    """The canonical 16-character form of a typed code, or None if it cannot be one."""
    if not isinstance(code, str) or len(code) > 64:
        return None
    s = code.upper().translate(_LOOKALIKES)
    if len(s) != GROUPS * GROUP_LEN or any(c not in ALPHABET for c in s):
        return None
    return s


def client_block(address: str) -> str:
    """The block a client's failures count against: its IPv4 /24 or IPv6 /56.

    Rate limits per block, not per address, so one host cannot dodge them by hopping addresses
    inside its own subnet, and one block's failures never lock out another's."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def format_code(normalised: str) -> str:
    return "-".join(normalised[i : i + GROUP_LEN] for i in range(0, len(normalised), GROUP_LEN))


def default_scope(manifest: Manifest) -> str:
    """The kabupaten (4 digits) all TPS share, else their province (2 digits)."""
    codes = sorted(manifest.tps)
    first, last = codes[0], codes[-1]
    return first[:4] if first[:4] == last[:4] else first[:2]


@dataclass(frozen=True, slots=True)
class EnrollResult:
    """What an enrolled device receives."""

    certificate: Envelope
    issuer_certificate: Envelope
    root_public: bytes
    root_id: bytes
    manifest: Envelope
    revocation: Envelope

    def to_wire(self) -> dict[str, bytes]:
        return {
            "certificate": self.certificate.encode(),
            "issuer_certificate": self.issuer_certificate.encode(),
            "root_public": self.root_public,
            "root_id": self.root_id,
            "manifest": self.manifest.encode(),
            "revocation": self.revocation.encode(),
        }


class Enrollment:
    """Codes and enrollment against one central database and authority."""

    def __init__(
        self,
        db: CentralDB,
        authority: Authority,
        *,
        valid_until: int | None = None,
        client_limit: int = 10,
        code_limit: int = 5,
        window: int = 600,
    ) -> None:
        self.db = db
        self.authority = authority
        self.valid_until = valid_until
        self.client_limit = client_limit
        self.code_limit = code_limit
        self.window = window
        self.validity = DEFAULT_VALIDITY
        """Seconds a device certificate runs from enrollment (``central serve --cert-days``)."""
        self._salt = db.setting("enroll_salt", lambda: secrets.token_bytes(32))

    def code_hash(self, normalised: str) -> bytes:
        return hashlib.sha256(b"estafet/enroll/v1\x00" + self._salt + normalised.encode()).digest()

    # --- making codes -------------------------------------------------------------------------
    def make_codes(
        self,
        role: str,
        targets: Sequence[str] | int,
        expires_at: int,
        now: int,
        scope: str | None = None,
    ) -> list[dict[str, Any]]:
        """New codes: one per TPS in ``targets`` for TPS roles, ``targets`` many for devices.
        The plain codes exist only in the returned list; print them and keep them safe."""
        if expires_at <= now:
            raise EnrollError("bad-request", "codes must expire after now")
        pairs = self._targets(role, targets, scope)
        out, rows = [], []
        for tps, where in pairs:
            code = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
            rows.append(
                {
                    "hash": self.code_hash(code),
                    "role": role,
                    "tps": tps,
                    "scope": where,
                    "created": now,
                    "expires_at": expires_at,
                }
            )
            out.append(
                {
                    "tps": tps,
                    "role": role,
                    "scope": where,
                    "code": format_code(code),
                    "expires_at": expires_at,
                }
            )
        with self.db.write():
            self.db.put_codes(rows)
        return out

    def _targets(
        self, role: str, targets: Sequence[str] | int, scope: str | None
    ) -> list[tuple[str, str]]:
        manifest = self.authority.manifest
        if role in TPS_ROLES:
            if isinstance(targets, int | str) or scope is not None:
                raise EnrollError("bad-request", f"{role} codes are made for a list of TPS codes")
            unknown = [t for t in targets if t not in manifest.tps]
            if unknown:
                raise EnrollError("bad-request", f"TPS not in the manifest: {', '.join(unknown)}")
            pairs = [(t, t) for t in targets]
        elif role in SCOPED_ROLES:
            if isinstance(targets, bool) or not isinstance(targets, int):
                raise EnrollError("bad-request", f"{role} codes are made by count")
            where = scope or default_scope(manifest)
            issuer = self._issuer_body()
            if not is_region_code(where) or len(where) > 10 or not issuer.covers(where):
                raise EnrollError("bad-request", f"scope {where!r} is not a region we serve")
            if role == "ppk" and len(where) != 6:
                raise EnrollError("bad-request", "ppk codes are made for one kecamatan (--scope)")
            pairs = [("", where)] * targets
        else:
            raise EnrollError("bad-request", f"role must be one of {TPS_ROLES + SCOPED_ROLES}")
        if not 0 < len(pairs) <= MAX_CODES:
            raise EnrollError("bad-request", f"make 1..{MAX_CODES} codes at a time")
        return pairs

    def _issuer_body(self) -> CertificateBody:
        body = self.authority.issuer_cert.body
        assert isinstance(body, CertificateBody)
        return body

    # --- enrolling ----------------------------------------------------------------------------
    def enroll(self, code: str, public_key: bytes, now: int, client: str) -> EnrollResult:
        """Exchange a code and a fresh public key for a certificate. Raises EnrollError.

        ``client`` is the client's address as the web layer resolved it; limits apply to its
        block (:func:`client_block`)."""
        block = client_block(client)
        normalised = normalise_code(code)
        hashed = None if normalised is None else self.code_hash(normalised)
        with self.db.lock:
            since = now - self.window
            if self.db.failures_since(since, client=block) >= self.client_limit:
                raise EnrollError("rate-limited", f"too many failures; retry in {self.window} s")
            if hashed and self.db.failures_since(since, code=hashed) >= self.code_limit:
                raise EnrollError("rate-limited", f"this code is locked; retry in {self.window} s")
            if not isinstance(public_key, bytes) or len(public_key) != 32:
                raise EnrollError("bad-key", "the public key must be 32 bytes")
            if hashed is None:
                self._fail(block, now, "unknown-code", "that is not the shape of a code")
            row = self.db.code(hashed)
            if row is None:
                self._fail(block, now, "unknown-code", "check the code and type it again", hashed)
            if row["used_at"] is not None:
                if row["used_key"] is not None and bytes(row["used_key"]) == key_id(public_key):
                    return self._answer(self._reissued(row))
                self._fail(block, now, "already-used", "ask the KPU for a new code", hashed)
            if row["expires_at"] <= now:
                self._fail(block, now, "expired", "ask the KPU for a new code", hashed)
            if self.db.issued_label(key_id(public_key)) is not None:
                raise EnrollError("bad-key", "this key is already enrolled; make a new key")
            return self._answer(self._issue(row, public_key, now))

    def _reissued(self, row: dict[str, Any]) -> Envelope:
        raw = self.db.issued_cert(int(row["serial"]))
        if raw is None:  # pragma: no cover - use_code writes both in one transaction
            raise EnrollError("already-used", "ask the KPU for a new code")
        return decode_envelope(raw)

    def _answer(self, cert: Envelope) -> EnrollResult:
        trust = self.authority.trust
        assert trust.manifest_envelope is not None and trust.revocation_envelope is not None
        return EnrollResult(
            certificate=cert,
            issuer_certificate=self.authority.issuer_cert,
            root_public=trust.root_public,
            root_id=trust.root_id,
            manifest=trust.manifest_envelope,
            revocation=trust.revocation_envelope,
        )

    def _fail(
        self, block: str, now: int, reason: str, detail: str, code: bytes | None = None
    ) -> NoReturn:
        with self.db.write():
            self.db.prune_failures(now - 2 * self.window)
            self.db.add_failure(block, now, reason, code)
        raise EnrollError(reason, detail)

    def _issue(self, row: dict[str, Any], public_key: bytes, now: int) -> Envelope:
        issuer = self._issuer_body()
        not_after = min(self.valid_until or now + self.validity, issuer.not_after)
        if not_after <= now:
            raise AuthorityError("the issuer certificate or election window has ended")
        scope = row["tps"] or row["scope"]
        elections = tuple(
            e.kind
            for e in self.authority.manifest.elections
            if e.region.startswith(scope) or scope.startswith(e.region)
        )
        with self.db.write():
            serial = self.db.next_counter("cert_serial", FIRST_DEVICE_SERIAL)
            cert = certify(
                self.authority.issuer_key,
                subject=public_key,
                role=row["role"],
                scope=(scope,),
                elections=elections,
                serial=serial,
                not_before=now,
                not_after=not_after,
                label=f"{row['role']} {scope} #{serial}",
            )
            used = self.db.use_code(
                row["hash"],
                now,
                {
                    "serial": serial,
                    "key_id": key_id(public_key),
                    "role": row["role"],
                    "scope": scope,
                    "not_before": now,
                    "not_after": not_after,
                    "issued": now,
                    "raw": cert.encode(),
                },
            )
            if not used:
                raise EnrollError("already-used", "the code was used a moment ago")
        return cert
