"""Object bodies: every 64 KiB block differs between objects; digests match the bytes."""

from __future__ import annotations

import random

import pytest

from blobstore.bench.objects import ObjectRef, ObjectSet
from blobstore.bench.payload import (
    STAMP_INTERVAL_BYTES,
    TAG_BYTES,
    PayloadSource,
    WorkerPayload,
    content_digest,
    make_tag,
)
from blobstore.bench.units import KIB, MIB

SEED = 20240601


def _blocks_after(payload: WorkerPayload, tag: bytes) -> list[bytes]:
    payload.stamp(tag)
    return payload.blocks()


@pytest.mark.parametrize("size_bytes", [4 * KIB, STAMP_INTERVAL_BYTES, MIB, MIB + 123, 4 * MIB])
def test_no_block_of_one_object_equals_a_block_of_another(size_bytes):
    source = PayloadSource(size_bytes, random.Random(SEED))
    worker_a, worker_b = source.worker_payload(), source.worker_payload()  # same random base
    bodies = [
        _blocks_after(worker_a, make_tag(7, 0, 0)),
        _blocks_after(worker_a, make_tag(7, 0, 1)),  # the same buffer, re-stamped
        _blocks_after(worker_b, make_tag(7, 1, 0)),  # another worker, same base bytes
        _blocks_after(worker_b, make_tag(8, 1, 0)),  # another run
    ]
    for i, first in enumerate(bodies):
        for second in bodies[i + 1:]:
            assert not set(first) & set(second), "a 64 KiB block repeats between objects"
    for blocks in bodies:  # and no block repeats inside one object
        assert len(set(blocks)) == len(blocks)


def test_a_segment_cut_at_any_block_boundary_differs_between_objects():
    source = PayloadSource(8 * MIB, random.Random(SEED))
    worker = source.worker_payload()
    worker.stamp(make_tag(1, 0, 0))
    first = bytes(worker.view)
    worker.stamp(make_tag(1, 0, 1))
    second = bytes(worker.view)
    for offset in range(0, 8 * MIB, STAMP_INTERVAL_BYTES):
        assert first[offset:offset + 4 * MIB] != second[offset:offset + 4 * MIB]


def test_stamp_returns_the_xxh3_of_the_stamped_body_and_changes_only_tags():
    source = PayloadSource(MIB + 5, random.Random(SEED))
    worker = source.worker_payload()
    before = bytes(worker.view)
    tag = make_tag(3, 4, 5)
    digest = worker.stamp(tag)
    after = bytes(worker.view)
    assert digest == content_digest(after)
    changed = {i for i in range(len(after)) if after[i] != before[i]}
    tag_bytes = {offset + i for offset in range(0, len(after), STAMP_INTERVAL_BYTES)
                 for i in range(TAG_BYTES) if offset + i < len(after)}
    assert changed <= tag_bytes
    assert all(after[offset:offset + TAG_BYTES] == tag
               for offset in range(0, MIB, STAMP_INTERVAL_BYTES))


def test_objects_smaller_than_a_tag_hold_its_first_bytes():
    worker = PayloadSource(5, random.Random(SEED)).worker_payload()
    tag = make_tag(9, 9, 9)
    worker.stamp(tag)
    assert bytes(worker.view) == tag[:5]
    empty = PayloadSource(0, random.Random(SEED)).worker_payload()
    assert empty.stamp(tag) == content_digest(b"")


def test_tags_are_unique_per_nonce_worker_and_sequence():
    tags = {make_tag(nonce, worker, sequence)
            for nonce in (0, 1, 2**64 - 1) for worker in range(4) for sequence in range(50)}
    assert len(tags) == 3 * 4 * 50
    assert all(len(tag) == TAG_BYTES for tag in tags)


def test_a_seed_replays_the_same_bodies():
    first = PayloadSource(64 * KIB, random.Random(SEED)).worker_payload()
    second = PayloadSource(64 * KIB, random.Random(SEED)).worker_payload()
    assert first.stamp(make_tag(1, 2, 3)) == second.stamp(make_tag(1, 2, 3))


def test_object_set_pick_pop_and_sizes():
    objects = ObjectSet([ObjectRef("a", 1, 10), ObjectRef("b", 2, 20)])
    objects.add(ObjectRef("c", 1, 30))
    rng = random.Random(SEED)
    assert {objects.pick(rng).key for _ in range(100)} == {"a", "b", "c"}
    assert [ref.key for ref in objects.of_size(1)] == ["a", "c"]
    assert objects.pop().key == "c"
    assert len(objects) == 2
    assert ObjectSet().pick(rng) is None and ObjectSet().pop() is None
