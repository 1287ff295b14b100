"""Trust: is this object genuine, and may its signer say what it says?

Theory of operation
-------------------
A :class:`TrustStore` is pinned to one KPU root public key. The root certifies *issuer* keys
(the central server's); issuers certify enrolled device keys with a role, a scope (TPS codes or
region prefixes), the elections, a validity window and a serial. The root also signs the
election manifest and the revocation list (both versioned; only a newer version replaces the one
held).

:meth:`TrustStore.verify` decodes an envelope and checks, in order: structure and canonical bytes
(``malformed``); the signer's certificate chain to the pinned root, using certificates already
learnt or attached to the object (``unknown-signer``); the signature over the exact received
content bytes (``bad-signature``); the certificate's validity window at the object's *signing
time* (``expired`` / ``not-yet-valid``); revocation (``revoked``); the role allowed for the kind
(``wrong-role``); scope and election (``out-of-scope``); and, for results, the election rules
against the manifest (``invalid-content``, or ``manifest-mismatch`` when the only broken rules
name a TPS or election this store's manifest lacks). It returns a :class:`Verified`, the only
way to get one.

Validity fits store-and-forward (issue 11, item 6). An object is judged by its signing time
(``created``), which must lie inside the signer's certificate window (the enrollment default
covers the recap and dispute period, see ``central.enroll.DEFAULT_VALIDITY``) with a tolerance of
``CLOCK_SKEW`` (24 hours) either side, and must not lie more than ``CLOCK_SKEW`` in the
receiver's future. The receiver's ``now`` bounds only the arrival: an object still arrives up to
``arrival_grace`` (default ``ARRIVAL_GRACE``, 30 days) after its certificate ended, so a result
walking out late, or a correction a chair signed on the last day of the window, is still
accepted at every hop, while a key used after its window is refused. Failures that depend only
on time or manifest version are not final (:data:`~.errors.NOT_FINAL`, ``VerifyError.final``).
Backdating by a stolen key is bounded by revocation back to the compromise time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from estafet.protocol.errors import ProtocolError, Violation
from estafet.protocol.form import check_form
from estafet.protocol.manifest import Manifest
from estafet.protocol.objects import (
    CertificateBody,
    EndorsementBody,
    Envelope,
    ManifestBody,
    ReceiptBody,
    ResultBody,
    RevocationBody,
    RevokedEntry,
    VoidBody,
    decode_envelope,
    receipt_log_ok,
    signing_message,
)
from estafet.protocol.photos import check_photos
from estafet.protocol.trail import AdmissionBody, CorrectionBody, DHasilBody, ObjectionBody

from .errors import VerifyError
from .keys import key_id, load_public, verify_with

CLOCK_SKEW = 24 * 3600
ARRIVAL_GRACE = 30 * 24 * 3600
MANIFEST_RULES = frozenset({"tps-unknown", "election-unknown"})
"""Hard rules that may break only because the receiver's manifest is older than the signer's."""
DEVICE_ROLES = ("kpps-chair", "kpps-member", "witness", "relay", "gateway", "ppk")
ROLES_FOR_KIND: dict[str, tuple[str, ...]] = {
    "admission": ("kpps-chair",),
    "objection": ("kpps-member", "witness", "ptps"),
    "correction": ("ppk",),
    "dhasil": ("ppk",),
    "result": ("kpps-chair",),
    "endorsement": ("kpps-chair", "kpps-member", "witness"),
    "receipt": ("issuer",),
    "certificate": ("issuer", "root"),
    "manifest": ("root",),
    "revocation": ("root",),
    "void": ("root", "issuer"),
}
MAX_CHAIN_DEPTH = 3
"""object <- admission <- chair certificate <- issuer certificate (<- the pinned root)."""
Link = tuple[bytes, bytes]
"""One entry of an object's attached chain: (its exact bytes, SHA-256 of them)."""
ADMITTED_SERIAL = -1
"""Serial of the certificate a verifier derives from an admission: no revocation entry names a
negative serial, so an admitted key is revoked by its key id or through its chair."""


def admitted_certificate(body: AdmissionBody) -> CertificateBody:
    """The certificate an admission amounts to: its role, its one TPS, its elections, its day."""
    return CertificateBody(
        serial=ADMITTED_SERIAL,
        subject=body.subject,
        role=body.role,
        scope=(body.tps,),
        elections=body.elections,
        not_before=body.not_before,
        not_after=body.not_after,
        label=body.label,
    )


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed: the root itself (``cert`` None) or a certified key."""

    key_id: bytes
    public: bytes
    role: str
    cert: CertificateBody | None = None
    cert_envelope: Envelope | None = None


@dataclass(frozen=True, slots=True)
class Verified:
    """An object whose signature, chain, role, scope and content rules all checked out."""

    envelope: Envelope
    signer: Signer
    revoked: RevokedEntry | None = None
    warnings: tuple[str, ...] = ()

    @property
    def id(self) -> bytes:
        return self.envelope.id

    @property
    def kind(self) -> str:
        return self.envelope.kind


@dataclass
class TrustStore:
    """What a node believes. Learning is explicit (:meth:`learn`); verifying has no effects
    beyond caching certificates that verified."""

    root_public: bytes
    skew: int = CLOCK_SKEW
    arrival_grace: int = ARRIVAL_GRACE
    manifest: Manifest | None = None
    manifest_envelope: Envelope | None = None
    revocation: RevocationBody | None = None
    revocation_envelope: Envelope | None = None
    _certs: dict[bytes, tuple[Envelope, CertificateBody]] = field(default_factory=dict)
    _seats: dict[tuple[str, str, int, int], bytes] = field(default_factory=dict)
    _links_ok: dict[bytes, tuple[bytes, Envelope, CertificateBody]] = field(
        default_factory=dict, repr=False
    )
    """Chain entries that verified (not revoked), by SHA-256 of their exact bytes, signature
    included: (subject key id, envelope, body). Never by content id: a copy with broken
    signature bytes has the same id and must still be refused."""
    _public_keys: dict[bytes, Ed25519PublicKey | None] = field(default_factory=dict, repr=False)
    _root_id: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        self._root_id = key_id(self.root_public)

    @property
    def root_id(self) -> bytes:
        return self._root_id

    # --- learning ----------------------------------------------------------------------
    def learn(self, verified: Verified) -> bool:
        """Take in a verified certificate, manifest or revocation list. Returns True if it
        changed what this store believes (a new certificate or a newer version)."""
        env = verified.envelope
        body = env.body
        if isinstance(body, CertificateBody):
            if key_id(body.subject) in self._certs:
                return False
            self._certs[key_id(body.subject)] = (env, body)
            return True
        if isinstance(body, AdmissionBody):
            if key_id(body.subject) in self._certs:
                return False
            self._certs[key_id(body.subject)] = (env, admitted_certificate(body))
            self._seats.setdefault(body.seat_key, env.id)
            return True
        if isinstance(body, ManifestBody):
            if self.manifest is None or body.manifest.version > self.manifest.version:
                self.manifest, self.manifest_envelope = body.manifest, env
                return True
            return False
        if isinstance(body, RevocationBody):
            if self.revocation is None or body.version > self.revocation.version:
                self.revocation, self.revocation_envelope = body, env
                return True
            return False
        return False

    def certificates(self) -> list[Envelope]:
        return [env for env, _ in self._certs.values()]

    def certificate_for(self, kid: bytes) -> CertificateBody | None:
        found = self._certs.get(kid)
        return found[1] if found else None

    # --- verification ------------------------------------------------------------------
    def verify(
        self,
        data: bytes | Envelope,
        now: int,
        *,
        allow_revoked: bool = False,
        check_content: bool = True,
    ) -> Verified:
        """Verify ``data`` at time ``now`` (unix seconds). Raises :class:`VerifyError`.

        ``allow_revoked`` returns objects of revoked signers with ``revoked`` set (the central
        server keeps them as flagged evidence) instead of refusing them.
        """
        env = self._decode(data)
        links = tuple((raw, hashlib.sha256(raw).digest()) for raw in env.chain)
        signer = self._signer(env, now, links, allow_revoked, depth=0)
        return self._check(env, signer, now, allow_revoked, check_content)

    def _decode(self, data: bytes | Envelope) -> Envelope:
        if isinstance(data, Envelope):
            return data
        try:
            return decode_envelope(data)
        except ProtocolError as exc:
            raise VerifyError("malformed", str(exc)) from exc

    def _signer(
        self, env: Envelope, now: int, links: tuple[Link, ...], allow_revoked: bool, depth: int
    ) -> Signer:
        """Find who signed ``env``: the root, a held certificate, or one from ``links`` (the
        outermost object's attached certificates, which also vouch for each other). An attached
        certificate for the signer is checked even when one is held: the object travels on with
        its chain, and a node that holds none would refuse it if that copy did not verify."""
        if env.signer == self._root_id:
            return Signer(env.signer, self.root_public, "root")
        held = self._certs.get(env.signer)
        if depth < MAX_CHAIN_DEPTH and links:
            attached = self._attached(env.signer, now, links, allow_revoked, depth)
            if held is None and attached is not None:
                held = self._certs[env.signer] = attached
        if held is None:
            raise VerifyError("unknown-signer", f"no certificate for key {env.signer.hex()}")
        cert_env, cert = held
        return Signer(env.signer, cert.subject, cert.role, cert, cert_env)

    def _attached(
        self, kid: bytes, now: int, links: tuple[Link, ...], allow_revoked: bool, depth: int
    ) -> tuple[Envelope, CertificateBody] | None:
        """The first certificate in ``links`` for the key ``kid`` (the one a node holding none
        would use), verified with its own signer's link; None if the chain has none. A byte
        string that verified before is not checked again, but its signer's link still is."""
        for raw, digest in links:
            hit = self._links_ok.get(digest)
            if hit is None:
                try:
                    cert_env = decode_envelope(raw)
                except ProtocolError:
                    continue
                cb = cert_env.body
                if not isinstance(cb, CertificateBody | AdmissionBody) or key_id(cb.subject) != kid:
                    continue
                cert_signer = self._signer(cert_env, now, links, allow_revoked, depth + 1)
                checked = self._check(cert_env, cert_signer, now, allow_revoked, True)
                cert = admitted_certificate(cb) if isinstance(cb, AdmissionBody) else cb
                if isinstance(cb, AdmissionBody):
                    self._seats.setdefault(cb.seat_key, cert_env.id)
                if checked.revoked is None:
                    self._links_ok[digest] = (kid, cert_env, cert)
                return cert_env, cert
            if hit[0] != kid:
                continue
            issuer = hit[1].signer
            if depth + 1 < MAX_CHAIN_DEPTH and issuer != self._root_id:
                self._attached(issuer, now, links, allow_revoked, depth + 1)
            return hit[1], hit[2]
        return None

    def _check(
        self, env: Envelope, signer: Signer, now: int, allow_revoked: bool, check_content: bool
    ) -> Verified:
        public = self._public_keys.get(signer.public)
        if public is None and signer.public not in self._public_keys:
            public = self._public_keys[signer.public] = load_public(signer.public)
        if public is None or not verify_with(
            public, signing_message(env.kind, env.content), env.signature
        ):
            raise VerifyError("bad-signature", f"{env.kind} {env.id.hex()[:16]}")
        revoked = None
        if signer.cert is not None:
            cert = signer.cert
            self._check_window(env, cert, now)
            if self.revocation is not None:
                revoked = self._revocation(env, signer, cert)
                if revoked is not None and not allow_revoked:
                    raise VerifyError("revoked", f"serial {cert.serial}: {revoked.reason}")
        if signer.role not in ROLES_FOR_KIND[env.kind]:
            raise VerifyError("wrong-role", f"a {signer.role} may not sign a {env.kind}")
        warnings = self._check_body(env, signer, check_content)
        return Verified(env, signer, revoked, warnings)

    def _revocation(
        self, env: Envelope, signer: Signer, cert: CertificateBody
    ) -> RevokedEntry | None:
        """The entry revoking the signer (or its issuer) for an object signed at ``env.created``:
        only objects signed at or after the stated compromise time are revoked."""
        assert self.revocation is not None
        found = self.revocation.revokes(cert.serial, signer.key_id)
        if found is None and signer.cert_envelope is not None:
            issuer = self._certs.get(signer.cert_envelope.signer)
            if issuer is not None:
                found = self.revocation.revokes(issuer[1].serial, signer.cert_envelope.signer)
        return found if found is not None and found.covers(env.created) else None

    def _check_window(self, env: Envelope, cert: CertificateBody, now: int) -> None:
        """Signing time inside the certificate's window; arrival within the grace after it."""
        signed = env.created
        if signed < cert.not_before - self.skew:
            raise VerifyError(
                "not-yet-valid", f"signed before certificate serial {cert.serial} began"
            )
        if signed > now + self.skew:
            raise VerifyError("not-yet-valid", f"signed at {signed}, in the receiver's future")
        if signed > cert.not_after + self.skew:
            raise VerifyError("expired", f"signed after certificate serial {cert.serial} ended")
        if now > cert.not_after + self.arrival_grace:
            raise VerifyError(
                "expired",
                f"arrived after the {self.arrival_grace // 86400}-day grace of certificate "
                f"serial {cert.serial}",
            )

    def _check_body(self, env: Envelope, signer: Signer, check_content: bool) -> tuple[str, ...]:
        body = env.body
        if isinstance(body, CertificateBody):
            self._check_certificate(body, signer)
        elif isinstance(body, AdmissionBody):
            self._check_admission(env, body, signer)
        elif isinstance(body, DHasilBody):
            self._check_dhasil(body, signer)
        elif isinstance(body, ResultBody | EndorsementBody | ObjectionBody | CorrectionBody):
            cert = signer.cert
            assert cert is not None
            tps = body.form.tps if isinstance(body, ResultBody) else body.tps
            election = body.form.election if isinstance(body, ResultBody) else body.election
            if not cert.covers(tps) or election not in cert.elections:
                raise VerifyError(
                    "out-of-scope",
                    f"key serial {cert.serial} ({cert.role} for {','.join(cert.scope)}) may not "
                    f"sign for TPS {tps} {election}",
                )
            if isinstance(body, ResultBody) and check_content:
                return self._check_result(body)
            if isinstance(body, ObjectionBody) and body.photos:
                self._refuse_photos(check_photos(list(body.photos), exact=False))
            if isinstance(body, CorrectionBody) and check_content:
                self._check_correction(body)
        elif isinstance(body, VoidBody) and signer.cert is not None:
            if not signer.cert.covers(body.tps):
                raise VerifyError("out-of-scope", f"issuer may not void a result of {body.tps}")
        elif isinstance(body, ReceiptBody) and not receipt_log_ok(body, env.created):
            raise VerifyError("invalid-content", "receipt log hash does not match its entry")
        return ()

    def _check_certificate(self, body: CertificateBody, signer: Signer) -> None:
        if signer.role == "root":
            if body.role != "issuer":
                raise VerifyError("wrong-role", "the root certifies only issuer keys")
            return
        if body.role not in DEVICE_ROLES:
            raise VerifyError("wrong-role", f"an issuer may not certify a {body.role} key")
        issuer = signer.cert
        assert issuer is not None
        for s in body.scope:
            if not any(s.startswith(p) for p in issuer.scope):
                raise VerifyError("out-of-scope", f"scope {s} is outside the issuer's scope")
        if not set(body.elections) <= set(issuer.elections):
            raise VerifyError("out-of-scope", "elections outside the issuer's elections")

    def _check_result(self, body: ResultBody) -> tuple[str, ...]:
        bad = check_photos(list(body.photos))
        warnings: tuple[str, ...] = ()
        if self.manifest is not None:
            hard, warn = check_form(body.form, self.manifest)
            bad.extend(hard)
            warnings = tuple(sorted(w.rule for w in warn))
        if bad:
            reason = (
                "manifest-mismatch"
                if {v.rule for v in bad} <= MANIFEST_RULES
                else "invalid-content"
            )
            raise VerifyError(reason, "; ".join(str(v) for v in bad))
        return warnings

    # --- the paper trail (issue 13) -------------------------------------------------------
    def _check_admission(self, env: Envelope, body: AdmissionBody, signer: Signer) -> None:
        """A chair admits only at its own TPS, for its elections, on the day it signs, at most
        ``MAX_SEATS`` witnesses per pair (the seat number), one admission per seat."""
        chair = signer.cert
        assert chair is not None
        if body.tps not in chair.scope:
            raise VerifyError("out-of-scope", f"a chair admits only at its own TPS, not {body.tps}")
        if not set(body.elections) <= set(chair.elections):
            raise VerifyError("out-of-scope", "admission for elections outside the chair's")
        if not body.not_before - self.skew <= env.created <= body.not_after:
            raise VerifyError("out-of-window", "an admission is signed within the day it covers")
        if body.role == "witness" and self.manifest is not None:
            election = self.manifest.election(body.elections[0])
            if election is not None and body.pair not in election.ballot_numbers:
                raise VerifyError("invalid-content", f"no candidate pair {body.pair}")
        if body.mandate:
            self._refuse_photos(check_photos(list(body.mandate), exact=False))
        held = self._seats.get(body.seat_key)
        if held is not None and held != env.id:
            raise VerifyError(
                "seat-taken",
                f"pair {body.pair} seat {body.seat} at TPS {body.tps} is held by admission "
                f"{held.hex()[:16]}",
            )

    def _check_correction(self, body: CorrectionBody) -> None:
        if self.manifest is None:
            return
        hard, _warn = check_form(body.form, self.manifest)
        bad = [v for v in hard if v.rule != "revision-supersedes"]
        if body.photos:
            bad.extend(check_photos(list(body.photos), exact=False))
        self._refuse_photos(bad)

    def _check_dhasil(self, body: DHasilBody, signer: Signer) -> None:
        cert = signer.cert
        assert cert is not None
        if not cert.covers(body.kecamatan) or body.election not in cert.elections:
            raise VerifyError(
                "out-of-scope",
                f"key serial {cert.serial} may not sign the D.Hasil of {body.kecamatan}",
            )
        if body.valid != sum(body.votes.values()):
            raise VerifyError("invalid-content", "D.Hasil valid is not the sum of its votes")
        if self.manifest is not None:
            election = self.manifest.election(body.election)
            want = {str(n) for n in election.ballot_numbers} if election else set()
            if election is not None and set(body.votes) != want:
                raise VerifyError("invalid-content", "D.Hasil votes are not the election's pairs")

    @staticmethod
    def _refuse_photos(bad: list[Violation]) -> None:
        if bad:
            rules = {v.rule for v in bad}
            reason = "manifest-mismatch" if rules <= MANIFEST_RULES else "invalid-content"
            raise VerifyError(reason, "; ".join(str(v) for v in bad))
