"""The inventory: reconcile what this node holds with what meta says it holds.

Two walks per pass, both paged and cheap (index rows and metadata, no shard payload):

1. Orphans. Every shard file of this node older than ``gc_grace_s`` is looked up in meta
   (``lookup_segments``, batched). It is garbage when meta does not know its segment, or
   when the segment's placement does not name this node at that index (None or another
   node). Such a shard is deleted with ``ShardStore.delete_if_older`` at the cut-off
   ``now - gc_grace_s``, checked under the shard's lock, so a file rewritten meanwhile
   survives. This reclaims the shards of an upload whose gateway died before its commit,
   the leftovers of a repair that lost its compare-and-set, shards written to a node that
   was then declared down, and anything a collector could not reach.
2. Missing. Meta's list of the shards live segments place on this node
   (``GET /v1/heal/placed``) is checked against the store; each one it lacks is reported
   with ``report_bad_shard`` and so queued for repair (a data dir lost while the node
   stayed up, a quarantined file whose report was lost).

Rules: never delete on a guess: a pass stops at the first failed meta read (no answer is
not "unknown"). ``gc_grace_s`` must exceed the longest upload (segment written -> object
committed): a shard younger than it is never judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from blobstore.core.errors import NoSuchShard
from blobstore.core.ids import parse_shard_id
from blobstore.core.records import Segment
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.wire import ShardInfo
from blobstore.runtime.workers import PeriodicWorker
from blobstore.storage.shard_store import ShardStore

log = logging.getLogger(__name__)
Call = Callable[..., Awaitable[object]]
Report = Callable[[str, int, str], Awaitable[object]]
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class InventorySettings:
    interval_s: float = 900.0
    grace_s: float = 3600.0
    page_size: int = 1000


class Inventory(PeriodicWorker):
    name = "inventory"

    def __init__(self, node_id: str, store: ShardStore, call: Call, heal: HealClient,
                 report: Report, settings: InventorySettings | None = None,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings or InventorySettings()
        super().__init__(self.settings.interval_s)
        self.node_id = node_id
        self.store = store
        self.call = call
        self.heal = heal
        self.report = report
        self.wall_ns = wall_ns

    async def run_once(self) -> None:
        await self.sweep_orphans()
        await self.check_placed()

    async def sweep_orphans(self) -> int:
        """Delete this node's shards that meta does not place here (walk 1); how many."""
        cutoff_ns = self.wall_ns() - int(self.settings.grace_s * NS_PER_S)
        deleted = 0
        after: str | None = ""
        while after is not None:
            rows, after = await self.call(self.store.list, after, self.settings.page_size)
            old = [row for row in rows if row.mtime_ns < cutoff_ns]
            if not old:
                continue
            known = await self.heal.lookup_segments(
                sorted({parse_shard_id(row.shard_id)[0] for row in old}))
            for row in old:
                if self._is_garbage(row, known):
                    deleted += await self._delete(row, cutoff_ns)
        return deleted

    def _is_garbage(self, row: ShardInfo, known: dict[str, Segment]) -> bool:
        segment_id, index = parse_shard_id(row.shard_id)
        segment = known.get(segment_id)
        if segment is None:
            return True
        return index >= len(segment.placement) or segment.placement[index] != self.node_id

    async def _delete(self, row: ShardInfo, cutoff_ns: int) -> int:
        removed = await self.call(self.store.delete_if_older, row.shard_id, cutoff_ns)
        if removed:
            self.count("orphans_deleted")
            self.count("orphan_bytes_deleted", row.payload_length)
            log.info("inventory: deleted orphan shard %s (%d bytes)", row.shard_id,
                     row.payload_length)
            return 1
        return 0

    async def check_placed(self) -> int:
        """Report the shards meta places here that this node lacks (walk 2); how many."""
        reported = 0
        after: str | None = ""
        while after is not None:
            page = await self.heal.placed_page(self.node_id, after, self.settings.page_size)
            after = page.next
            missing = await self.call(_missing, self.store, page.shard_ids)
            for sid in missing:  # type: ignore[attr-defined]
                segment_id, index = parse_shard_id(sid)
                await self.report(segment_id, index, "inventory: shard missing on its node")
                self.count("missing_reported")
                reported += 1
        return reported


def _missing(store: ShardStore, shard_ids: list[str]) -> list[str]:
    out = []
    for sid in shard_ids:
        try:
            store.head(sid)
        except NoSuchShard:
            out.append(sid)
    return out
