"""Storage membership in the metadata state machine: the node table and the move queue.

cluster.toml names the nodes a cluster started with; the node table (sub-db ``members``)
records what changed since, replicated like every other state: a node added at run time
(id, address, zone, weight, data dir) and a node's membership state, ``active``,
``draining`` or ``removed``. The failure detector overlays it on the nodes of cluster.toml
to build the cluster map (``meta/failure_detector.py``), so gateways stop placing new
shards on a draining node and every process learns an added node's address.

A shard leaves a node by a MOVE, never by clearing its placement entry: a move task (sub-db
``moves``, one per segment) says "shard i, now on node X, goes elsewhere (or to T)". A
storage node's repairer leases it, copies the shard (or rebuilds it from k others when X's
copy is unreadable) to the new node, and commits with ``complete_move``, a compare-and-set
of the placement; X's now unplaced copy is reclaimed by X's inventory after ``gc_grace_s``.
So a segment keeps k+m placed shards at every moment of a drain or a rebalance.

Like ``meta/heal.py`` these are deterministic functions of (state, command); every time is
in the command. Whether a change is SAFE (enough nodes left, nothing placed on a node being
removed) needs the soft-state cluster map and is judged by the proposer
(``core/membership_plan.py``, ``client/membership.py``); the rules here keep the table
consistent whatever is proposed.

Commands:

- ``add_node{node_id, address, zone, weight, data_dir, now_ns}``: a new ACTIVE storage
  node. Conflict if the table already has the id (ids are never reused).
- ``drain_node{node_id, now_ns, after, limit}``: the first page (``after == ""``) marks the
  node DRAINING (Conflict if removed); every page examines up to ``limit`` segments after
  ``after`` and queues a move for each live segment (refcount > 0) that places a shard on
  the node. Idempotent: the proposer may run the walk again to catch shards placed by a
  gateway whose map was a second old.
- ``remove_node{node_id, now_ns}``: DRAINING -> REMOVED; Conflict from any other state.
- ``rebalance_node{node_id, candidates, mode, donors, budget, after, limit, now_ns}``:
  examines a page of segments and queues, for up to ``budget`` of them, the move that
  ``core/membership_plan.choose_move`` picks to the node. Returns ``queued`` and ``next``.
- ``lease_moves{node_id, now_ns, lease_s, max_tasks}``: up to ``max_tasks`` move tasks not
  under lease or back-off, whose segment is live, not being collected and not queued for
  repair (repair first); moves made moot by a placement change are dropped here.
- ``complete_move{segment_id, expected_placement, new_placement, moved, node_id}``:
  compare-and-set like ``complete_repair``; ``new_placement`` differs from the expected one
  exactly at ``moved``, each a placed shard that goes to another node; no node twice.
  Satisfied moves leave the task; the task goes when none is left.
- ``fail_move{segment_id, node_id, now_ns, retry_after_s, reason}``: from the lease holder:
  a back-off, counted and explained in ``GET /v1/membership``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import msgspec

from blobstore.config import _ADDRESS_RE
from blobstore.core.errors import Conflict, Invalid
from blobstore.core.ids import validate_node_id
from blobstore.core.membership_plan import choose_move
from blobstore.core.placement import Candidate
from blobstore.core.records import Segment
from blobstore.meta import schema
from blobstore.meta.commands import (
    AddNode,
    CompleteMove,
    DrainNode,
    FailMove,
    LeaseMoves,
    RebalanceNode,
    RemoveNode,
)
from blobstore.meta.schema import Dbs

Value = dict[str, Any]
ACTIVE, DRAINING, REMOVED = "active", "draining", "removed"
MAX_PAGE_SEGMENTS = 100_000
MAX_LEASE_TASKS = 256
MAX_LEASE_SCAN = 10_000
MAX_REASON_CHARS = 300
MAX_STATUS_SCAN = 200_000
NS_PER_S = 1_000_000_000


class Member(msgspec.Struct, frozen=True):
    """One row of the node table: a node added at run time, or a state change of one."""

    id: str
    state: str  # active | draining | removed
    role: str = "storage"
    address: str = ""  # "" for a node of cluster.toml (the file has it)
    zone: str = ""
    weight: float = 1.0
    data_dir: str = ""
    added: bool = False  # added at run time (not in cluster.toml when the cluster began)
    changed_ns: int = 0
    generation: int = 1  # changes to this row; the cluster map's epoch sums them


class ShardMove(msgspec.Struct, frozen=True):
    index: int
    source: str  # the node the shard leaves
    target: str = ""  # where it goes; "" = the mover chooses (core/repair_plan.py)


class MoveTask(msgspec.Struct, frozen=True):
    segment_id: str
    moves: list[ShardMove]
    reason: str
    holder: str = ""
    until_ns: int = 0  # lease or back-off
    failures: int = 0
    last_error: str = ""


_encoder = msgspec.msgpack.Encoder()
_member_decoder = msgspec.msgpack.Decoder(Member)
_move_decoder = msgspec.msgpack.Decoder(MoveTask)


def decode_member(data: bytes) -> Member:
    return _member_decoder.decode(data)


def decode_move(data: bytes) -> MoveTask:
    return _move_decoder.decode(data)


def get_member(txn: lmdb.Transaction, dbs: Dbs, node_id: str) -> Member | None:
    data = txn.get(node_id.encode(), db=dbs.members)
    return decode_member(data) if data is not None else None


def _put_member(txn: lmdb.Transaction, dbs: Dbs, member: Member) -> None:
    txn.put(member.id.encode(), _encoder.encode(member), db=dbs.members)


# ---- node table ----------------------------------------------------------------------------


def add_node(txn: lmdb.Transaction, dbs: Dbs, command: AddNode) -> Value:
    node_id = validate_node_id(command.node_id)
    if not _ADDRESS_RE.fullmatch(command.address):
        raise Invalid(f"address {command.address!r} is not host:port")
    if not command.zone or command.weight <= 0:
        raise Invalid("a node needs a zone and a positive weight")
    if get_member(txn, dbs, node_id) is not None:
        raise Conflict(f"node {node_id} is already in the node table (ids are not reused)")
    for _, value in txn.cursor(dbs.members).iternext():
        if decode_member(bytes(value)).address == command.address:
            raise Conflict(f"address {command.address} is taken")
    member = Member(id=node_id, state=ACTIVE, address=command.address, zone=command.zone,
                    weight=command.weight, data_dir=command.data_dir, added=True,
                    changed_ns=command.now_ns)
    _put_member(txn, dbs, member)
    return {"member": msgspec.to_builtins(member)}


def _set_state(txn: lmdb.Transaction, dbs: Dbs, node_id: str, state: str,
               now_ns: int) -> Member:
    old = get_member(txn, dbs, node_id)
    if old is None:
        member = Member(id=node_id, state=state, changed_ns=now_ns)
    elif old.state == state:
        return old
    else:
        member = msgspec.structs.replace(old, state=state, changed_ns=now_ns,
                                         generation=old.generation + 1)
    _put_member(txn, dbs, member)
    return member


def drain_node(txn: lmdb.Transaction, dbs: Dbs, command: DrainNode) -> Value:
    node_id = validate_node_id(command.node_id)
    _check_limit(command.limit)
    member = get_member(txn, dbs, node_id)
    if member is not None and member.state == REMOVED:
        raise Conflict(f"node {node_id} is removed")
    if not command.after:
        _set_state(txn, dbs, node_id, DRAINING, command.now_ns)
    elif member is None or member.state != DRAINING:
        raise Conflict(f"node {node_id} is not draining (start the walk with after='')")
    examined = queued = 0
    last, more = b"", False
    pending: list[tuple[Segment, int]] = []
    for key, segment in _segments_after(txn, dbs, command.after):
        if examined >= command.limit:
            more = True
            break
        last = key
        examined += 1
        if segment.refcount > 0 and node_id in segment.placement:
            pending.append((segment, segment.placement.index(node_id)))
    for segment, index in pending:  # written after the walk: never mutate under a cursor
        queued += queue_move(txn, dbs, segment, ShardMove(index=index, source=node_id),
                             f"drain of {node_id}")
    return {"queued": queued, "examined": examined,
            "next": schema.segment_id_of(last) if more and last else None}


def remove_node(txn: lmdb.Transaction, dbs: Dbs, command: RemoveNode) -> Value:
    node_id = validate_node_id(command.node_id)
    member = get_member(txn, dbs, node_id)
    if member is None or member.state != DRAINING:
        state = member.state if member is not None else ACTIVE
        raise Conflict(f"node {node_id} is {state}: only a drained node can be removed")
    removed = _set_state(txn, dbs, node_id, REMOVED, command.now_ns)
    return {"member": msgspec.to_builtins(removed)}


def rebalance_node(txn: lmdb.Transaction, dbs: Dbs, command: RebalanceNode) -> Value:
    target = validate_node_id(command.node_id)
    _check_limit(command.limit)
    if command.mode not in ("ranked", "donors") or command.budget < 0:
        raise Invalid("mode must be ranked or donors, budget >= 0")
    member = get_member(txn, dbs, target)
    if member is not None and member.state != ACTIVE:
        raise Conflict(f"node {target} is {member.state}: nothing moves to it")
    candidates = [Candidate(node_id, zone, weight) for node_id, zone, weight in command.candidates]
    if target not in {c.node_id for c in candidates}:
        raise Invalid(f"{target} must be among the candidates")
    examined = queued = 0
    last, more = b"", False
    pending: list[tuple[Segment, int]] = []
    for key, segment in _segments_after(txn, dbs, command.after):
        if examined >= command.limit or len(pending) >= command.budget:
            more = True
            break
        last = key
        examined += 1
        if segment.refcount > 0 and not _has_move_task(txn, dbs, key) \
                and txn.get(key, db=dbs.repair_index) is None:
            index = choose_move(segment.id, segment.placement, candidates, target,
                                command.mode, command.donors)
            if index is not None:
                pending.append((segment, index))
    for segment, index in pending:
        source = segment.placement[index]
        assert source is not None
        queued += queue_move(txn, dbs, segment, ShardMove(index=index, source=source,
                                                          target=target),
                             f"rebalance onto {target}")
    return {"queued": queued, "examined": examined,
            "next": schema.segment_id_of(last) if more and last else None}


# ---- the move queue ------------------------------------------------------------------------


def queue_move(txn: lmdb.Transaction, dbs: Dbs, segment: Segment, move: ShardMove,
               reason: str) -> int:
    """Add (or replace, same index) a move to the segment's task; 1 if it is new."""
    key = schema.segment_key(segment.id)
    data = txn.get(key, db=dbs.moves)
    old = decode_move(data) if data is not None else None
    moves = [m for m in (old.moves if old else []) if m.index != move.index]
    if old is not None and move in old.moves:
        return 0
    task = MoveTask(segment_id=segment.id, moves=sorted([*moves, move], key=lambda m: m.index),
                    reason=reason, holder=old.holder if old else "",
                    until_ns=old.until_ns if old else 0, failures=old.failures if old else 0,
                    last_error=old.last_error if old else "")
    txn.put(key, _encoder.encode(task), db=dbs.moves)
    return 1


def _live_moves(task: MoveTask, segment: Segment) -> list[ShardMove]:
    """The moves the placement has not made moot: the shard is still on its source, and a
    named target does not hold a shard of the segment already."""
    return [m for m in task.moves
            if 0 <= m.index < segment.total_shards and segment.placement[m.index] == m.source
            and not (m.target and m.target in segment.placement)]


def lease_moves(txn: lmdb.Transaction, dbs: Dbs, command: LeaseMoves) -> Value:
    from blobstore.meta.heal import is_deleting  # heal imports this module

    holder = validate_node_id(command.node_id)
    if not 1 <= command.max_tasks <= MAX_LEASE_TASKS or command.lease_s <= 0:
        raise Invalid(f"max_tasks must be 1..{MAX_LEASE_TASKS} and lease_s positive")
    until_ns = command.now_ns + int(command.lease_s * NS_PER_S)
    picked: list[tuple[bytes, MoveTask, Segment]] = []
    drop: list[bytes] = []
    scanned = 0
    for key, value in txn.cursor(dbs.moves).iternext():
        if len(picked) >= command.max_tasks or scanned >= MAX_LEASE_SCAN:
            break
        scanned += 1
        key = bytes(key)
        task = decode_move(bytes(value))
        if task.until_ns > command.now_ns:
            continue
        data = txn.get(key, db=dbs.segments)
        segment = schema.decode(Segment, data) if data is not None else None
        if segment is None or segment.refcount == 0:
            drop.append(key)  # gone, or garbage: the collector deletes it where it is
            continue
        if is_deleting(txn, dbs, key) or txn.get(key, db=dbs.repair_index) is not None:
            continue
        live = _live_moves(task, segment)
        if not live:
            drop.append(key)
            continue
        picked.append((key, msgspec.structs.replace(task, moves=live), segment))
    for key in drop:
        txn.delete(key, db=dbs.moves)
    tasks = []
    for key, task, segment in picked:
        leased = msgspec.structs.replace(task, holder=holder, until_ns=until_ns)
        txn.put(key, _encoder.encode(leased), db=dbs.moves)
        tasks.append({"task": msgspec.to_builtins(leased),
                      "segment": msgspec.to_builtins(segment)})
    return {"tasks": tasks, "lease_until_ns": until_ns, "dropped": len(drop)}


def complete_move(txn: lmdb.Transaction, dbs: Dbs, command: CompleteMove) -> Value:
    from blobstore.meta.heal import is_deleting  # heal imports this module

    key = schema.segment_key(command.segment_id)
    data = txn.get(key, db=dbs.segments)
    if data is None:
        raise Conflict(f"segment {command.segment_id} no longer exists")
    if is_deleting(txn, dbs, key):
        raise Conflict(f"segment {command.segment_id} is being garbage-collected")
    segment = schema.decode(Segment, data)
    if segment.placement != command.expected_placement:
        raise Conflict(f"segment {command.segment_id}: placement changed since the lease")
    _check_moved(segment, command)
    updated = msgspec.structs.replace(segment, placement=list(command.new_placement))
    txn.put(key, schema.encode(updated), db=dbs.segments)
    remaining: list[ShardMove] = []
    task_data = txn.get(key, db=dbs.moves)
    if task_data is not None:
        task = decode_move(task_data)
        remaining = _live_moves(task, updated)
        if remaining:
            txn.put(key, _encoder.encode(MoveTask(segment_id=task.segment_id, moves=remaining,
                                                  reason=task.reason)), db=dbs.moves)
        else:
            txn.delete(key, db=dbs.moves)
    return {"placement": updated.placement, "remaining": [m.index for m in remaining]}


def _check_moved(segment: Segment, command: CompleteMove) -> None:
    new = command.new_placement
    moved = set(command.moved)
    if len(new) != segment.total_shards or not moved or len(moved) != len(command.moved):
        raise Invalid(f"segment {segment.id}: need {segment.total_shards} placements and "
                      "distinct moved indexes")
    for index in range(segment.total_shards):
        old = segment.placement[index]
        if index in moved:
            if old is None or new[index] is None or new[index] == old:
                raise Invalid(f"segment {segment.id}: shard {index} is not a move of a "
                              "placed shard to another node")
            validate_node_id(str(new[index]))
        elif new[index] != old:
            raise Invalid(f"segment {segment.id}: shard {index} changed but was not moved")
    nodes = [node for node in new if node is not None]
    if len(set(nodes)) != len(nodes):
        raise Invalid(f"segment {segment.id}: a node would hold two shards")


def fail_move(txn: lmdb.Transaction, dbs: Dbs, command: FailMove) -> Value:
    key = schema.segment_key(command.segment_id)
    data = txn.get(key, db=dbs.moves)
    if data is None:
        return {"recorded": False}
    task = decode_move(data)
    if task.holder != command.node_id:
        return {"recorded": False}
    backoff = msgspec.structs.replace(
        task, until_ns=command.now_ns + int(max(command.retry_after_s, 0) * NS_PER_S),
        failures=task.failures + 1, last_error=command.reason[:MAX_REASON_CHARS])
    txn.put(key, _encoder.encode(backoff), db=dbs.moves)
    return {"recorded": True, "failures": backoff.failures}


def forget_segment(txn: lmdb.Transaction, dbs: Dbs, key: bytes) -> None:
    """A collected segment's move task goes with it (``gc_finish``)."""
    txn.delete(key, db=dbs.moves)


# ---- reads ---------------------------------------------------------------------------------


def list_members(env: lmdb.Environment, dbs: Dbs) -> list[Member]:
    with env.begin() as txn:
        return [decode_member(bytes(value)) for _, value in txn.cursor(dbs.members).iternext()]


def membership_status(env: lmdb.Environment, dbs: Dbs, now_ns: int,
                      detail: bool = True) -> Value:
    """The node table and the move backlog; with ``detail`` also per source and target
    node, leased and stuck (a walk over the move queue; without it the read is O(nodes))."""
    with env.begin() as txn:
        members = [msgspec.to_builtins(decode_member(bytes(value)))
                   for _, value in txn.cursor(dbs.members).iternext()]
        if not detail:
            return {"members": members, "move_backlog": int(txn.stat(dbs.moves)["entries"])}
        moves_from: dict[str, int] = {}
        moves_to: dict[str, int] = {}
        leased = stuck = 0
        reasons: list[str] = []
        for number, value in enumerate(txn.cursor(dbs.moves).iternext(keys=False)):
            if number >= MAX_STATUS_SCAN:
                break
            task = decode_move(bytes(value))
            for move in task.moves:
                moves_from[move.source] = moves_from.get(move.source, 0) + 1
                if move.target:
                    moves_to[move.target] = moves_to.get(move.target, 0) + 1
            if task.failures and task.until_ns > now_ns:
                stuck += 1
                if task.last_error and len(reasons) < 5:
                    reasons.append(task.last_error)
            elif task.until_ns > now_ns:
                leased += 1
        backlog = int(txn.stat(dbs.moves)["entries"])
    return {"members": members, "move_backlog": backlog, "moves_leased": leased,
            "moves_stuck": stuck, "stuck_reasons": reasons, "moves_from": moves_from,
            "moves_to": moves_to}


def placed_counts(env: lmdb.Environment, dbs: Dbs, after: str, limit: int) -> Value:
    """Shards live segments place on each node, over one page of segments."""
    _check_limit(limit)
    counts: dict[str, int] = {}
    examined = 0
    last, more = b"", False
    with env.begin() as txn:
        for key, segment in _segments_after(txn, dbs, after):
            if examined >= limit:
                more = True
                break
            last = key
            examined += 1
            if segment.refcount > 0:
                for node in segment.placement:
                    if node is not None:
                        counts[node] = counts.get(node, 0) + 1
    return {"counts": counts, "examined": examined,
            "next": schema.segment_id_of(last) if more and last else None}


# ---- paging over segments ------------------------------------------------------------------


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SEGMENTS:
        raise Invalid(f"limit must be 1..{MAX_PAGE_SEGMENTS}")


def _segments_after(txn: lmdb.Transaction, dbs: Dbs,
                    after: str) -> Iterator[tuple[bytes, Segment]]:
    """Segments in id order, after the segment id ``after`` ("" = from the first)."""
    cursor = txn.cursor(dbs.segments)
    if after:
        start = schema.segment_key(after)
        found = cursor.set_range(start)
        if found and cursor.key() == start:
            found = cursor.next()
    else:
        found = cursor.first()
    while found:
        yield bytes(cursor.key()), schema.decode(Segment, cursor.value())
        found = cursor.next()


def _has_move_task(txn: lmdb.Transaction, dbs: Dbs, key: bytes) -> bool:
    return txn.get(key, db=dbs.moves) is not None


HANDLERS: dict[type, Callable[[lmdb.Transaction, Dbs, Any], Value]] = {
    AddNode: add_node,
    DrainNode: drain_node,
    RemoveNode: remove_node,
    RebalanceNode: rebalance_node,
    LeaseMoves: lease_moves,
    CompleteMove: complete_move,
    FailMove: fail_move,
}
