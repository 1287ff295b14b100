"""Passphrase-encrypted key files: round trips, and every kind of wrong input is a KeyFileError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estafet.crypto.errors import CryptoError, KeyFileError
from estafet.crypto.keyfile import (
    FORMAT,
    SCRYPT_N,
    decrypt_key,
    encrypt_key,
    is_encrypted,
    plain_key,
)
from estafet.protocol import codec
from tests.kit import seeded_key
from tests.vectors.make_vectors import HERE, build_keyfile

FAST = 2**10  # scrypt cost for tests; real files use SCRYPT_N
KEY = seeded_key("kpps-chair 6302142001001")
PASS = "kotak suara 2024"
SEALED = encrypt_key(KEY, PASS, n=FAST)


def fields(data: bytes) -> dict[str, Any]:
    m: dict[str, Any] = codec.decode(data)
    return m


def test_round_trip() -> None:
    opened = decrypt_key(SEALED, PASS)
    assert opened.id == KEY.id
    assert opened.seed() == KEY.seed()
    assert opened.sign(b"m") == KEY.sign(b"m")
    assert is_encrypted(SEALED)


def test_round_trip_with_the_default_cost() -> None:
    data = encrypt_key(KEY, "a long passphrase", salt=bytes(16), nonce=bytes(12))
    assert fields(data)["n"] == SCRYPT_N == 2**15
    assert decrypt_key(data, "a long passphrase").id == KEY.id


def test_file_layout() -> None:
    m = fields(SEALED)
    assert set(m) == {"format", "kdf", "n", "r", "p", "salt", "nonce", "box", "id"}
    assert (m["format"], m["kdf"], m["n"], m["id"]) == (FORMAT, "scrypt", FAST, KEY.id)
    assert len(m["salt"]) == 16 and len(m["nonce"]) == 12
    assert len(m["box"]) == 32 + 16  # the seed and the Poly1305 tag
    assert KEY.seed() not in SEALED


def test_salt_and_nonce_are_fresh_each_time() -> None:
    again = encrypt_key(KEY, PASS, n=FAST)
    assert again != SEALED
    assert fields(again)["salt"] != fields(SEALED)["salt"]
    assert decrypt_key(again, PASS).id == KEY.id


def test_vector_file() -> None:
    v = build_keyfile()
    assert v == json.loads((HERE / "keyfile.json").read_text(encoding="utf-8"))
    assert decrypt_key(bytes.fromhex(v["keyfile_hex"]), v["passphrase"]).id.hex() == v["key_id_hex"]


@pytest.mark.parametrize("wrong", ["kotak suara 2025", "", "KOTAK SUARA 2024", PASS + " "])
def test_wrong_passphrase(wrong: str) -> None:
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        decrypt_key(SEALED, wrong)


def test_missing_passphrase() -> None:
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        decrypt_key(SEALED, None)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        encrypt_key(KEY, "", n=FAST)


@pytest.mark.parametrize("n", [2**9, 1000, 3 * 2**10, 2**21])
def test_unsupported_cost_is_refused_when_writing(n: int) -> None:
    with pytest.raises(KeyFileError, match="scrypt n"):
        encrypt_key(KEY, PASS, n=n)


def test_unencrypted_variant_is_explicit() -> None:
    data = plain_key(KEY)
    assert fields(data) == {"format": FORMAT, "kdf": "none", "seed": KEY.seed(), "id": KEY.id}
    assert not is_encrypted(data)
    assert decrypt_key(data, None).id == KEY.id
    assert decrypt_key(data, "ignored").id == KEY.id


def test_every_damaged_byte_is_a_key_file_error() -> None:
    """Exhaustive: no single damaged byte opens, or raises anything but KeyFileError."""
    for i in range(len(SEALED)):
        for flip in (0x01, 0x80):
            data = bytearray(SEALED)
            data[i] ^= flip
            with pytest.raises(KeyFileError):
                decrypt_key(bytes(data), PASS)


def edit(base: bytes, **changes: Any) -> bytes:
    m = fields(base)
    for k, v in changes.items():
        if v is KeyError:
            del m[k]
        else:
            m[k] = v
    return codec.encode(m)


DAMAGED: dict[str, bytes] = {
    "empty": b"",
    "not msgpack": b"\xc1\xc1",
    "truncated": SEALED[:-1],
    "not a map": codec.encode([1, 2]),
    "wrong format": edit(SEALED, format="estafet-key-v0"),
    "no format": edit(SEALED, format=KeyError),
    "unknown kdf": edit(SEALED, kdf="argon2"),
    "no kdf": edit(SEALED, kdf=KeyError),
    "no salt": edit(SEALED, salt=KeyError),
    "salt as text": edit(SEALED, salt="00" * 16),
    "other salt": edit(SEALED, salt=bytes(16)),
    "short nonce": edit(SEALED, nonce=bytes(11)),
    "other nonce": edit(SEALED, nonce=bytes(12)),
    "box cut": edit(SEALED, box=fields(SEALED)["box"][:-1]),
    "other id": edit(SEALED, id=bytes(16)),
    "no id": edit(SEALED, id=KeyError),
    "n too small": edit(SEALED, n=2**9),
    "n too large": edit(SEALED, n=2**21),
    "n not a power of two": edit(SEALED, n=1025),
    "n as text": edit(SEALED, n="big"),
    "r changed": edit(SEALED, r=16),
    "p changed": edit(SEALED, p=2),
    "plain seed 31 bytes": edit(plain_key(KEY), seed=bytes(31)),
    "plain seed as text": edit(plain_key(KEY), seed="x" * 32),
    "plain no seed": edit(plain_key(KEY), seed=KeyError),
    "plain other id": edit(plain_key(KEY), id=seeded_key("other").id),
}


@pytest.mark.parametrize("data", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_files(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        decrypt_key(data, PASS)


def test_is_encrypted_refuses_garbage() -> None:
    with pytest.raises(KeyFileError):
        is_encrypted(b"\xc1")
    assert not is_encrypted(codec.encode([1]))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_key_file_errors(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        decrypt_key(data, PASS)


def test_key_file_error_is_a_crypto_error() -> None:
    assert issubclass(KeyFileError, CryptoError)
