"""The repairer: lease repair tasks from meta, rebuild the shards, commit the new placement.

Every storage node runs one. A pass (``run_once``) looks at the repair backlog (a cheap
read) and, if there is any, works through it: ``repair_concurrency`` segments at a time,
leasing a batch from meta whenever its local queue runs dry, most endangered segments
first (meta's queue order), until meta has nothing left to lease to it.

One segment (``repair_one``):

1. Plan (``core/repair_plan.py``): rebuild the task's missing indexes and every index the
   placement has no node for.
2. Read ``data_shards`` verified shards from their nodes (up or suspect), data shards
   first; a shard that is missing or corrupt on a node that answers is added to the set to
   rebuild; an unreachable node is just skipped. Each payload is checked against the xxh3
   in the segment record, not only the node's own checksum.
3. Re-encode (``reencode``, one call in the thread pool): decode only if a data shard is
   missing, and then check the segment's SHA-256 against its id; compute only the shards
   to rebuild, each checked against its recorded xxh3: a repair writes exactly the bytes
   the original write did, or nothing.
4. Write each to its target (back to its own node when that node is up, else to a new up
   node holding no shard of the segment; spares on failure), then propose
   ``complete_repair``: a compare-and-set of the placement read at lease time. A Conflict
   (the placement moved meanwhile: a node was declared down, another repair won) drops the
   work; shards already written become orphans that the inventory reclaims.
5. A segment that cannot be repaired now (fewer than ``data_shards`` readable shards, no
   node to write to) is reported with ``fail_repair``: meta backs it off for
   ``repair_retry_s`` and shows it as stuck.

Moves (``meta/membership.py``: a drain, a rebalance) are the same machinery with the
placement never cleared: when no repair is left to lease, the pass leases move tasks
(``lease_moves``), and for each (``move_one``):

1. Read the shard from the node it leaves (checked against the record's xxh3); if that copy
   is missing or bad, rebuild it from ``data_shards`` others as a repair would.
2. Write it to the task's target, or (target "") to the best up node that holds no shard
   of the segment (``plan_targets`` with the leaving nodes counted as not up): never to a
   draining or removed node.
3. ``complete_move``: compare-and-set of the placement read at lease time. Until that
   commit the old copy is the placed one; after it the new one is, and the old file, now
   unplaced, is reclaimed by its node's inventory after ``gc_grace_s``. The segment has
   k+m placed, written shards at every moment.

Throttling: every shard read and written goes through one ``Pacer`` of
``repair_rate_bytes_per_s`` per node, so foreground traffic keeps its share of disks and
network; decode and encode run in the node's bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from blobstore.core import ec, ec_rebuild
from blobstore.core.errors import BlobstoreError, Conflict, Corrupt, NoSuchShard
from blobstore.core.ids import shard_id
from blobstore.core.records import ClusterMap, Segment
from blobstore.core.repair_plan import plan_targets, shards_to_rebuild, source_order
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.heal_wire import LeasedMove, LeasedTask, ShardMove
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient
from blobstore.runtime import cpu_load
from blobstore.runtime.workers import Pacer, PeriodicWorker
from blobstore.storage import cluster_view
from blobstore.storage.cluster_view import ClusterView

log = logging.getLogger(__name__)
Compute = Callable[..., Awaitable[object]]
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RepairSettings:
    concurrency: int = 4  # segments repaired at once by this node
    lease_s: float = 60.0
    retry_s: float = 30.0  # meta's back-off after a failed attempt
    poll_interval_s: float = 5.0  # an idle repairer looks at the backlog this often
    rate_bytes_per_s: int = 64 * MIB  # shard bytes read + written; 0 = unthrottled
    shard_timeout_s: float = 30.0
    max_leases_per_pass: int = 100_000


@dataclass(frozen=True, slots=True)
class LocalShards:
    """This node's own store, used instead of HTTP when a shard lives here."""

    get: Callable[[str], Awaitable[bytes]]
    put: Callable[[str, bytes, int, int, int, str], Awaitable[object]]


class _Skip(Exception):
    """This segment cannot be repaired now; the message says why (-> fail_repair)."""


class Repairer(PeriodicWorker):
    name = "repair"

    def __init__(self, node_id: str, meta: MetaClient, storage: StorageClient, view: ClusterView,
                 compute: Compute, settings: RepairSettings | None = None,
                 local: LocalShards | None = None) -> None:
        self.settings = settings or RepairSettings()
        super().__init__(self.settings.poll_interval_s)
        self.node_id = node_id
        self.meta = meta
        self.heal = HealClient(meta)
        self.storage = storage
        self.view = view
        self.compute = compute
        self.local = local
        # Moves (an operator's drain or rebalance) and repairs of a segment one more loss away
        # from unreadable (k shards placed) run at the configured rate; repairs with
        # redundancy left also yield to a busy machine (runtime/cpu_load.py).
        self.pacer = Pacer(self.settings.rate_bytes_per_s)
        self.yielding_pacer = Pacer(self.settings.rate_bytes_per_s,
                                    share=cpu_load.MACHINE.background_share)
        self._pending: list[LeasedTask] = []
        self._moving = False  # a move pass runs (moves keep the configured rate)
        self._lease_lock = asyncio.Lock()
        self._leases = 0
        self._leased_this_pass = 0
        self._nudged = False
        self._idle: tuple[int, float] | None = None  # (backlog, when) of a fruitless pass
        self._pending_moves: list[LeasedMove] = []
        self._moves_idle: tuple[int, float] | None = None

    def wake(self) -> None:
        self._nudged = True
        super().wake()

    async def run_once(self) -> None:
        """Drain what meta will lease to this node: repairs first, then moves (nothing to
        do: two cheap reads).

        When the last pass found only tasks it could not lease (leased elsewhere, backing
        off after a failure) and the backlog has not changed, an unprompted pass within
        ``retry_s`` asks nothing more: a stuck backlog costs no log entries.
        """
        nudged, self._nudged = self._nudged, False
        await self._repair_pass(nudged)
        await self._move_pass(nudged)

    async def _repair_pass(self, nudged: bool) -> None:
        backlog = int((await self.meta.status()).get("repair_backlog") or 0)
        if not backlog:
            return
        now = time.monotonic()
        if not nudged and self._idle is not None and self._idle[0] == backlog \
                and now - self._idle[1] < self.settings.retry_s:
            return
        self._leases = 0
        self._leased_this_pass = 0
        await asyncio.gather(*(self._work() for _ in range(self.settings.concurrency)))
        self._idle = (backlog, now) if not self._leased_this_pass else None

    async def _work(self) -> None:
        while (leased := await self._next_task()) is not None:
            try:
                outcome = await self.repair_one(leased)
            except BlobstoreError as exc:  # meta or the network failed us: the lease expires
                outcome = "error"
                log.warning("repair of %s failed: %s", leased.segment.id[:16], exc)
            self.count(outcome)

    async def _next_task(self) -> LeasedTask | None:
        async with self._lease_lock:
            if not self._pending and self._leases < self.settings.max_leases_per_pass:
                self._leases += 1
                result = await self.heal.lease_repair(self.node_id, self.settings.lease_s,
                                                      self.settings.concurrency)
                if not result.tasks:  # drained: no more lease commands this pass
                    self._leases = self.settings.max_leases_per_pass
                self._pending = list(result.tasks)
                self._leased_this_pass += len(result.tasks)
                self.count("leased", len(result.tasks))
            return self._pending.pop(0) if self._pending else None

    # ---- moves -----------------------------------------------------------------------------

    async def _move_pass(self, nudged: bool) -> None:
        backlog = (await self.heal.membership(detail=False)).move_backlog
        if not backlog:
            return
        now = time.monotonic()
        if not nudged and self._moves_idle is not None and self._moves_idle[0] == backlog \
                and now - self._moves_idle[1] < self.settings.retry_s:
            return
        self._leases = 0
        self._leased_this_pass = 0
        self._moving = True
        try:
            await asyncio.gather(*(self._move_work() for _ in range(self.settings.concurrency)))
        finally:
            self._moving = False
        self._moves_idle = (backlog, now) if not self._leased_this_pass else None

    async def _move_work(self) -> None:
        while (leased := await self._next_move()) is not None:
            try:
                outcome = await self.move_one(leased)
            except BlobstoreError as exc:  # meta or the network failed us: the lease expires
                outcome = "move_error"
                log.warning("move of %s failed: %s", leased.segment.id[:16], exc)
            self.count(outcome)

    async def _next_move(self) -> LeasedMove | None:
        async with self._lease_lock:
            if not self._pending_moves and self._leases < self.settings.max_leases_per_pass:
                self._leases += 1
                result = await self.heal.lease_moves(self.node_id, self.settings.lease_s,
                                                     self.settings.concurrency)
                if not result.tasks:
                    self._leases = self.settings.max_leases_per_pass
                self._pending_moves = list(result.tasks)
                self._leased_this_pass += len(result.tasks)
                self.count("moves_leased", len(result.tasks))
            return self._pending_moves.pop(0) if self._pending_moves else None

    async def move_one(self, leased: LeasedMove) -> str:
        """Move one leased segment's shards; 'moved', 'move_partial', 'move_conflict',
        'move_failed' or 'move_moot'."""
        segment = leased.segment
        moves = [m for m in leased.task.moves
                 if 0 <= m.index < segment.total_shards
                 and segment.placement[m.index] == m.source]
        if not moves:
            return "move_moot"
        cluster_map = await self.view.current()
        try:
            shards = await self._read_for_move(segment, moves, cluster_map)
            written = await self._write_moves(segment, shards, moves, cluster_map)
        except _Skip as skip:
            log.warning("cannot move shards of segment %s now: %s", segment.id[:16], skip)
            await self.heal.fail_move(segment.id, self.node_id, self.settings.retry_s,
                                      str(skip))
            return "move_failed"
        new_placement = list(segment.placement)
        for index, node in written.items():
            new_placement[index] = node
        try:
            await self.heal.complete_move(segment.id, segment.placement, new_placement,
                                          sorted(written), self.node_id)
        except Conflict as exc:
            log.info("move of %s lost its compare-and-set: %s", segment.id[:16], exc.message)
            return "move_conflict"
        self.count("shards_moved", len(written))
        return "moved" if len(written) == len(moves) else "move_partial"

    async def _read_for_move(self, segment: Segment, moves: list[ShardMove],
                             cluster_map: ClusterMap) -> dict[int, bytes]:
        """Each moving shard's payload: copied from its node, else rebuilt from others."""
        indexes = [m.index for m in moves]
        copied = await asyncio.gather(*(self._fetch_one(segment, i, cluster_map)
                                        for i in indexes))
        shards = {i: payload for i, payload in zip(indexes, copied, strict=True)
                  if isinstance(payload, bytes)}
        missing = [i for i in indexes if i not in shards]
        if missing:
            rebuilt, _ = await self._rebuild(segment, missing, cluster_map)
            shards.update({i: rebuilt[i] for i in missing if i in rebuilt})
        return shards

    async def _write_moves(self, segment: Segment, shards: dict[int, bytes],
                           moves: list[ShardMove], cluster_map: ClusterMap) -> dict[int, str]:
        """Put each moving shard on its new node; index -> node that has it now."""
        up = cluster_view.up_ids(cluster_map) - {m.source for m in moves}
        named = {m.index: m.target for m in moves if m.target and m.index in shards}
        for index, target in named.items():
            if target not in up or target in segment.placement:
                raise _Skip(f"target {target} of shard {index} is not an up storage node "
                            "free of this segment")
        free = [m.index for m in moves if not m.target and m.index in shards]
        plan = plan_targets(segment, free, cluster_view.candidates(cluster_map),
                            up - set(named.values()))
        targets = {**plan.targets, **named}
        spares = list(plan.spares)

        async def put_one(index: int, node: str) -> tuple[int, str | None]:
            while True:
                try:
                    await self._put(segment, index, shards[index], node, cluster_map)
                    return index, node
                except BlobstoreError as exc:
                    log.info("move: writing shard %d of %s to %s failed: %s", index,
                             segment.id[:16], node, exc.message)
                    if index in named or not spares:
                        return index, None
                    node = spares.pop(0)

        results = await asyncio.gather(*(put_one(i, n) for i, n in targets.items()))
        written = {index: node for index, node in results if node is not None}
        if not written:
            raise _Skip(f"no up storage node could take shards {sorted(shards)} "
                        f"({len(targets)} had a target)")
        return written

    async def repair_one(self, leased: LeasedTask) -> str:
        """Repair one leased segment; 'repaired', 'partial', 'conflict' or 'failed'."""
        segment = leased.segment
        cluster_map = await self.view.current()
        rebuild = shards_to_rebuild(segment, leased.task.missing)
        try:
            shards, rebuild = await self._rebuild(segment, rebuild, cluster_map)
            written = await self._write(segment, shards, cluster_map)
        except _Skip as skip:
            log.warning("cannot repair segment %s now: %s", segment.id[:16], skip)
            await self.heal.fail_repair(segment.id, self.node_id, self.settings.retry_s,
                                        str(skip))
            return "failed"
        new_placement = list(segment.placement)
        for index, node in written.items():
            new_placement[index] = node
        try:
            await self.heal.complete_repair(segment.id, segment.placement, new_placement,
                                            sorted(written), self.node_id)
        except Conflict as exc:
            log.info("repair of %s lost its compare-and-set: %s", segment.id[:16], exc.message)
            return "conflict"
        self.count("shards_rebuilt", len(written))
        return "repaired" if len(written) == len(rebuild) else "partial"

    # ---- read, decode, re-encode ---------------------------------------------------------

    async def _rebuild(self, segment: Segment, rebuild: list[int],
                       cluster_map: ClusterMap) -> tuple[dict[int, bytes], list[int]]:
        """The re-encoded shards to write (index -> payload), and the final rebuild set."""
        sources = source_order(segment, rebuild, cluster_view.readable_ids(cluster_map))
        good, bad = await self._fetch(segment, sources, cluster_map)
        rebuild = sorted(set(rebuild) | bad)
        if len(good) < segment.data_shards:
            raise _Skip(f"only {len(good)} of the {segment.data_shards} shards needed are "
                        "readable")
        try:
            shards = await self.compute(reencode, segment, good, rebuild)
        except Corrupt as exc:
            raise _Skip(exc.message) from exc
        return shards, rebuild  # type: ignore[return-value]

    async def _fetch(self, segment: Segment, sources: list[int],
                     cluster_map: ClusterMap) -> tuple[dict[int, bytes], set[int]]:
        """``data_shards`` verified payloads if they can be had; and the indexes found bad."""
        good: dict[int, bytes] = {}
        bad: set[int] = set()
        remaining = list(sources)
        while len(good) < segment.data_shards and remaining:
            batch = remaining[: segment.data_shards - len(good)]
            remaining = remaining[len(batch):]
            results = await asyncio.gather(
                *(self._fetch_one(segment, index, cluster_map) for index in batch))
            for index, result in zip(batch, results, strict=True):
                if isinstance(result, bytes):
                    good[index] = result
                elif result == "bad":
                    bad.add(index)
        return good, bad

    def _pacer_for(self, segment: Segment) -> Pacer:
        if self._moving:
            return self.pacer  # an operator's drain or rebalance: the configured rate
        placed = sum(node is not None for node in segment.placement)
        return self.pacer if placed <= segment.data_shards else self.yielding_pacer

    async def _fetch_one(self, segment: Segment, index: int,
                         cluster_map: ClusterMap) -> bytes | str:
        node = segment.placement[index]
        assert node is not None, "source_order names only placed shards"
        sid = shard_id(segment.id, index)
        await self._pacer_for(segment).consume(
            ec.EcPolicy(segment.data_shards, 0).shard_size(segment.length))
        try:
            if node == self.node_id and self.local is not None:
                payload = await self.local.get(sid)
            else:
                payload = await self.storage.get_shard(
                    cluster_view.address_of(cluster_map, node), sid,
                    timeout_s=self.settings.shard_timeout_s)
        except (NoSuchShard, Corrupt) as exc:
            log.info("repair: shard %s on %s is %s; rebuilding it too", sid, node, exc.code)
            return "bad"
        except BlobstoreError as exc:
            log.info("repair: shard %s on %s unavailable: %s", sid, node, exc.message)
            return "unavailable"
        self.count("bytes_read", len(payload))
        if ec.shard_checksum(payload) != segment.shard_xxh3[index]:
            log.warning("repair: shard %s on %s does not match its record", sid, node)
            return "bad"
        return payload

    # ---- write ---------------------------------------------------------------------------

    async def _write(self, segment: Segment, shards: dict[int, bytes],
                     cluster_map: ClusterMap) -> dict[int, str]:
        """Put each shard on its target (spares on failure); index -> node that has it."""
        plan = plan_targets(segment, shards, cluster_view.candidates(cluster_map),
                            cluster_view.up_ids(cluster_map))
        spares = list(plan.spares)

        async def put_one(index: int, node: str) -> tuple[int, str | None]:
            while True:
                try:
                    await self._put(segment, index, shards[index], node, cluster_map)
                    return index, node
                except BlobstoreError as exc:
                    log.info("repair: writing shard %d of %s to %s failed: %s", index,
                             segment.id[:16], node, exc.message)
                    if not spares:
                        return index, None
                    node = spares.pop(0)

        results = await asyncio.gather(*(put_one(i, n) for i, n in plan.targets.items()))
        written = {index: node for index, node in results if node is not None}
        if not written:
            raise _Skip(f"no up storage node could take shards {sorted(shards)} "
                        f"({len(plan.targets)} had a target)")
        return written

    async def _put(self, segment: Segment, index: int, payload: bytes, node: str,
                   cluster_map: ClusterMap) -> None:
        sid = shard_id(segment.id, index)
        checksum = segment.shard_xxh3[index]
        await self._pacer_for(segment).consume(len(payload))
        if node == self.node_id and self.local is not None:
            await self.local.put(sid, payload, segment.data_shards, segment.parity_shards,
                                 segment.length, checksum)
        else:
            await self.storage.put_shard(
                cluster_view.address_of(cluster_map, node), sid, payload,
                data_shards=segment.data_shards, parity_shards=segment.parity_shards,
                segment_length=segment.length, xxh3_hex=checksum,
                timeout_s=self.settings.shard_timeout_s)
        self.count("bytes_written", len(payload))


def reencode(segment: Segment, good: dict[int, bytes], indexes: list[int]) -> dict[int, bytes]:
    """CPU part of a repair (run in the pool): the shards ``indexes`` from ``good``, checked.

    Decoding (some data shard missing) is followed by the content check (against the segment's
    content id); every shard produced must match its recorded xxh3. Corrupt otherwise.
    """
    policy = ec.EcPolicy(segment.data_shards, segment.parity_shards)
    blocks = ec_rebuild.primary_blocks(policy, good, segment.length)
    if not ec_rebuild.is_systematic(policy, good) \
            and not ec_rebuild.holds_segment(blocks, segment.length, segment.id):
        raise Corrupt("the decoded segment fails its content check")
    out: dict[int, bytes] = {}
    for index, payload in ec_rebuild.encode_shards(policy, blocks, indexes).items():
        if ec.shard_checksum(payload) != segment.shard_xxh3[index]:
            raise Corrupt(f"re-encoded shard {index} does not match its recorded checksum")
        out[index] = bytes(payload)
    return out
