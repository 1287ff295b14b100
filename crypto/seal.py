"""Building signed objects: content map -> canonical bytes -> signature -> envelope bytes."""

from __future__ import annotations

from estafet.protocol.objects import (
    Body,
    CertificateBody,
    Envelope,
    decode_envelope,
    encode_envelope,
    make_content,
    signing_message,
)

from .keys import SigningKey


def seal(
    kind: str, body: Body, key: SigningKey, created: int, chain: tuple[bytes, ...] = ()
) -> Envelope:
    """Sign ``body`` as an object of ``kind`` made at ``created`` (unix seconds)."""
    content = make_content(kind, key.id, created, body)
    sig = key.sign(signing_message(kind, content))
    return decode_envelope(encode_envelope(content, sig, chain))


def certify(
    issuer: SigningKey,
    *,
    subject: bytes,
    role: str,
    scope: tuple[str, ...],
    elections: tuple[str, ...],
    serial: int,
    not_before: int,
    not_after: int,
    label: str = "",
) -> Envelope:
    """Issue a certificate for the public key ``subject``."""
    body = CertificateBody(
        serial=serial,
        subject=subject,
        role=role,
        scope=scope,
        elections=elections,
        not_before=not_before,
        not_after=not_after,
        label=label,
    )
    return seal("certificate", body, issuer, created=not_before)
