"""Building signed objects: content map -> canonical bytes -> signature -> envelope bytes."""

from __future__ import annotations

from estafet.protocol.objects import (
    Body,
    CertificateBody,
    Envelope,
    decode_envelope,
    encode_envelope,
    make_content,
    object_id,
    signing_message,
)

from .keys import SigningKey


def seal(
    kind: str,
    body: Body,
    key: SigningKey,
    created: int,
    chain: tuple[bytes, ...] = (),
    *,
    check: bool = True,
) -> Envelope:
    """Sign ``body`` as an object of ``kind`` made at ``created`` (unix seconds).

    With ``check`` (the default) the envelope is decoded back from its bytes, so a body that
    does not survive the round trip (not canonical, breaks a schema rule) fails here, at the
    signer, rather than at every node that receives it. ``check=False`` is for bodies of plain
    values the caller built itself (the central server's receipts, one per log entry: the
    decode was ~5% of its ingest); the envelope is then built from the parts just encoded."""
    content = make_content(kind, key.id, created, body)
    sig = key.sign(signing_message(kind, content))
    if check:
        return decode_envelope(encode_envelope(content, sig, chain))
    return Envelope(content, sig, tuple(chain), kind, key.id, created, body, object_id(content))


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
