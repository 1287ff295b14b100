"""Private keys at rest: passphrase-encrypted (scrypt + ChaCha20-Poly1305), bytes in, bytes out.

Format: canonical msgpack map ``{"format": "estafet-key-v1", "kdf": "scrypt", "n", "r", "p",
"salt", "nonce", "box"}`` where ``box`` seals the 32-byte seed with the key id as associated data.
An unencrypted file (``"kdf": "none"``, ``"seed"``) exists only for unattended relays whose
owner asked for it explicitly. Writing the file (mode 0600) is ``relay/``'s job.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from estafet.protocol import codec
from estafet.protocol.errors import ProtocolError

from .errors import CryptoError, KeyFileError
from .keys import SigningKey

FORMAT = "estafet-key-v1"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_N_MIN, _N_MAX = 2**10, 2**20


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def encrypt_key(
    key: SigningKey,
    passphrase: str,
    *,
    n: int = SCRYPT_N,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Seal ``key`` under ``passphrase``. ``salt``/``nonce`` are for test vectors only."""
    if not passphrase:
        raise KeyFileError("an empty passphrase is not allowed; use an unencrypted key instead")
    if not _N_MIN <= n <= _N_MAX or n & (n - 1):
        raise KeyFileError(f"scrypt n must be a power of two in 2**10..2**20, got {n}")
    salt = salt if salt is not None else secrets.token_bytes(16)
    nonce = nonce if nonce is not None else secrets.token_bytes(12)
    box = ChaCha20Poly1305(_kdf(passphrase, salt, n, SCRYPT_R, SCRYPT_P)).encrypt(
        nonce, key.seed(), key.id
    )
    return codec.encode(
        {
            "format": FORMAT,
            "kdf": "scrypt",
            "n": n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": salt,
            "nonce": nonce,
            "box": box,
            "id": key.id,
        }
    )


def plain_key(key: SigningKey) -> bytes:
    """An unencrypted key file, for unattended relays only (an explicit choice)."""
    return codec.encode({"format": FORMAT, "kdf": "none", "seed": key.seed(), "id": key.id})


def is_encrypted(data: bytes) -> bool:
    try:
        m = codec.decode(data)
    except ProtocolError as exc:
        raise KeyFileError(f"not an Estafet key file: {exc}") from exc
    return isinstance(m, dict) and m.get("kdf") == "scrypt"


def decrypt_key(data: bytes, passphrase: str | None) -> SigningKey:
    """Open a key file. Raises KeyFileError for a wrong passphrase or a damaged file."""
    try:
        m = codec.decode(data)
    except ProtocolError as exc:
        raise KeyFileError(f"not an Estafet key file: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise KeyFileError("not an Estafet key file")
    try:
        if m["kdf"] == "none":
            key = SigningKey.from_seed(m["seed"])
        elif m["kdf"] == "scrypt":
            if passphrase is None:
                raise KeyFileError("this key is encrypted: a passphrase is needed")
            n, r, p = int(m["n"]), int(m["r"]), int(m["p"])
            if not (_N_MIN <= n <= _N_MAX and r == SCRYPT_R and p == SCRYPT_P):
                raise KeyFileError("unsupported scrypt parameters")
            aead = ChaCha20Poly1305(_kdf(passphrase, m["salt"], n, r, p))
            try:
                seed = aead.decrypt(m["nonce"], m["box"], m["id"])
            except InvalidTag as exc:
                raise KeyFileError("wrong passphrase (or the key file is damaged)") from exc
            key = SigningKey.from_seed(seed)
        else:
            raise KeyFileError(f"unknown key protection {m['kdf']!r}")
    except KeyFileError:
        raise
    except (KeyError, TypeError, ValueError, CryptoError) as exc:
        raise KeyFileError(f"damaged key file: {exc}") from exc
    if key.id != m.get("id"):
        raise KeyFileError("key file id does not match its key")
    return key
