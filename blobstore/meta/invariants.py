"""Whole-state invariant checks of the metadata state machine (for tests and the simulator).

``check(env, dbs)`` re-derives every redundant structure from the primary records and
returns the list of violations (empty when the state is sound):

1. every object's bucket exists and every SegmentRef names a stored segment;
2. a segment's refcount equals the number of refs to it over all objects (twice if twice);
3. ``gc`` holds exactly the segments with refcount 0;
4. ``degraded`` holds exactly the segments with a None in their placement;
5. ``repair_index`` and ``repair_queue`` describe the same tasks, each queued under its
   healthy count (total shards - missing), and a degraded segment's None indexes are among
   its task's missing shards;
6. segment records have ``total_shards`` checksums and placements;
7. a client session's count is its number of stored outcomes, all at or above its floor.

Cost is a full scan: call it from tests, never on the serving path.
"""

from __future__ import annotations

import lmdb

from blobstore.core.records import ObjectVersion, Part, RepairTask, Segment
from blobstore.meta import schema
from blobstore.meta.schema import Dbs, SessionHead


def check(env: lmdb.Environment, dbs: Dbs) -> list[str]:
    with env.begin() as txn:
        segments = {schema.segment_id_of(key): schema.decode(Segment, value)
                    for key, value in txn.cursor(dbs.segments).iternext()}
        problems = _check_objects(txn, dbs, segments)
        problems += _check_segment_sets(txn, dbs, segments)
        problems += _check_repair_queue(txn, dbs, segments)
        problems += _check_sessions(txn, dbs)
    return problems


def _keys(txn: lmdb.Transaction, db: lmdb._Database) -> set[str]:
    return {schema.segment_id_of(key) for key in txn.cursor(db).iternext(values=False)}


def _check_objects(txn: lmdb.Transaction, dbs: Dbs, segments: dict[str, Segment]) -> list[str]:
    problems = []
    refs: dict[str, int] = {}
    for key, value in txn.cursor(dbs.objects).iternext():
        version = schema.decode(ObjectVersion, value)
        if key != schema.object_key(version.bucket, version.key):
            problems.append(f"object {version.key!r} stored under the wrong key")
        if txn.get(schema.bucket_key(version.bucket), db=dbs.buckets) is None:
            problems.append(f"object {version.key!r} in missing bucket {version.bucket!r}")
        for ref in version.segments:
            refs[ref.id] = refs.get(ref.id, 0) + 1
            if ref.id not in segments:
                problems.append(f"object {version.key!r} refers to unknown segment {ref.id}")
    for _, value in txn.cursor(dbs.parts).iternext():  # parts of uploads hold references too
        for ref in schema.decode(Part, value).segments:
            refs[ref.id] = refs.get(ref.id, 0) + 1
            if ref.id not in segments:
                problems.append(f"an upload part refers to unknown segment {ref.id}")
    for segment_id, segment in sorted(segments.items()):
        if segment.refcount != refs.get(segment_id, 0):
            problems.append(f"segment {segment_id} refcount {segment.refcount} "
                            f"!= {refs.get(segment_id, 0)} refs")
    return problems


def _check_segment_sets(txn: lmdb.Transaction, dbs: Dbs,
                        segments: dict[str, Segment]) -> list[str]:
    problems = []
    for segment_id, segment in sorted(segments.items()):
        total = segment.total_shards
        if len(segment.shard_xxh3) != total or len(segment.placement) != total:
            problems.append(f"segment {segment_id} has a malformed record")
    zero = {sid for sid, segment in segments.items() if segment.refcount == 0}
    if _keys(txn, dbs.gc) != zero:
        problems.append(f"gc {sorted(_keys(txn, dbs.gc))} != refcount-0 {sorted(zero)}")
    degraded = {sid for sid, segment in segments.items() if None in segment.placement}
    if _keys(txn, dbs.degraded) != degraded:
        problems.append(f"degraded {sorted(_keys(txn, dbs.degraded))} != {sorted(degraded)}")
    return problems


def _check_repair_queue(txn: lmdb.Transaction, dbs: Dbs,
                        segments: dict[str, Segment]) -> list[str]:
    problems = []
    indexed = {schema.segment_id_of(key): schema.read_u16(value)
               for key, value in txn.cursor(dbs.repair_index).iternext()}
    queued: dict[str, int] = {}
    for key, value in txn.cursor(dbs.repair_queue).iternext():
        task = schema.decode(RepairTask, value)
        healthy = schema.healthy_of_repair_key(key)
        queued[task.segment_id] = healthy
        segment = segments.get(task.segment_id)
        if segment is None:
            problems.append(f"repair task for unknown segment {task.segment_id}")
            continue
        if healthy != segment.total_shards - len(task.missing):
            problems.append(f"repair task {task.segment_id} queued under {healthy}")
        missing_now = {i for i, node in enumerate(segment.placement) if node is None}
        if not missing_now <= set(task.missing):
            problems.append(f"repair task {task.segment_id} misses placement holes")
    if indexed != queued:
        problems.append("repair_index and repair_queue disagree")
    for segment_id in sorted(_keys(txn, dbs.degraded)):
        if segment_id not in queued:
            problems.append(f"degraded segment {segment_id} is not queued for repair")
    return problems


def _check_sessions(txn: lmdb.Transaction, dbs: Dbs) -> list[str]:
    problems = []
    counted: dict[str, list[int]] = {}
    for key in txn.cursor(dbs.sessions).iternext(values=False):
        client_id, sequence = key[:-9], key[-8:]  # client id, NUL, u64 sequence
        counted.setdefault(client_id.decode(), []).append(schema.read_u64(sequence))
    for key, value in txn.cursor(dbs.session_heads).iternext():
        head = schema.decode(SessionHead, value)
        stored = counted.pop(key.decode(), [])
        if head.count != len(stored) or any(s < head.floor for s in stored):
            problems.append(f"session {key.decode()!r} head {head} vs outcomes {stored}")
    if counted:
        problems.append(f"outcomes without a session head: {sorted(counted)}")
    return problems
