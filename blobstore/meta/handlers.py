"""What each command does to the metadata: one handler per command, over a write txn.

Handlers are deterministic functions of (state, command): no clock, no randomness, no
iteration over unordered sets. They return the command's value (a JSON-able dict) or raise a
typed ``BlobstoreError``; the state machine runs each in a nested transaction, so a handler
that raises leaves no trace except its recorded failure.

Rules:

- create_bucket: Invalid for a name that cannot be a key; BucketAlreadyExists if it exists.
- delete_bucket: NoSuchBucket; BucketNotEmpty while any object remains.
- put_object: NoSuchBucket; Invalid for a bad key, segment layout or segment record. New
  segments are inserted with refcount 0 (a known segment with refcount > 0 is kept as it is:
  dedup; one with refcount 0 is replaced, since the garbage collector may be deleting its
  shards). Then every SegmentRef of the version adds 1 to its segment (a segment named twice
  counts twice) and every ref of the replaced version subtracts 1. A ref to a segment that is
  neither known nor new fails the whole command with Invalid. A new segment with a None in
  its placement is marked degraded and queued for repair.
- delete_object: NoSuchBucket; a missing key succeeds with ``deleted: False`` (S3).
- report_bad_shard: queues the shard for repair if the segment exists and its placement
  still names that node at that index; a stale or unknown report changes nothing.
- put_user: creates or replaces the user.

Invariants kept (checked by ``meta/invariants.py``): a segment's refcount is the number of
refs to it over all objects; ``gc`` lists exactly the segments with refcount 0; ``degraded``
lists exactly the segments with a None in their placement; each queued repair task's
position in ``repair_queue`` is its healthy shard count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lmdb
import msgspec

from blobstore.core.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Corrupt,
    Invalid,
    NoSuchBucket,
)
from blobstore.core.ids import validate_node_id, validate_segment_id
from blobstore.core.records import MAX_INLINE_BYTES, Bucket, ObjectVersion, RepairTask, Segment
from blobstore.meta import schema
from blobstore.meta.commands import (
    Command,
    CreateBucket,
    DeleteBucket,
    DeleteObject,
    PutObject,
    PutUser,
    ReportBadShard,
)
from blobstore.meta.schema import Dbs, User

MAX_TOTAL_SHARDS = 64
Value = dict[str, Any]


def handle(txn: lmdb.Transaction, dbs: Dbs, command: Command) -> Value:
    """Apply one command to the state in ``txn``; its value, or a typed error."""
    handler: Callable[[lmdb.Transaction, Dbs, Any], Value] = _HANDLERS[type(command)]
    return handler(txn, dbs, command)


def require_bucket(txn: lmdb.Transaction, dbs: Dbs, name: str) -> Bucket:
    data = txn.get(schema.bucket_key(name), db=dbs.buckets) if name else None
    if data is None:
        raise NoSuchBucket(f"bucket {name!r} does not exist")
    return schema.decode(Bucket, data)


def _create_bucket(txn: lmdb.Transaction, dbs: Dbs, command: CreateBucket) -> Value:
    schema.check_bucket_name(command.name)
    key = schema.bucket_key(command.name)
    if txn.get(key, db=dbs.buckets) is not None:
        raise BucketAlreadyExists(f"bucket {command.name!r} already exists")
    bucket = Bucket(name=command.name, created_ns=command.created_ns)
    txn.put(key, schema.encode(bucket), db=dbs.buckets)
    return msgspec.to_builtins(bucket)  # type: ignore[no-any-return]


def _delete_bucket(txn: lmdb.Transaction, dbs: Dbs, command: DeleteBucket) -> Value:
    require_bucket(txn, dbs, command.name)
    head = schema.object_head(command.name)
    cursor = txn.cursor(dbs.objects)
    if cursor.set_range(head) and cursor.key().startswith(head):
        raise BucketNotEmpty(f"bucket {command.name!r} is not empty")
    txn.delete(schema.bucket_key(command.name), db=dbs.buckets)
    return {}


def _put_object(txn: lmdb.Transaction, dbs: Dbs, command: PutObject) -> Value:
    version = command.version
    require_bucket(txn, dbs, version.bucket)
    schema.check_object_key(version.key)
    _check_layout(version)
    for segment in command.new_segments:
        _check_segment(segment)
    new_ids = {segment.id for segment in command.new_segments}
    for ref in version.segments:
        if ref.id not in new_ids and txn.get(schema.segment_key(ref.id), db=dbs.segments) is None:
            raise Invalid(f"segment {ref.id} is neither stored nor among the new segments")
    for segment in command.new_segments:
        _insert_segment(txn, dbs, segment)
    key = schema.object_key(version.bucket, version.key)
    old_data = txn.get(key, db=dbs.objects)
    old = schema.decode(ObjectVersion, old_data) if old_data is not None else None
    delta: dict[str, int] = {}
    for ref in version.segments:
        delta[ref.id] = delta.get(ref.id, 0) + 1
    for ref in old.segments if old is not None else []:
        delta[ref.id] = delta.get(ref.id, 0) - 1
    _adjust_refcounts(txn, dbs, delta)
    txn.put(key, schema.encode(version), db=dbs.objects)
    return {"version_id": version.version_id,
            "replaced_version_id": old.version_id if old is not None else None}


def _delete_object(txn: lmdb.Transaction, dbs: Dbs, command: DeleteObject) -> Value:
    require_bucket(txn, dbs, command.bucket)
    schema.check_object_key(command.key)
    key = schema.object_key(command.bucket, command.key)
    old_data = txn.get(key, db=dbs.objects)
    if old_data is None:
        return {"deleted": False, "version_id": None}
    old = schema.decode(ObjectVersion, old_data)
    delta: dict[str, int] = {}
    for ref in old.segments:
        delta[ref.id] = delta.get(ref.id, 0) - 1
    _adjust_refcounts(txn, dbs, delta)
    txn.delete(key, db=dbs.objects)
    return {"deleted": True, "version_id": old.version_id}


def _report_bad_shard(txn: lmdb.Transaction, dbs: Dbs, command: ReportBadShard) -> Value:
    validate_segment_id(command.segment_id)
    data = txn.get(schema.segment_key(command.segment_id), db=dbs.segments)
    if data is None:
        return {"queued": False}
    segment = schema.decode(Segment, data)
    if not 0 <= command.index < segment.total_shards:
        raise Invalid(f"shard index {command.index} out of range for {command.segment_id}")
    if segment.placement[command.index] != command.node_id:
        return {"queued": False}  # stale: the shard has moved or is already missing
    reason = command.reason or f"bad shard reported by {command.node_id}"
    queue_repair(txn, dbs, segment, [command.index], reason)
    return {"queued": True}


def _put_user(txn: lmdb.Transaction, dbs: Dbs, command: PutUser) -> Value:
    if not schema.is_valid_access_key(command.access_key):
        raise Invalid(f"invalid access key {command.access_key!r}")
    if not command.secret_key:
        raise Invalid("empty secret key")
    user = User(access_key=command.access_key, secret_key=command.secret_key, name=command.name)
    txn.put(command.access_key.encode(), schema.encode(user), db=dbs.users)
    return {"access_key": command.access_key}


_HANDLERS: dict[type, Callable[[lmdb.Transaction, Dbs, Any], Value]] = {
    CreateBucket: _create_bucket,
    DeleteBucket: _delete_bucket,
    PutObject: _put_object,
    DeleteObject: _delete_object,
    ReportBadShard: _report_bad_shard,
    PutUser: _put_user,
}



# ---- segments, refcounts and the repair queue --------------------------------------------


def _check_layout(version: ObjectVersion) -> None:
    """Refs cover [0, size) in order without gaps, or the bytes are inline (records.py)."""
    if version.inline is not None:
        if version.segments or len(version.inline) != version.size:
            raise Invalid("an inline object has no segments and exactly its size in bytes")
        if version.size > MAX_INLINE_BYTES:
            raise Invalid(f"an inline object is at most {MAX_INLINE_BYTES} bytes")
        return
    offset = 0
    for ref in version.segments:
        validate_segment_id(ref.id)
        if ref.offset != offset or ref.length <= 0:
            raise Invalid(f"segment ref {ref.id} at offset {ref.offset} length {ref.length} "
                          f"does not continue the object at {offset}")
        offset += ref.length
    if offset != version.size:
        raise Invalid(f"segments cover {offset} bytes of a {version.size}-byte object")


def _check_segment(segment: Segment) -> None:
    validate_segment_id(segment.id)
    total = segment.total_shards
    if segment.data_shards < 1 or segment.parity_shards < 0 or total > MAX_TOTAL_SHARDS:
        raise Invalid(f"segment {segment.id}: bad shard counts")
    if len(segment.shard_xxh3) != total or len(segment.placement) != total:
        raise Invalid(f"segment {segment.id}: need {total} checksums and placements")
    if segment.length < 0:
        raise Invalid(f"segment {segment.id}: negative length")
    nodes = [node for node in segment.placement if node is not None]
    for node in nodes:
        validate_node_id(node)
    if len(set(nodes)) != len(nodes):
        raise Invalid(f"segment {segment.id}: a node holds two shards")


def _insert_segment(txn: lmdb.Transaction, dbs: Dbs, segment: Segment) -> None:
    key = schema.segment_key(segment.id)
    existing = txn.get(key, db=dbs.segments)
    if existing is not None and schema.decode(Segment, existing).refcount > 0:
        return  # dedup: the stored segment stays as it is
    if existing is not None:
        _forget_health(txn, dbs, segment.id)
    record = msgspec.structs.replace(segment, refcount=0)
    txn.put(key, schema.encode(record), db=dbs.segments)
    txn.put(key, b"", db=dbs.gc)
    missing = [index for index, node in enumerate(record.placement) if node is None]
    if missing:
        txn.put(key, b"", db=dbs.degraded)
        queue_repair(txn, dbs, record, missing, "written with missing shards")


def _adjust_refcounts(txn: lmdb.Transaction, dbs: Dbs, delta: dict[str, int]) -> None:
    for segment_id in sorted(delta):
        change = delta[segment_id]
        if change == 0:
            continue
        key = schema.segment_key(segment_id)
        data = txn.get(key, db=dbs.segments)
        if data is None:
            raise Corrupt(f"an object refers to segment {segment_id}, which has no record")
        segment = schema.decode(Segment, data)
        refcount = segment.refcount + change
        if refcount < 0:
            raise Corrupt(f"refcount of segment {segment_id} would become {refcount}")
        txn.put(key, schema.encode(msgspec.structs.replace(segment, refcount=refcount)),
                db=dbs.segments)
        if refcount == 0:
            txn.put(key, b"", db=dbs.gc)
        else:
            txn.delete(key, db=dbs.gc)


def queue_repair(txn: lmdb.Transaction, dbs: Dbs, segment: Segment, missing: list[int],
                 reason: str) -> None:
    """Queue (or re-prioritise) the segment's repair with these shards missing."""
    segment_key = schema.segment_key(segment.id)
    merged = set(missing) | {i for i, node in enumerate(segment.placement) if node is None}
    old_healthy = txn.get(segment_key, db=dbs.repair_index)
    if old_healthy is not None:
        old_key = schema.repair_queue_key(schema.read_u16(old_healthy), segment.id)
        old_task = schema.decode(RepairTask, txn.get(old_key, db=dbs.repair_queue))
        merged |= set(old_task.missing)
        txn.delete(old_key, db=dbs.repair_queue)
    healthy = segment.total_shards - len(merged)
    task = RepairTask(segment_id=segment.id, missing=sorted(merged), reason=reason)
    txn.put(schema.repair_queue_key(healthy, segment.id), schema.encode(task),
            db=dbs.repair_queue)
    txn.put(segment_key, schema.u16(healthy), db=dbs.repair_index)


def _forget_health(txn: lmdb.Transaction, dbs: Dbs, segment_id: str) -> None:
    segment_key = schema.segment_key(segment_id)
    old_healthy = txn.get(segment_key, db=dbs.repair_index)
    if old_healthy is not None:
        old_key = schema.repair_queue_key(schema.read_u16(old_healthy), segment_id)
        txn.delete(old_key, db=dbs.repair_queue)
        txn.delete(segment_key, db=dbs.repair_index)
    txn.delete(segment_key, db=dbs.degraded)


# Multipart uploads build on the helpers above, so their module is imported last, and
# looked up at call time (either module may be imported first).
from blobstore.meta import multipart  # noqa: E402
from blobstore.meta.commands import (  # noqa: E402
    AbortUpload,
    CompleteUpload,
    CreateUpload,
    PutPart,
)

_HANDLERS.update({
    CreateUpload: lambda txn, dbs, command: multipart.create_upload(txn, dbs, command),
    PutPart: lambda txn, dbs, command: multipart.put_part(txn, dbs, command),
    CompleteUpload: lambda txn, dbs, command: multipart.complete_upload(txn, dbs, command),
    AbortUpload: lambda txn, dbs, command: multipart.abort_upload(txn, dbs, command),
})
