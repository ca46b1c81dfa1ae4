"""Segment content ids (core/digests.py): BLAKE3 now, SHA-256 ids of older segments still verify."""

from __future__ import annotations

import hashlib

import blake3
from hypothesis import given
from hypothesis import strategies as st

from blobstore.core.digests import is_segment_content, segment_id, segment_id_of_parts


def test_the_content_id_is_blake3_256_hex() -> None:
    assert segment_id(b"abc") == \
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    assert segment_id(b"abc") == blake3.blake3(b"abc").hexdigest()


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_parts_hash_as_their_concatenation(parts: list[bytes]) -> None:
    whole = b"".join(parts)
    assert segment_id_of_parts(parts) == segment_id(whole)
    assert is_segment_content(parts, segment_id(whole))
    assert is_segment_content([memoryview(p) for p in parts], segment_id(whole))


@given(st.binary(min_size=1, max_size=500))
def test_legacy_sha256_ids_verify_and_other_bytes_do_not(data: bytes) -> None:
    assert is_segment_content([data], hashlib.sha256(data).hexdigest())
    other = data[:-1] + bytes([data[-1] ^ 1])
    assert not is_segment_content([other], segment_id(data))
    assert not is_segment_content([other], hashlib.sha256(data).hexdigest())
