"""The exception tree of :mod:`estafet.crypto`.

::

    CryptoError                 root of crypto/ (under EstafetError)
    ├── KeyFileError            a key file that cannot be opened (wrong passphrase, corrupt)
    └── VerifyError             an object that must not be trusted; ``reason`` is one of REASONS
"""

from __future__ import annotations

from estafet.protocol.errors import EstafetError

REASONS = {
    "malformed": "the bytes are not a well-formed canonical object",
    "bad-signature": "the signature does not match the content and the signer's key",
    "unknown-signer": "no certificate chain from the pinned root vouches for the signer",
    "wrong-role": "the signer's role may not sign this kind of object",
    "out-of-scope": "the signer may not act for this TPS, region or election",
    "expired": "the signer's certificate expired (beyond the clock tolerance)",
    "not-yet-valid": "the signer's certificate is not valid yet (beyond the clock tolerance)",
    "revoked": "the signer's key or certificate was revoked",
    "invalid-content": "the content breaks an election rule (the detail names the rule)",
}


class CryptoError(EstafetError):
    """Root of every error raised by :mod:`estafet.crypto`."""


class KeyFileError(CryptoError):
    """A private key file could not be decrypted or parsed."""


class VerifyError(CryptoError):
    """An object failed verification; ``reason`` is a stable name from ``REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
