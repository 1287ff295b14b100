"""The blob directory alone: per-uploader partial files, finish (fsync, hash, rename)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from estafet.relay.blobs import BlobDir
from estafet.relay.errors import StoreError

PHOTO = bytes(range(256)) * 400
SHA = hashlib.sha256(PHOTO).digest()
A, B = "aa" * 16, "bb" * 16


def test_two_uploaders_of_one_photo_finish_in_either_order(tmp_path: Path) -> None:
    """Sessions run concurrently: two peers may upload the same photo at once. The first to
    finish removes the other's partial file; the second's finish found no file and answered
    500 (seen in the kill -9 and outbox tests once sessions ran concurrently)."""
    blobs = BlobDir(tmp_path)
    for owner in (A, B):
        assert blobs.append(SHA, 0, PHOTO, len(PHOTO), owner) == len(PHOTO)
    first = blobs.finish(SHA, len(PHOTO), A)
    assert first.read_bytes() == PHOTO
    assert not blobs.partial_path(SHA, B).exists()  # the other's partial went with it
    assert blobs.finish(SHA, len(PHOTO), B) == first  # done already: not an error
    assert first.read_bytes() == PHOTO


def test_a_finish_with_no_partial_and_no_blob_is_still_refused(tmp_path: Path) -> None:
    blobs = BlobDir(tmp_path)
    with pytest.raises((OSError, StoreError)):
        blobs.finish(SHA, len(PHOTO), A)
    assert not blobs.has(SHA)
