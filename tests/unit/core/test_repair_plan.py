"""Repair planning (where to read, where to write, verdicts) and shard rebuilding, pure."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core import ec, ec_rebuild
from blobstore.core.digests import segment_id
from blobstore.core.placement import Candidate
from blobstore.core.records import Segment
from blobstore.core.repair_plan import (
    Health,
    durability,
    plan_targets,
    segment_health,
    shards_to_rebuild,
    source_order,
)

SEG = "ab" * 32


def segment(placement: list[str | None], data_shards: int = 4) -> Segment:
    total = len(placement)
    return Segment(id=SEG, length=100, data_shards=data_shards,
                   parity_shards=total - data_shards, shard_xxh3=["0" * 16] * total,
                   placement=placement)


def nodes(count: int, zones: int = 1) -> list[Candidate]:
    return [Candidate(f"n{i}", f"z{i % zones}") for i in range(count)]


def test_rebuild_set_is_the_task_plus_the_holes():
    seg = segment(["n0", None, "n2", "n3", None, "n5"])
    assert shards_to_rebuild(seg, [3, 9]) == [1, 3, 4]


def test_sources_are_placed_readable_shards_data_first():
    seg = segment(["n0", None, "n2", "n3", "n4", "n5"])
    assert source_order(seg, [3], {"n0", "n2", "n4", "n5"}) == [0, 2, 4, 5]


def test_a_shard_on_a_live_node_goes_back_there_and_the_others_to_new_nodes():
    seg = segment(["n0", None, "n2", "n3", "n4", "dead"])
    plan = plan_targets(seg, [1, 3, 5], nodes(9), up={f"n{i}" for i in range(9)})
    assert plan.targets[3] == "n3"
    moved = {plan.targets[1], plan.targets[5]}
    assert len(moved) == 2 and not moved & {"n0", "n2", "n3", "n4"}
    assert set(plan.spares) == {"n1", "n5", "n6", "n7", "n8"} - moved
    final = [plan.targets.get(i, node) for i, node in enumerate(seg.placement)]
    assert len(set(final)) == len(final)


def test_too_few_nodes_leave_a_shard_without_a_target():
    seg = segment(["n0", "n1", "n2", "n3", "n4", None])
    plan = plan_targets(seg, [5], nodes(6), up={"n0", "n1", "n2", "n3", "n4"})
    assert plan.targets == {} and plan.spares == []


def test_new_shards_go_to_the_least_loaded_zone():
    candidates = nodes(12, zones=3)  # z0: n0 n3 n6 n9, z1: n1 n4 n7 n10, z2: n2 n5 n8 n11
    seg = segment(["n0", "n3", "n1", "n4", "n2", None])  # z0: 2, z1: 2, z2: 1
    plan = plan_targets(seg, [5], candidates, up={c.node_id for c in candidates})
    assert plan.targets[5] in {"n5", "n8", "n11"}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 3))
def test_plans_never_put_two_shards_on_one_node(seed, zones):
    rng = random.Random(seed)
    candidates = nodes(rng.randrange(4, 12), zones=zones + 1)
    ids = [c.node_id for c in candidates]
    placement: list[str | None] = list(rng.sample(ids, min(6, len(ids))))
    placement += [None] * (6 - len(placement))
    for i in rng.sample(range(6), rng.randrange(0, 3)):
        placement[i] = None
    up = set(rng.sample(ids, rng.randrange(len(ids) + 1)))
    seg = segment(placement)
    rebuild = shards_to_rebuild(seg, rng.sample(range(6), rng.randrange(0, 3)))
    plan = plan_targets(seg, rebuild, candidates, up)
    assert set(plan.targets) <= set(rebuild)
    assert all(node in up for node in plan.targets.values())
    final = [plan.targets.get(i, node) for i, node in enumerate(placement)]
    placed = [node for node in final if node is not None]
    assert len(set(placed)) == len(placed)
    assert not set(plan.spares) & set(placed)


def test_verdicts():
    assert segment_health(6, 4, 6) == Health.HEALTHY
    assert segment_health(4, 4, 6) == Health.DEGRADED
    assert segment_health(3, 4, 6) == Health.LOST
    assert "any 2" in durability(None, 4, 2)
    assert "1 more" in durability(5, 4, 2)
    assert "LOST" in durability(3, 4, 2, lost=1)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(0, 4), st.integers(1, 5000), st.integers(0, 10**6))
def test_rebuilt_shards_are_the_original_ones(data_shards, parity_shards, length, seed):
    rng = random.Random(seed)
    policy = ec.EcPolicy(data_shards, parity_shards)
    data = rng.randbytes(length)
    shards = [bytes(s) for s in ec.encode(policy, data)]
    have = sorted(rng.sample(range(policy.total_shards), data_shards))
    blocks = ec_rebuild.primary_blocks(policy, {i: shards[i] for i in have}, length)
    assert ec_rebuild.holds_segment(blocks, length, segment_id(data))
    # Segments written before content ids were BLAKE3 carry SHA-256 ids: still verified.
    assert ec_rebuild.holds_segment(blocks, length, hashlib.sha256(data).hexdigest())
    assert not ec_rebuild.holds_segment(blocks, length, segment_id(data + b"x"))
    wanted = rng.sample(range(policy.total_shards), rng.randrange(policy.total_shards + 1))
    rebuilt = ec_rebuild.encode_shards(policy, blocks, wanted)
    assert {i: bytes(s) for i, s in rebuilt.items()} == {i: shards[i] for i in wanted}
