"""The garbage collector: deletes the shards of segments no object references any more.

Segments whose refcount fell to 0 are listed by meta (``GET /v1/heal/gc``). Each pass walks
that list and, for the segments this node coordinates, drives them through meta's GC
commands (``meta/heal.py``):

1. ``gc_begin`` stamps a segment seen at refcount 0 for the first time (the grace period
   starts), and marks one whose grace has passed as DELETING under a lease held by this
   node, answering its record and its ``deleting_since_ns``.
2. Each shard of a deleting segment is deleted on its node with
   ``DELETE /v1/shards/{id}?older_than_ns=deleting_since_ns - margin``: the node removes
   the file only if it was written before that, so a re-upload of the same content after
   the segment is gone, which writes new files, is never removed by a late collector. A
   node that is down or refuses keeps its file: once the segment is gone the shard is an
   orphan, and that node's inventory reclaims it.
3. ``gc_finish`` drops the segment from meta.

Who coordinates a segment: the first up storage node of the segment's rendezvous ranking
(``core/placement.py``), so the nodes share the work without talking; any node takes over
a deleting segment whose lease ran out (its coordinator died mid-way). Two nodes that
disagree about the map both ask; meta's gc_begin lets one win.

Why on storage nodes rather than on the meta leader: the work is I/O against storage
nodes, which meta otherwise never does; spread over the nodes it scales with them, and
meta only applies small commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from blobstore.core.errors import BlobstoreError, Conflict
from blobstore.core.ids import shard_id
from blobstore.core.placement import rank
from blobstore.core.records import ClusterMap
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.heal_wire import GcBegun, GcCandidate
from blobstore.rpc.storage_client import StorageClient
from blobstore.runtime.workers import PeriodicWorker
from blobstore.storage import cluster_view
from blobstore.storage.cluster_view import ClusterView

log = logging.getLogger(__name__)
NS_PER_S = 1_000_000_000
BEGIN_BATCH = 200  # segment ids per gc_begin / gc_finish
DELETES_IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    interval_s: float = 900.0
    grace_s: float = 3600.0
    margin_s: float = 10.0  # clock-skew allowance of the older-than cut-off
    lease_s: float = 300.0  # a deleting segment's coordinator holds it this long
    delete_timeout_s: float = 10.0


class Collector(PeriodicWorker):
    name = "gc"

    def __init__(self, node_id: str, heal: HealClient, storage: StorageClient,
                 view: ClusterView, settings: CollectorSettings | None = None,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings or CollectorSettings()
        super().__init__(self.settings.interval_s)
        self.node_id = node_id
        self.heal = heal
        self.storage = storage
        self.view = view
        self.wall_ns = wall_ns
        self._deletes = asyncio.Semaphore(DELETES_IN_FLIGHT)

    async def run_once(self) -> None:
        cluster_map = await self.view.current()
        after: str | None = ""
        while after is not None:
            page = await self.heal.gc_page(after)
            after = page.next
            now_ns = self.wall_ns()
            todo = [c.segment_id for c in page.candidates
                    if self._mine(c, cluster_map, now_ns) and self._due(c, now_ns)]
            for start in range(0, len(todo), BEGIN_BATCH):
                await self._collect(todo[start:start + BEGIN_BATCH], cluster_map)

    def _mine(self, candidate: GcCandidate, cluster_map: ClusterMap, now_ns: int) -> bool:
        if candidate.deleting_since_ns and candidate.lease_until_ns <= now_ns:
            return True  # its coordinator died mid-way: anyone may finish it
        up = cluster_view.up_ids(cluster_map)
        ranking = [c for c in rank(candidate.segment_id, cluster_view.candidates(cluster_map))
                   if c.node_id in up]
        return bool(ranking) and ranking[0].node_id == self.node_id

    def _due(self, candidate: GcCandidate, now_ns: int) -> bool:
        if not candidate.zero_since_ns:
            return True  # needs its stamp
        if candidate.deleting_since_ns:
            return candidate.lease_until_ns <= now_ns
        return now_ns - candidate.zero_since_ns >= int(self.settings.grace_s * NS_PER_S)

    async def _collect(self, segment_ids: list[str], cluster_map: ClusterMap) -> None:
        result = await self.heal.gc_begin(segment_ids, self.node_id, self.settings.grace_s,
                                          self.settings.lease_s, now_ns=self.wall_ns())
        self.count("stamped", len(result.stamped))
        if not result.begun:
            return
        await asyncio.gather(*(self._delete_shards(begun, cluster_map)
                               for begun in result.begun))
        finished = await self.heal.gc_finish([b.segment.id for b in result.begun], self.node_id)
        self.count("segments_collected", len(finished))
        log.info("gc: collected %d segments", len(finished))

    async def _delete_shards(self, begun: GcBegun, cluster_map: ClusterMap) -> None:
        cutoff_ns = begun.deleting_since_ns - int(self.settings.margin_s * NS_PER_S)
        down = {view.id for view in cluster_view.storage_nodes(cluster_map)} \
            - cluster_view.readable_ids(cluster_map)
        for index, node in enumerate(begun.segment.placement):
            if node is None or node in down:
                continue
            sid = shard_id(begun.segment.id, index)
            async with self._deletes:
                try:
                    await self.storage.delete_shard(
                        cluster_view.address_of(cluster_map, node), sid,
                        older_than_ns=cutoff_ns, timeout_s=self.settings.delete_timeout_s)
                    self.count("shards_deleted")
                except Conflict:
                    self.count("shards_kept_young")  # rewritten after the cut-off
                except BlobstoreError as exc:
                    self.count("shards_unreachable")
                    log.info("gc: could not delete %s on %s: %s (its inventory will)", sid,
                             node, exc.message)
