"""Codec properties: any k of k+m shards rebuild the segment; corruption is detected."""

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core import ec
from blobstore.core.errors import Corrupt, Invalid, Unavailable

policies = st.builds(ec.EcPolicy, st.integers(1, 6), st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(policy=policies, data=st.binary(min_size=1, max_size=5000), drop_seed=st.randoms())
def test_any_k_shards_rebuild_the_segment(policy, data, drop_seed):
    shards = ec.encode(policy, data)
    assert len(shards) == policy.total_shards
    assert len({len(s) for s in shards}) == 1
    keep = drop_seed.sample(range(policy.total_shards), policy.data_shards)
    assert ec.decode(policy, {i: shards[i] for i in keep}, len(data)) == data


def test_every_k_subset_of_4_plus_2_decodes():
    policy = ec.EcPolicy(4, 2)
    data = os.urandom(1_000_003)
    shards = ec.encode(policy, data)
    for keep in itertools.combinations(range(6), 4):
        assert ec.decode(policy, {i: shards[i] for i in keep}, len(data)) == data


def test_systematic_data_shards_are_the_bytes_themselves():
    policy = ec.EcPolicy(4, 2)
    data = bytes(range(256)) * 64
    shards = ec.encode(policy, data)
    assert b"".join(bytes(s) for s in shards[:4]) == data


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), where=st.integers(0, 10**9), bit=st.integers(0, 7),
       which=st.integers(0, 5))
def test_a_flipped_bit_in_any_shard_is_detected(data, where, bit, which):
    policy = ec.EcPolicy(4, 2)
    shards = [bytes(s) for s in ec.encode(policy, data)]
    sums = [ec.shard_checksum(s) for s in shards]
    damaged = bytearray(shards[which])
    damaged[where % len(damaged)] ^= 1 << bit
    with pytest.raises(Corrupt):
        ec.verify_shard(damaged, sums[which])
    for i, s in enumerate(shards):
        ec.verify_shard(s, sums[i])


def test_too_few_shards_is_unavailable_not_wrong_bytes():
    policy = ec.EcPolicy(4, 2)
    shards = ec.encode(policy, b"x" * 100)
    with pytest.raises(Unavailable):
        ec.decode(policy, {0: shards[0], 1: shards[1], 5: shards[5]}, 100)


def test_wrong_shard_size_is_refused():
    policy = ec.EcPolicy(4, 2)
    shards = ec.encode(policy, b"x" * 100)
    with pytest.raises(Invalid):
        ec.decode(policy, {0: shards[0], 1: shards[1], 2: shards[2], 3: shards[3][:-1]}, 100)


def test_policy_parse():
    assert ec.EcPolicy.parse("4+2") == ec.EcPolicy(4, 2)
    with pytest.raises(Invalid):
        ec.EcPolicy.parse("4-2")
