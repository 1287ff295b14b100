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
    "expired": "signed after the signer's certificate ended, or arrived after its arrival grace",
    "not-yet-valid": "signed before the signer's certificate began, or dated in the future",
    "manifest-mismatch": "the content names a TPS or election the receiver's manifest lacks "
    "(the receiver's manifest may be older than the signer's)",
    "revoked": "the signer's key or certificate was revoked",
    "invalid-content": "the content breaks an election rule (the detail names the rule)",
    "out-of-window": "an admission signed outside the day it covers",
    "seat-taken": "a second admission for a witness seat (pair, seat, TPS) already held",
}


NOT_FINAL = frozenset({"expired", "not-yet-valid", "manifest-mismatch"})
"""Failures that depend only on time or on the receiver's manifest version (issue 11, item 6).
They are not the sender's fault: a relay must not penalise the peer that passed the object on,
and the central must not give it a final receipt. The object may verify elsewhere or later."""


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

    @property
    def final(self) -> bool:
        """False when the failure depends only on time or manifest version (``NOT_FINAL``)."""
        return self.reason not in NOT_FINAL
