"""Self-healing commands of the metadata state machine: node loss, repair leases, GC.

Like ``meta/handlers.py``, these are deterministic functions of (state, command): every
time value (``now_ns``) and every duration (``lease_s``, ``grace_s``) travels INSIDE the
command, set by its proposer, so every replica applies the same bytes to the same result.
``handle`` is the state machine's one entry point: it runs the commands below and the
storage membership ones (``meta/membership.py``), checks ``put_object`` against segments
being collected, and passes everything else on to ``handlers.handle``.

Commands and their rules:

- ``mark_node_down{node_id, now_ns, after, limit}``: examines up to ``limit`` segments
  after ``after`` (segment-id order; the proposer loops with ``next`` until it is None). In
  every segment with refcount > 0 whose placement names the node, that entry becomes None:
  the segment is degraded and its repair queued with that index missing (the existing
  invariant "None in placement <=> degraded <=> queued" covers node loss with no new
  state). Garbage (refcount 0) is left alone: the collector deletes what it can and the
  node's inventory, if it ever returns, the rest. Idempotent.
- ``lease_repair{node_id, now_ns, lease_s, max_tasks}``: up to ``max_tasks`` queued tasks,
  most endangered first (queue order), that are not under a live lease or a retry back-off
  and whose segment is not being collected; each gets a lease ``now + lease_s`` held by
  ``node_id``. Returns the tasks with their segment records.
- ``complete_repair{segment_id, expected_placement, new_placement, repaired, node_id}``: a
  compare-and-set. Conflict unless the segment exists, is not being collected and its
  placement equals ``expected_placement``. ``new_placement`` may differ from it only at the
  ``repaired`` indexes, each of which must name a node, and may name no node twice. Then
  the placement is replaced, the repaired indexes leave the task (what is still missing is
  re-queued under its new healthy count: a report that arrived during the repair is kept),
  ``degraded`` follows the placement, and the lease is dropped.
- ``fail_repair{segment_id, node_id, now_ns, retry_after_s, reason}``: the lease holder
  could not repair (fewer than k readable shards, no node to write to): the lease turns into
  a back-off until ``now + retry_after_s``, its failure count grows and the reason is kept
  for ``status``. From anyone else: ignored.
- ``gc_begin{segment_ids, node_id, now_ns, grace_s, lease_s}``: for each segment at
  refcount 0. The ``gc`` entry written by ``handlers`` is empty (the handlers have no
  clock): the first gc_begin that sees it STAMPS it with ``now_ns`` ("zero since") and
  does not begin. A stamped segment whose zero-since is ``grace_s`` old or older is marked
  DELETING (``deleting_since_ns = now_ns``) under a lease held by ``node_id``; a deleting
  one whose lease ran out is taken over (same ``deleting_since_ns``). Returns the begun
  segments' records and their ``deleting_since_ns``.
- ``gc_finish{segment_ids, node_id}``: drops each segment that is still deleting: its
  record, its gc entry, its repair task, lease and degraded mark. Anything else: ignored.
- ``put_object`` (or ``put_part``) naming, as a ref or a new segment, a segment that is
  being deleted fails with Conflict: the shards may be half gone. The gateway retries; after gc_finish the
  segment is unknown and is written afresh.

Why the times in GC are safe: storage nodes delete a collected segment's shard only if its
file is older than ``deleting_since_ns - margin`` (``DELETE ...?older_than_ns=``), and a new
upload of the same content-addressed segment can only write files after gc_finish (before
it, the gateway finds the record and writes nothing; put_object then fails, see above), so
a deleter that is late never removes a re-upload. The stamp is taken at most one collector
period after the refcount fell to 0, which can only delay a deletion, never hasten it.

Sub-dbs: ``repair_leases`` (segment key -> RepairLease) and the values of ``gc`` (b"" or a
GcMark). Invariants (besides those of ``meta/invariants.py``): a lease names a queued
segment (complete, gc_finish drop it with the task); a deleting segment has refcount 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lmdb
import msgspec

from blobstore.core.errors import Conflict, Invalid
from blobstore.core.ids import validate_node_id, validate_segment_id
from blobstore.core.records import RepairTask, Segment
from blobstore.meta import handlers, membership, schema
from blobstore.meta.commands import (
    Command,
    CompleteRepair,
    FailRepair,
    GcBegin,
    GcFinish,
    LeaseRepair,
    MarkNodeDown,
    PutObject,
    PutPart,
)
from blobstore.meta.schema import Dbs

Value = dict[str, Any]
MAX_MARK_DOWN_LIMIT = 100_000  # segments one mark_node_down may examine
MAX_LEASE_TASKS = 256
MAX_LEASE_SCAN = 10_000  # queue entries one lease_repair may pass over
MAX_GC_IDS = 1000  # segment ids per gc_begin / gc_finish
MAX_REASON_CHARS = 300
NS_PER_S = 1_000_000_000


class RepairLease(msgspec.Struct, frozen=True):
    """Who may repair a queued segment until when; after a failure, a retry back-off."""

    holder: str
    until_ns: int
    failures: int = 0
    last_error: str = ""


class GcMark(msgspec.Struct, frozen=True):
    """The value of a stamped ``gc`` entry. ``deleting_since_ns`` 0: not deleting."""

    zero_since_ns: int
    deleting_since_ns: int = 0
    holder: str = ""
    lease_until_ns: int = 0


_encoder = msgspec.msgpack.Encoder()
_lease_decoder = msgspec.msgpack.Decoder(RepairLease)
_mark_decoder = msgspec.msgpack.Decoder(GcMark)


def decode_lease(data: bytes) -> RepairLease:
    return _lease_decoder.decode(data)


def decode_mark(data: bytes) -> GcMark | None:
    """The GcMark of a ``gc`` value; None for the unstamped empty value."""
    return _mark_decoder.decode(data) if data else None


def is_deleting(txn: lmdb.Transaction, dbs: Dbs, segment_key: bytes) -> bool:
    data = txn.get(segment_key, db=dbs.gc)
    mark = decode_mark(data) if data is not None else None
    return mark is not None and mark.deleting_since_ns > 0


# ---- the entry point ---------------------------------------------------------------------


def handle(txn: lmdb.Transaction, dbs: Dbs, command: Command) -> Value:
    """Apply any command: the healing ones here, every other by ``handlers.handle``."""
    handler = _HANDLERS.get(type(command)) or membership.HANDLERS.get(type(command))
    if handler is not None:
        return handler(txn, dbs, command)
    if isinstance(command, PutObject | PutPart):
        _refuse_deleting_segments(txn, dbs, command)
    return handlers.handle(txn, dbs, command)


def _refuse_deleting_segments(txn: lmdb.Transaction, dbs: Dbs,
                              command: PutObject | PutPart) -> None:
    refs = command.version.segments if isinstance(command, PutObject) else command.part.segments
    named = {ref.id for ref in refs} | {segment.id for segment in command.new_segments}
    for segment_id in sorted(named):
        try:
            key = schema.segment_key(segment_id)
        except Invalid:
            continue  # handlers refuse it with the right message
        if is_deleting(txn, dbs, key):
            raise Conflict(f"segment {segment_id} is being garbage-collected; retry the upload")


# ---- node loss ---------------------------------------------------------------------------


def _mark_node_down(txn: lmdb.Transaction, dbs: Dbs, command: MarkNodeDown) -> Value:
    node_id = validate_node_id(command.node_id)
    if not 1 <= command.limit <= MAX_MARK_DOWN_LIMIT:
        raise Invalid(f"limit must be 1..{MAX_MARK_DOWN_LIMIT}")
    cursor = txn.cursor(dbs.segments)
    if command.after:
        found = cursor.set_range(schema.segment_key(command.after))
        if found and cursor.key() == schema.segment_key(command.after):
            found = cursor.next()
    else:
        found = cursor.first()
    examined = cleared = 0
    last_key = b""
    changes: list[tuple[int, Segment]] = []
    while found and examined < command.limit:
        last_key = bytes(cursor.key())
        segment = schema.decode(Segment, cursor.value())
        examined += 1
        if segment.refcount > 0 and node_id in segment.placement:
            index = segment.placement.index(node_id)  # at most once: no node holds two
            placement = [None if node == node_id else node for node in segment.placement]
            changes.append((index, msgspec.structs.replace(segment, placement=placement)))
        found = cursor.next()
    for index, segment in changes:  # written after the walk: never mutate under a cursor
        key = schema.segment_key(segment.id)
        txn.put(key, schema.encode(segment), db=dbs.segments)
        txn.put(key, b"", db=dbs.degraded)
        handlers.queue_repair(txn, dbs, segment, [index], f"node {node_id} down")
        cleared += 1
    more = found and examined == command.limit
    return {"cleared": cleared, "examined": examined,
            "next": schema.segment_id_of(last_key) if more else None}


# ---- repair ------------------------------------------------------------------------------


def _lease_repair(txn: lmdb.Transaction, dbs: Dbs, command: LeaseRepair) -> Value:
    holder = validate_node_id(command.node_id)
    if not 1 <= command.max_tasks <= MAX_LEASE_TASKS or command.lease_s <= 0:
        raise Invalid(f"max_tasks must be 1..{MAX_LEASE_TASKS} and lease_s positive")
    until_ns = command.now_ns + int(command.lease_s * NS_PER_S)
    picked: list[tuple[int, RepairTask]] = []
    scanned = 0
    for key, value in txn.cursor(dbs.repair_queue).iternext():
        if len(picked) >= command.max_tasks or scanned >= MAX_LEASE_SCAN:
            break
        scanned += 1
        task = schema.decode(RepairTask, value)
        segment_key = schema.segment_key(task.segment_id)
        lease_data = txn.get(segment_key, db=dbs.repair_leases)
        if lease_data is not None and decode_lease(lease_data).until_ns > command.now_ns:
            continue
        if is_deleting(txn, dbs, segment_key):
            continue
        picked.append((schema.healthy_of_repair_key(bytes(key)), task))
    tasks = []
    for healthy, task in picked:
        segment_key = schema.segment_key(task.segment_id)
        old = txn.get(segment_key, db=dbs.repair_leases)
        previous = decode_lease(old) if old is not None else None
        lease = RepairLease(holder=holder, until_ns=until_ns,
                            failures=previous.failures if previous else 0,
                            last_error=previous.last_error if previous else "")
        txn.put(segment_key, _encoder.encode(lease), db=dbs.repair_leases)
        segment = schema.decode(Segment, txn.get(segment_key, db=dbs.segments))
        tasks.append({"task": msgspec.to_builtins(task), "healthy": healthy,
                      "segment": msgspec.to_builtins(segment)})
    return {"tasks": tasks, "lease_until_ns": until_ns}


def _complete_repair(txn: lmdb.Transaction, dbs: Dbs, command: CompleteRepair) -> Value:
    segment_key = schema.segment_key(command.segment_id)
    data = txn.get(segment_key, db=dbs.segments)
    if data is None:
        raise Conflict(f"segment {command.segment_id} no longer exists")
    if is_deleting(txn, dbs, segment_key):
        raise Conflict(f"segment {command.segment_id} is being garbage-collected")
    segment = schema.decode(Segment, data)
    if segment.placement != command.expected_placement:
        raise Conflict(f"segment {command.segment_id}: placement changed since the lease")
    _check_new_placement(segment, command)
    updated = msgspec.structs.replace(segment, placement=list(command.new_placement))
    txn.put(segment_key, schema.encode(updated), db=dbs.segments)
    old_task = _pop_task(txn, dbs, command.segment_id)
    missing = set(old_task.missing) if old_task is not None else set()
    remaining = (missing - set(command.repaired)) | {
        i for i, node in enumerate(updated.placement) if node is None}
    if remaining:
        reason = old_task.reason if old_task is not None else "still missing after a repair"
        _put_task(txn, dbs, RepairTask(segment_id=segment.id, missing=sorted(remaining),
                                       reason=reason), updated.total_shards)
    if None in updated.placement:
        txn.put(segment_key, b"", db=dbs.degraded)
    else:
        txn.delete(segment_key, db=dbs.degraded)
    txn.delete(segment_key, db=dbs.repair_leases)
    return {"placement": updated.placement, "remaining": sorted(remaining)}


def _check_new_placement(segment: Segment, command: CompleteRepair) -> None:
    new = command.new_placement
    total = segment.total_shards
    repaired = set(command.repaired)
    if len(new) != total or len(repaired) != len(command.repaired) or not repaired:
        raise Invalid(f"segment {segment.id}: need {total} placements and distinct repairs")
    if not repaired <= set(range(total)):
        raise Invalid(f"segment {segment.id}: repaired index out of range")
    for index in range(total):
        if index in repaired:
            node = new[index]
            if node is None:
                raise Invalid(f"segment {segment.id}: repaired shard {index} names no node")
            validate_node_id(node)
        elif new[index] != segment.placement[index]:
            raise Invalid(f"segment {segment.id}: shard {index} moved but was not repaired")
    nodes = [node for node in new if node is not None]
    if len(set(nodes)) != len(nodes):
        raise Invalid(f"segment {segment.id}: a node would hold two shards")


def _fail_repair(txn: lmdb.Transaction, dbs: Dbs, command: FailRepair) -> Value:
    segment_key = schema.segment_key(command.segment_id)
    data = txn.get(segment_key, db=dbs.repair_leases)
    if data is None:
        return {"recorded": False}
    lease = decode_lease(data)
    if lease.holder != command.node_id:
        return {"recorded": False}
    if txn.get(segment_key, db=dbs.repair_index) is None:  # the task is gone
        txn.delete(segment_key, db=dbs.repair_leases)
        return {"recorded": False}
    backoff = RepairLease(holder=lease.holder,
                          until_ns=command.now_ns + int(max(command.retry_after_s, 0) * NS_PER_S),
                          failures=lease.failures + 1,
                          last_error=command.reason[:MAX_REASON_CHARS])
    txn.put(segment_key, _encoder.encode(backoff), db=dbs.repair_leases)
    return {"recorded": True, "failures": backoff.failures}


def _pop_task(txn: lmdb.Transaction, dbs: Dbs, segment_id: str) -> RepairTask | None:
    segment_key = schema.segment_key(segment_id)
    healthy = txn.get(segment_key, db=dbs.repair_index)
    if healthy is None:
        return None
    queue_key = schema.repair_queue_key(schema.read_u16(healthy), segment_id)
    data = txn.get(queue_key, db=dbs.repair_queue)
    txn.delete(queue_key, db=dbs.repair_queue)
    txn.delete(segment_key, db=dbs.repair_index)
    return schema.decode(RepairTask, data) if data is not None else None


def _put_task(txn: lmdb.Transaction, dbs: Dbs, task: RepairTask, total_shards: int) -> None:
    healthy = total_shards - len(task.missing)
    txn.put(schema.repair_queue_key(healthy, task.segment_id), schema.encode(task),
            db=dbs.repair_queue)
    txn.put(schema.segment_key(task.segment_id), schema.u16(healthy), db=dbs.repair_index)


# ---- garbage collection --------------------------------------------------------------------


def _gc_begin(txn: lmdb.Transaction, dbs: Dbs, command: GcBegin) -> Value:
    holder = validate_node_id(command.node_id)
    _check_gc_ids(command.segment_ids)
    grace_ns = int(command.grace_s * NS_PER_S)
    lease_until_ns = command.now_ns + int(command.lease_s * NS_PER_S)
    if grace_ns < 0 or command.lease_s <= 0:
        raise Invalid("grace_s must be >= 0 and lease_s positive")
    begun, stamped, waiting = [], [], []
    for segment_id in sorted(set(command.segment_ids)):
        key = schema.segment_key(segment_id)
        data = txn.get(key, db=dbs.gc)
        record = txn.get(key, db=dbs.segments)
        if data is None or record is None:
            continue  # referenced (refcount > 0) or already collected
        segment = schema.decode(Segment, record)
        mark = decode_mark(data)
        if segment.refcount != 0:
            continue
        if mark is None:
            mark = GcMark(zero_since_ns=command.now_ns)
            stamped.append(segment_id)
        elif mark.deleting_since_ns == 0 and command.now_ns - mark.zero_since_ns >= grace_ns:
            mark = GcMark(zero_since_ns=mark.zero_since_ns, deleting_since_ns=command.now_ns,
                          holder=holder, lease_until_ns=lease_until_ns)
            begun.append({"segment": msgspec.to_builtins(segment),
                          "deleting_since_ns": command.now_ns})
        elif mark.deleting_since_ns and mark.lease_until_ns <= command.now_ns:
            mark = msgspec.structs.replace(mark, holder=holder, lease_until_ns=lease_until_ns)
            begun.append({"segment": msgspec.to_builtins(segment),
                          "deleting_since_ns": mark.deleting_since_ns})
        else:
            waiting.append(segment_id)
            continue
        txn.put(key, _encoder.encode(mark), db=dbs.gc)
    return {"begun": begun, "stamped": stamped, "waiting": waiting}


def _gc_finish(txn: lmdb.Transaction, dbs: Dbs, command: GcFinish) -> Value:
    validate_node_id(command.node_id)
    _check_gc_ids(command.segment_ids)
    finished = []
    for segment_id in sorted(set(command.segment_ids)):
        key = schema.segment_key(segment_id)
        if not is_deleting(txn, dbs, key):
            continue
        record = txn.get(key, db=dbs.segments)
        if record is not None and schema.decode(Segment, record).refcount != 0:
            continue  # cannot happen (put_object refuses deleting segments): keep it
        _pop_task(txn, dbs, segment_id)
        membership.forget_segment(txn, dbs, key)
        for db in (dbs.segments, dbs.gc, dbs.degraded, dbs.repair_leases):
            txn.delete(key, db=db)
        finished.append(segment_id)
    return {"finished": finished}


def _check_gc_ids(segment_ids: list[str]) -> None:
    if len(segment_ids) > MAX_GC_IDS:
        raise Invalid(f"at most {MAX_GC_IDS} segment ids per command")
    for segment_id in segment_ids:
        validate_segment_id(segment_id)


_HANDLERS: dict[type, Callable[[lmdb.Transaction, Dbs, Any], Value]] = {
    MarkNodeDown: _mark_node_down,
    LeaseRepair: _lease_repair,
    CompleteRepair: _complete_repair,
    FailRepair: _fail_repair,
    GcBegin: _gc_begin,
    GcFinish: _gc_finish,
}
