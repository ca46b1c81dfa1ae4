"""Reads of the self-healing state: status counters, fsck pages, GC candidates, placement.

Each function runs in one LMDB read transaction (a consistent snapshot) over the layout of
``meta/schema.py`` and the values of ``meta/heal.py``; the routes of
``meta/heal_routes.py`` call them through the service's thread pool. Reads are not part of
the replicated log, so ``now_ns`` here is the serving replica's clock, used only to tell
live leases from expired ones in a report.

Rules:

- Every walk is bounded: a page has at most ``limit`` results and examines at most
  ``MAX_SCAN`` entries, then answers with a ``next`` cursor to continue after.
- Cursors are opaque to callers but plain inside: a segment id (hex) for walks over
  segments and the GC list, the hex of the stored object key for fsck pages.
- Garbage (refcount 0) is not "placed": inventory reconciliation leaves it to the collector.
"""

from __future__ import annotations

import lmdb

from blobstore.core.errors import Invalid
from blobstore.core.ids import shard_id, validate_node_id
from blobstore.core.records import ObjectVersion, Segment
from blobstore.meta import schema
from blobstore.meta.heal import decode_lease, decode_mark
from blobstore.meta.state_machine import StateMachine
from blobstore.rpc.heal_wire import (
    FsckObject,
    FsckPage,
    GcCandidate,
    GcPage,
    HealStatus,
    PlacedPage,
)

MAX_PAGE = 1000
MAX_SCAN = 20_000  # entries one read may walk
MAX_STUCK_REASONS = 5
MAX_HISTOGRAM_SCAN = 200_000  # queue / gc entries one status read walks at most


def heal_status(state: StateMachine, now_ns: int, data_shards: int) -> HealStatus:
    """The replicated half of ``GET /v1/heal/status`` (the routes add node states, scrub)."""
    dbs = state.dbs
    with state.env.begin() as txn:
        histogram: dict[str, int] = {}
        lost = 0
        min_healthy = None
        for number, key in enumerate(txn.cursor(dbs.repair_queue).iternext(values=False)):
            if number >= MAX_HISTOGRAM_SCAN:
                break
            healthy = schema.healthy_of_repair_key(bytes(key))
            min_healthy = healthy if min_healthy is None else min_healthy
            histogram[str(healthy)] = histogram.get(str(healthy), 0) + 1
            lost += healthy < data_shards
        leased = stuck = 0
        reasons: list[str] = []
        for value in txn.cursor(dbs.repair_leases).iternext(keys=False):
            lease = decode_lease(bytes(value))
            if lease.failures:
                stuck += 1
                if lease.last_error and len(reasons) < MAX_STUCK_REASONS:
                    reasons.append(lease.last_error)
            elif lease.until_ns > now_ns:
                leased += 1
        deleting = 0
        for number, value in enumerate(txn.cursor(dbs.gc).iternext(keys=False)):
            if number >= MAX_HISTOGRAM_SCAN:
                break
            mark = decode_mark(bytes(value))
            deleting += bool(mark and mark.deleting_since_ns)
        stat = txn.stat
        return HealStatus(
            repair_backlog=int(stat(dbs.repair_queue)["entries"]),
            degraded_segments=int(stat(dbs.degraded)["entries"]), lost_segments=lost,
            repair_leased=leased, repair_stuck=stuck, stuck_reasons=reasons,
            min_healthy=min_healthy, backlog_by_healthy=histogram,
            gc_backlog=int(stat(dbs.gc)["entries"]), gc_deleting=deleting,
            objects=int(stat(dbs.objects)["entries"]),
            segments=int(stat(dbs.segments)["entries"]))


def fsck_page(state: StateMachine, after: str, limit: int) -> FsckPage:
    """Objects after the cursor, each with its segment ids, and those segments' records."""
    limit = _check_limit(limit)
    start = _hex_cursor(after)
    objects: list[FsckObject] = []
    segments: dict[str, Segment] = {}
    last = b""
    with state.env.begin() as txn:
        cursor = txn.cursor(state.dbs.objects)
        found = cursor.set_range(start) if start else cursor.first()
        if found and start and cursor.key() == start:
            found = cursor.next()
        while found and len(objects) < limit:
            last = bytes(cursor.key())
            version = schema.decode(ObjectVersion, cursor.value())
            ids = list(dict.fromkeys(ref.id for ref in version.segments))
            objects.append(FsckObject(bucket=version.bucket, key=version.key,
                                      size=version.size, segment_ids=ids))
            for segment_id in ids:
                if segment_id not in segments:
                    data = txn.get(schema.segment_key(segment_id), db=state.dbs.segments)
                    if data is not None:
                        segments[segment_id] = schema.decode(Segment, data)
            found = cursor.next()
    return FsckPage(objects=objects, segments=segments,
                    next=last.hex() if found and objects else None)


def gc_page(state: StateMachine, after: str, limit: int) -> GcPage:
    """Segments at refcount 0 after the cursor, with their GC marks."""
    limit = _check_limit(limit)
    candidates: list[GcCandidate] = []
    last = b""
    with state.env.begin() as txn:
        cursor = txn.cursor(state.dbs.gc)
        found = _seek_after(cursor, after)
        while found and len(candidates) < limit:
            last = bytes(cursor.key())
            mark = decode_mark(bytes(cursor.value()))
            candidates.append(GcCandidate(
                segment_id=schema.segment_id_of(last),
                zero_since_ns=mark.zero_since_ns if mark else 0,
                deleting_since_ns=mark.deleting_since_ns if mark else 0,
                lease_until_ns=mark.lease_until_ns if mark else 0))
            found = cursor.next()
    return GcPage(candidates=candidates,
                  next=schema.segment_id_of(last) if found and candidates else None)


def placed_page(state: StateMachine, node_id: str, after: str, limit: int) -> PlacedPage:
    """Shard ids that live segments (refcount > 0) place on ``node_id``, after the cursor.

    Examines at most ``MAX_SCAN`` segments; ``next`` is where to continue, None at the end.
    """
    validate_node_id(node_id)
    limit = _check_limit(limit)
    shard_ids: list[str] = []
    last = b""
    examined = 0
    with state.env.begin() as txn:
        cursor = txn.cursor(state.dbs.segments)
        found = _seek_after(cursor, after)
        while found and len(shard_ids) < limit and examined < MAX_SCAN:
            last = bytes(cursor.key())
            examined += 1
            segment = schema.decode(Segment, cursor.value())
            if segment.refcount > 0 and node_id in segment.placement:
                shard_ids.append(shard_id(segment.id, segment.placement.index(node_id)))
            found = cursor.next()
    return PlacedPage(shard_ids=shard_ids,
                      next=schema.segment_id_of(last) if found and last else None)


def _seek_after(cursor: lmdb.Cursor, after: str) -> bool:
    """Position on the first segment-keyed entry after the segment id ``after``."""
    if not after:
        return bool(cursor.first())
    key = schema.segment_key(after)
    found = cursor.set_range(key)
    if found and cursor.key() == key:
        found = cursor.next()
    return bool(found)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1..{MAX_PAGE}")
    return limit


def _hex_cursor(after: str) -> bytes:
    if len(after) > 2 * 512:
        raise Invalid("after is too long")
    try:
        return bytes.fromhex(after)
    except ValueError as exc:
        raise Invalid("after must be a cursor returned by the previous page") from exc
