"""Placement: deterministic, never repeats a node, spreads zones, moves little."""

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core.placement import Candidate, place, rank

segment_ids = st.text("0123456789abcdef", min_size=64, max_size=64)


def nodes(count, zones):
    return [Candidate(f"s{i}", f"z{i % zones}") for i in range(count)]


@settings(max_examples=200, deadline=None)
@given(seg=segment_ids, count=st.integers(1, 20), zones=st.integers(1, 5), total=st.integers(1, 12))
def test_never_repeats_a_node_and_is_deterministic(seg, count, zones, total):
    candidates = nodes(count, zones)
    chosen = place(seg, candidates, total)
    assert len(chosen) == min(total, count)
    assert len(set(chosen)) == len(chosen)
    assert chosen == place(seg, list(reversed(candidates)), total)


@settings(max_examples=200, deadline=None)
@given(seg=segment_ids, per_zone=st.integers(2, 5), zones=st.integers(2, 4))
def test_spreads_zones_evenly(seg, per_zone, zones):
    candidates = nodes(per_zone * zones, zones)
    total = min(6, per_zone * zones)
    chosen = place(seg, candidates, total)
    zone_of = {c.node_id: c.zone for c in candidates}
    counts = collections.Counter(zone_of[n] for n in chosen)
    assert max(counts.values()) <= -(-total // zones)


def test_removing_a_node_moves_only_its_shards():
    candidates = nodes(8, 1)
    moved = 0
    for i in range(300):
        seg = f"{i:064x}"
        before = place(seg, candidates, 6)
        after = place(seg, [c for c in candidates if c.node_id != "s3"], 6)
        if "s3" not in before:
            assert before == after
        else:
            moved += 1
            assert set(before) - {"s3"} <= set(after)
    assert 0 < moved < 300


def test_load_is_roughly_even():
    candidates = nodes(8, 2)
    counts = collections.Counter()
    for i in range(2000):
        counts.update(place(f"{i:064x}", candidates, 6))
    expected = 2000 * 6 / 8
    assert all(abs(c - expected) < expected * 0.1 for c in counts.values()), counts


def test_spares_follow_the_placement():
    candidates = nodes(8, 2)
    ranking = rank("ab" * 32, candidates)
    assert len(ranking) == 8 and len({c.node_id for c in ranking}) == 8
