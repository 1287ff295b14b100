"""Ed25519 keys. A key id is the first 16 bytes of SHA-256 of the raw public key."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from estafet.protocol.objects import KEY_ID_BYTES

from .errors import CryptoError


def key_id(public: bytes) -> bytes:
    """The 16-byte id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(b"estafet/key/v1\x00" + public).digest()[:KEY_ID_BYTES]


class SigningKey:
    """A private Ed25519 key. ``generate()`` takes entropy from the OS via ``cryptography``."""

    __slots__ = ("_key", "id", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public: bytes = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id: bytes = key_id(self.public)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != 32:
            raise CryptoError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(id={self.id.hex()})"


def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        return False
    return verify_with(key, message, signature)


def load_public(public: bytes) -> Ed25519PublicKey | None:
    """The loaded key for raw ``public`` bytes (to keep and reuse), None if it is no key."""
    try:
        return Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        return None


def verify_with(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """:func:`verify_signature` with a key loaded by :func:`load_public`."""
    try:
        key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
