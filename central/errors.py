"""The exception tree of :mod:`estafet.central`.

::

    CentralError                 anything the central server refuses or cannot do (under
                                 estafet.protocol.errors.EstafetError)
    ├── ManifestFileError        the KPU's manifest files (TOML + CSV) cannot be used
    ├── AuthorityError           the authority home (keys, certificates) is missing or unusable
    ├── EnrollError              an enrollment request is refused; ``reason`` is in ENROLL_REASONS
    ├── LogError                 the hash-chained ingest log does not verify; ``index`` names
    │                            the first bad entry
    ├── UnknownTpsError          a TPS code the manifest does not list
    └── DatabaseError            central.db is from a newer version or damaged

Library errors from below (``ProtocolError``, ``CryptoError``, ``sqlite3.Error``) are translated
here with ``raise ... from exc`` so callers catch one root.
"""

from __future__ import annotations

from estafet.protocol.errors import EstafetError

ENROLL_REASONS = {
    "unknown-code": "no such enrollment code (mistyped, or never issued)",
    "expired": "the enrollment code expired; ask the KPU for a new one",
    "already-used": "the enrollment code was already used; each code works once",
    "rate-limited": "too many failed attempts; wait before trying again",
    "bad-key": "the public key is not a valid 32-byte Ed25519 key",
    "bad-request": "the request is malformed",
}


class CentralError(EstafetError):
    """Root of every error raised by :mod:`estafet.central`."""


class ManifestFileError(CentralError):
    """A manifest TOML or CSV file is missing or malformed; the message names file and line."""


class AuthorityError(CentralError):
    """The authority home cannot be created or opened (exists, wrong passphrase, missing file)."""


class EnrollError(CentralError):
    """An enrollment is refused. ``reason`` is a stable name from ``ENROLL_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in ENROLL_REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class LogError(CentralError):
    """The ingest log does not verify; ``index`` is the first bad entry."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(f"log entry {index}: {message}")


class UnknownTpsError(CentralError):
    """The TPS code is not in the manifest."""


class DatabaseError(CentralError):
    """central.db cannot be used (schema from a newer version, or damaged)."""
