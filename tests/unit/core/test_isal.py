"""ISA-L computes zfec's parity byte for byte (core/isal.py), so shards decode with zfec."""

from __future__ import annotations

import os

import pytest
import zfec
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core import ec, isal

pytestmark = pytest.mark.skipif(
    not isal.available() and os.environ.get("CI") != "true",
    reason="libisal is not installed (CI installs libisal2)")


def _zfec_parity(data_shards: int, total_shards: int, block: bytes, size: int) -> list[bytes]:
    blocks = [block[i * size:(i + 1) * size] for i in range(data_shards)]
    return zfec.Encoder(data_shards, total_shards).encode(
        blocks, list(range(data_shards, total_shards)))


def test_ci_has_isal() -> None:
    # CI installs libisal2: without it the fast path would silently go untested.
    assert isal.available()


def test_known_matrix_for_4_plus_2() -> None:
    assert list(isal.zfec_parity_matrix(4, 6)) == [119, 64, 56, 14, 199, 167, 13, 108]


@settings(max_examples=60, deadline=None)
@given(data_shards=st.integers(1, 12), parity_shards=st.integers(1, 6),
       size=st.integers(1, 3000), seed=st.binary(min_size=1, max_size=64))
def test_isal_parity_equals_zfec(data_shards: int, parity_shards: int, size: int,
                                 seed: bytes) -> None:
    total = data_shards + parity_shards
    block = (seed * (data_shards * size // len(seed) + 1))[: data_shards * size]
    expected = _zfec_parity(data_shards, total, block, size)
    as_bytes = [block[i * size:(i + 1) * size] for i in range(data_shards)]
    as_views = [memoryview(block)[i * size:(i + 1) * size] for i in range(data_shards)]
    as_bytearrays = [bytearray(b) for b in as_bytes]
    for blocks in (as_bytes, as_views, as_bytearrays):
        assert [bytes(p) for p in isal.encode_parity(data_shards, total, blocks, size)
                ] == expected


def test_large_segment_parity_equals_zfec_and_decodes() -> None:
    policy = ec.EcPolicy(4, 2)
    segment = os.urandom(4 * 1024 * 1024 - 3)  # padded: the last data shard is short
    shards = ec.encode(policy, segment)
    size = policy.shard_size(len(segment))
    padded = segment + bytes(4 * size - len(segment))
    assert [bytes(p) for p in shards[4:]] == _zfec_parity(4, 6, padded, size)
    # Lose two data shards: zfec rebuilds the segment from ISA-L's parity.
    assert ec.decode(policy, {1: shards[1], 3: shards[3], 4: shards[4], 5: shards[5]},
                     len(segment)) == segment


def test_wrong_block_count_or_length_is_refused() -> None:
    with pytest.raises(ValueError):
        isal.encode_parity(4, 6, [b"xxx"] * 3, 3)
    with pytest.raises(ValueError):
        isal.encode_parity(4, 6, [b"xxx", b"xxx", b"xxx", b"xx"], 3)


def test_without_isal_zfec_gives_the_same_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = ec.EcPolicy(4, 2)
    segment = os.urandom(100_003)
    with_isal = [bytes(s) for s in ec.encode(policy, segment)]
    monkeypatch.setattr(isal, "available", lambda: False)
    assert [bytes(s) for s in ec.encode(policy, segment)] == with_isal
